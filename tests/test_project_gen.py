"""project_api.project_gen: the project layout, the generated model glue, the size check."""

import io
import pathlib
import subprocess
import tarfile

import numpy as np
import pytest

from project_api import boards, naming, options, project_gen, resources
from project_api.compiler.native import run_native
from project_helpers import compiled_mlf, needs_cc

HOST_TEMPLATE = resources.template_dir("host")
HOST_BOARD = boards.get_board("host")


@pytest.fixture(scope="module")
def sine_mlf(tmp_path_factory):
    return compiled_mlf(tmp_path_factory, "tflm_hello_world_float.tflite")


def _generate(mlf, project_dir, **options):
    options = dict({"board": "host", "project_type": "host_driven", "extra_files_tar": None}, **options)
    return project_gen.generate_common(HOST_TEMPLATE, mlf, project_dir, options, HOST_BOARD)


def test_layout_follows_contract_5(sine_mlf, tmp_path):
    project = tmp_path / "project"
    model = _generate(sine_mlf, project)
    for rel in ("microtvm_api_server.py", "Makefile", "model.tar", "model/metadata.json",
                f"model/codegen/host/include/tvmgen_{model.c_name}.h", "device_runtime/include/mtp_model.h",
                "device_runtime/include/mtp_platform.h", "src/model_glue.c", "project.yaml"):
        assert (project / rel).is_file(), rel
    assert list((project / "model" / "codegen" / "host" / "src").glob("*.c"))
    assert (project / "model.tar").read_bytes() == sine_mlf.read_bytes()
    assert not list(project.rglob("__pycache__"))
    assert project_gen.read_project_yaml(project)["board"] == "host"
    assert model.inputs[0].shape == (1, 1) and model.inputs[0].dtype == "float32"
    assert project_gen.read_project_yaml(tmp_path) == {}  # no project.yaml: a template


@needs_cc
def test_model_glue_drives_the_model_like_the_native_runner(sine_mlf, tmp_path):
    """Compile model_glue.c with the MLF's C (-Werror -pedantic) and a harness that only knows
    mtp_model.h: its inputs/outputs must be wired to tvmgen_default_run exactly."""
    project = tmp_path / "project"
    model = _generate(sine_mlf, project)
    harness = pathlib.Path(__file__).parent / "c" / "model_glue_harness.c"
    exe = tmp_path / "harness"
    sources = [project / "src" / "model_glue.c", harness, *(project / "model" / "codegen" / "host" / "src").glob("*.c")]
    subprocess.run(["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1",
                    f"-I{project / 'device_runtime' / 'include'}", f"-I{project / 'model' / 'codegen' / 'host' / 'include'}",
                    *map(str, sources), "-o", str(exe), "-lm"], check=True)
    x = np.array([[0.0], [0.5], [1.5], [3.0]], dtype=np.float32)
    result = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, check=True)
    header, _, raw = result.stdout.partition(b"\n")
    # The descriptors the device runtime will report: names unsanitized, dtype, shape, sizes.
    assert header.decode() == ("default in=1 out=1 ws=%d | serving_default_dense_input:0 2/32 [1,1] 4 "
                               "| StatefulPartitionedCall:0 2/32 [1,1] 4" % model.workspace_size_bytes)
    got = np.frombuffer(raw, dtype=np.float32)
    expected = np.concatenate([run_native(sine_mlf, [row.reshape(1, 1)])[0].ravel() for row in x])
    np.testing.assert_array_equal(got, expected)
    assert abs(float(got[2]) - np.sin(1.5)) < 0.2  # it is the sine model


def test_glue_escapes_names_and_aligns_buffers():
    odd = project_gen.TensorInfo('in"put\\?:0 é', "int8", (2, 3), 6)
    model = project_gen.ModelInfo("my-model", (odd,), (project_gen.TensorInfo("out", "uint16", (5,), 10),), 64, 0, 16)
    source = project_gen.model_glue_source(model)
    assert '"in\\"put\\\\\\077:0 \\303\\251"' in source
    assert f"inputs_struct.{naming.c_identifier(odd.name)} = input0_buf.bytes;" in source
    assert "tvmgen_my_model_run(&inputs_struct, &outputs_struct)" in source
    assert "MTP_DTYPE_UINT, 16, 1, output0_shape, 10u" in source
    assert "double d; int64_t i; void* p;" in source


def test_model_too_big_for_the_board_names_the_sizes(sine_mlf):
    model = project_gen.read_mlf(sine_mlf)
    tiny = boards.Board(name="tiny", platform="host", cpu="native", fpu=True, ram_bytes=64, flash_bytes=1 << 20)
    with pytest.raises(project_gen.ProjectGenerationError) as info:
        project_gen.check_model_fits(model, tiny)
    message = str(info.value)
    assert f"{model.workspace_size_bytes:,} B" in message and "tiny has 64 B" in message and "\n" not in message
    no_flash = boards.Board(name="noflash", platform="host", cpu="native", fpu=True, ram_bytes=1 << 20, flash_bytes=16)
    with pytest.raises(project_gen.ProjectGenerationError, match=f"{model.constants_size_bytes:,} B of constants"):
        project_gen.check_model_fits(model, no_flash)
    project_gen.check_model_fits(model, HOST_BOARD)


def test_bad_archives_are_refused_with_one_line(tmp_path, shared_fixtures):
    with pytest.raises(project_gen.ProjectGenerationError, match="does not exist"):
        project_gen.read_mlf(tmp_path / "missing.tar")
    not_tar = tmp_path / "not.tar"
    not_tar.write_bytes(b"this is no tar archive" * 100)
    with pytest.raises(project_gen.ProjectGenerationError, match="not a readable tar"):
        project_gen.read_mlf(not_tar)
    # A real legacy (v5, graph executor) archive whose graph JSON is gone cannot be translated.
    legacy = shared_fixtures / "legacy-mlf" / "micro_speech_graph_executor_mlf_v5.tar"
    if legacy.is_file():
        import legacy_archives

        broken = legacy_archives.damaged(tmp_path, "missing_graph")
        with pytest.raises(project_gen.ProjectGenerationError, match="graph.json is missing"):
            _generate(broken, tmp_path / "legacy_project")
        assert not (tmp_path / "legacy_project").exists(), "a failed generation must not leave a half project"


def test_project_dir_must_be_new_or_empty(sine_mlf, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(project_gen.ProjectGenerationError, match="not empty"):
        _generate(sine_mlf, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    _generate(sine_mlf, tmp_path / "empty")


def _tar_with(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extra_files_tar_is_extracted_and_escapes_refused(sine_mlf, tmp_path):
    extra = tmp_path / "extra.tar"
    _tar_with(extra, {"src/extra_config.h": b"#define EXTRA 1\n"})
    _generate(sine_mlf, tmp_path / "p1", extra_files_tar=str(extra))
    assert (tmp_path / "p1" / "src" / "extra_config.h").read_bytes() == b"#define EXTRA 1\n"

    evil = tmp_path / "evil.tar"
    _tar_with(evil, {"../../escaped.txt": b"x"})
    with pytest.raises(project_gen.ProjectGenerationError, match="outside"):
        _generate(sine_mlf, tmp_path / "p2", extra_files_tar=str(evil))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
    assert not (tmp_path / "p2").exists()


def test_compile_definitions_option():
    assert options.compile_definitions("A=1 B,C=x") == ["-DA=1", "-DB", "-DC=x"]
    assert options.compile_definitions(None) == []


def test_build_options_prefer_explicit_then_recorded_then_default(tmp_path):
    from project_api import server

    declared = [server.ProjectOption("project_type", default="host_driven", optional=("build",)),
                server.ProjectOption("verbose", type="bool", default=False, optional=("build",))]
    project_gen.write_project_yaml(tmp_path, {"project_type": "standalone", "verbose": True})
    resolved = server.resolve_options("build", declared, {})
    assert options.merge_with_project_yaml(tmp_path, resolved) == {"project_type": "standalone", "verbose": True}
    resolved = server.resolve_options("build", declared, {"verbose": "false", "unknown": "x"})
    assert options.merge_with_project_yaml(tmp_path, resolved) == {"project_type": "standalone", "verbose": False}
    (tmp_path / project_gen.PROJECT_YAML).unlink()
    assert options.merge_with_project_yaml(tmp_path, resolved) == {"project_type": "host_driven", "verbose": False}


def test_a_generation_time_option_sent_with_build_does_not_undo_generation(tmp_path):
    """The legacy host sends every option's default with every call: warning_as_error=False
    arriving with build must not undo warning_as_error=True chosen at generation."""
    from project_api import server

    declared = [server.ProjectOption("warning_as_error", type="bool", default=False, optional=("generate_project",)),
                server.ProjectOption("verbose", type="bool", default=False, optional=("generate_project", "build"))]
    project_gen.write_project_yaml(tmp_path, {"warning_as_error": True, "verbose": True})
    resolved = server.resolve_options("build", declared, {"warning_as_error": "false", "verbose": "false"})
    assert options.merge_with_project_yaml(tmp_path, resolved) == {"warning_as_error": True, "verbose": False}


def test_a_generation_time_option_generated_without_stays_unset(tmp_path):
    """compile_definitions recorded as null (generated without): a value sent with build does not
    add it; an option build takes keeps its default when project.yaml recorded null."""
    from project_api import server

    declared = [server.ProjectOption("compile_definitions", optional=("generate_project",)),
                server.ProjectOption("port", default="/dev/ttyACM0", optional=("build",))]
    project_gen.write_project_yaml(tmp_path, {"compile_definitions": None, "port": None})
    resolved = server.resolve_options("build", declared, {"compile_definitions": "A=1"})
    assert options.merge_with_project_yaml(tmp_path, resolved) == {"compile_definitions": None,
                                                                     "port": "/dev/ttyACM0"}


@pytest.mark.parametrize("content, words", [
    ("options: [unclosed\n", ["is not valid YAML (line 2:", "tvmc micro create -f"]),
    ("- a list\n", ["is not a project.yaml", "tvmc micro create -f"]),
    ("options: 3\n", ["is not a project.yaml"]),
    (b"\xff\xfe\x00", ["cannot read", "project.yaml"]),
])
def test_corrupt_project_yaml_is_a_generation_error(content, words, tmp_path):
    path = tmp_path / project_gen.PROJECT_YAML
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(project_gen.ProjectGenerationError) as caught:
        project_gen.read_project_yaml(tmp_path)
    for word in words:
        assert word in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("where", ["/proc/xx", "afile/xx"])
def test_project_dir_that_cannot_be_made_is_a_generation_error(where, sine_mlf, tmp_path):
    (tmp_path / "afile").write_text("a file")
    project_dir = pathlib.Path(where) if where.startswith("/") else tmp_path / where
    with pytest.raises(project_gen.ProjectGenerationError, match=f"cannot create project directory {project_dir}"):
        _generate(sine_mlf, project_dir)
