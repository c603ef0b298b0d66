"""``tvmc compile``: real models through the real CLI (subprocess), legacy flags, one-line errors."""

import json
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

import project_helpers
from conftest import fixture_path
from project_api.cli import TVMCError
from project_api.cli.compile import parse_target
from project_api.compiler.mlf import extract_mlf, read_metadata
from project_api.compiler.native import run_native

LEGACY_FLAGS = [
    "--target=c -keys=cpu -model=host -mcpu=cortex-m4",
    "--runtime=crt", "--runtime-crt-system-lib", "1",
    "--executor=aot", "--executor-aot-unpacked-api=1",
    "--pass-config", "tir.disable_vectorize=1", "--pass-config", "tir.usmp.enable=0",
    "--output-format", "mlf",
]


def tvmc(*args, cwd=None):
    """The real command line; each test reads the exit status and output itself."""
    return project_helpers.tvmc(*args, cwd=cwd, check=False)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvmc: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="session")
def legacy_compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model.tar"
    model = fixture_path("models", "tflm_hello_world_float.tflite")
    result = tvmc("compile", model, "--output", out, *LEGACY_FLAGS)
    return result, out, model


@pytest.mark.slow
def test_legacy_command_line_compiles(legacy_compiled):
    result, out, _model = legacy_compiled
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("tvmc: note: ")]
    assert len(notes) == 6, result.stderr  # runtime, system-lib, unpacked-api, 2 pass-configs, target
    assert any("--mcpu cortex-m4" in n for n in notes)
    assert "arena" in result.stdout and "lower bound" in result.stdout and "weights" in result.stdout
    meta = read_metadata(out)
    assert meta["version"] == 7 and meta["model_name"] == "default" and meta["executors"] == ["aot"]
    assert meta["target"] == ["c"]
    memory = meta["ours"]["memory"]
    assert meta["workspace_size_bytes"] == memory["arena_bytes"] >= memory["lower_bound_bytes"]
    for placement in memory["placements"]:  # the printed table lists every placed tensor
        assert placement["name"] in result.stdout


@pytest.mark.slow
def test_compiled_model_runs_like_tflite_micro(legacy_compiled):
    _result, out, model = legacy_compiled
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(model))
    xs = np.linspace(0, 6.28, 8, dtype=np.float32).reshape(8, 1, 1)
    meta = read_metadata(out)
    from project_api.compiler.native import NativeModel

    with NativeModel(out) as native:
        ours = native.run_many([[x] for x in xs])
    for x, (y,) in zip(xs, ours):
        interpreter.set_input(x, 0)
        interpreter.invoke()
        np.testing.assert_allclose(y, interpreter.get_output(0), rtol=1e-5, atol=1e-6)
    assert [o["shape"] for o in meta["outputs"]] == [[1, 1]]


@pytest.mark.slow
def test_graph_executor_and_model_name(tmp_path):
    model = fixture_path("models", "tflm_hello_world_int8.tflite")
    out = tmp_path / "sub" / "hw.tar"
    result = tvmc("compile", model, "-o", out, "--executor", "graph", "--model-name", "hello world", "--mcpu", "cortex-m4")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    meta = read_metadata(out)
    assert meta["executors"] == ["graph"] and meta["model_name"] == "hello world" and meta["c_name"] == "hello_world"
    assert "sids" in meta["raw"]["modules"]["hello world"]["memory"]
    x = np.zeros(meta["inputs"][0]["shape"], meta["inputs"][0]["dtype"])
    (y,) = run_native(out, [x])
    assert y.dtype == np.int8 and list(y.shape) == meta["outputs"][0]["shape"]
    with tarfile.open(out) as tar:
        runtime_c = tar.extractfile("./codegen/host/src/hello_world_runtime.c").read().decode()
    assert "static const int8_t" in runtime_c  # int8 weights stay int8
    assert "static const float" not in runtime_c


@pytest.mark.slow
def test_real_model_builds_for_cortex_m4_without_warnings(legacy_compiled, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    _result, out, _model = legacy_compiled
    root = extract_mlf(out, tmp_path / "mlf")
    for source in sorted((root / "codegen" / "host" / "src").glob("*.c")):
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-Wall", "-Wextra", "-Werror",
                        "-Os", "-I", str(root / "codegen" / "host" / "include"), "-c", str(source),
                        "-o", str(tmp_path / (source.stem + ".o"))], check=True)


def test_missing_model_file(tmp_path):
    _assert_one_line_error(tvmc("compile", tmp_path / "absent.tflite", "-o", tmp_path / "m.tar"), "absent.tflite", "not found")


def test_unsupported_output_format(tmp_path):
    _assert_one_line_error(tvmc("compile", tmp_path / "x.tflite", "--output-format", "so"), "--output-format")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated", "unknown extension", "hybrid"])
def test_bad_models_fail_in_one_line(case, tmp_path):
    if case == "truncated":
        model = tmp_path / "truncated.tflite"
        model.write_bytes(fixture_path("models", "tflm_hello_world_int8.tflite").read_bytes()[:300])
    elif case == "unknown extension":
        model = tmp_path / "model.pb"
        model.write_bytes(b"\x08\x01")
    else:
        model = fixture_path("models", "mlperf_tiny_kws_ref_model_float32.tflite")
    out = tmp_path / "m.tar"
    _assert_one_line_error(tvmc("compile", model, "-o", out))
    assert not out.exists()


def test_parse_target_forms(capsys):
    assert parse_target("c", None) == ("c", None)
    assert parse_target("c -keys=cpu -model=host", None) == ("c", None)
    assert parse_target("c -mcpu=cortex-m4", None) == ("c", "cortex-m4")
    assert parse_target('{"kind": "c", "mcpu": "cortex-m7"}', None) == ("c", "cortex-m7")
    target, mcpu = parse_target("llvm -mtriple=thumbv7em-none-eabihf -mcpu=cortex-m4 -mattr=+vfp4d16sp", None)
    assert mcpu == "cortex-m4"
    assert json.loads(target) == {"kind": "llvm", "mtriple": "thumbv7em-none-eabihf", "mcpu": "cortex-m4",
                                  "mattr": ["+vfp4d16sp"]}
    spec = '{"kind": "llvm", "mtriple": "thumbv6m-none-eabi"}'
    assert json.loads(parse_target(spec, None)[0]) == json.loads(spec)
    notes = capsys.readouterr().err
    assert notes.count("tvmc: note:") == 3
    for bad in ("cuda", "{not json", '{"kind": "cuda"}', "c -mcpu=cortex-m4 stray", ""):
        with pytest.raises(TVMCError):
            parse_target(bad, None)
    with pytest.raises(TVMCError, match="contradicts"):
        parse_target("c -mcpu=cortex-m4", "cortex-m7")


@pytest.mark.slow
def test_onnx_cnn_compiles_and_matches_onnxruntime(tmp_path):
    """No shared fixtures needed: an ONNX CNN from model_builders, through the CLI, run natively."""
    import onnxruntime

    from model_builders import CNN_INPUT, CNN_INPUT_SHAPE, build_small_cnn

    model = build_small_cnn(tmp_path / "cnn.onnx")
    out = tmp_path / "cnn.tar"
    result = tvmc("compile", model, "-o", out, "--model-name", "cnn")
    assert result.returncode == 0, result.stderr
    meta = read_metadata(out)
    assert meta["ours"]["memory"]["arena_bytes"] <= 1.05 * meta["ours"]["memory"]["lower_bound_bytes"] + 16
    x = np.random.default_rng(0).standard_normal(CNN_INPUT_SHAPE).astype(np.float32)
    (ours,) = run_native(out, {CNN_INPUT: x})
    (reference,) = onnxruntime.InferenceSession(str(model)).run(None, {CNN_INPUT: x})
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    # Link-time type check: the runtime's kernel prototypes must match the kernels' definitions.
    root = extract_mlf(out, tmp_path / "mlf")
    main_c = tmp_path / "main.c"
    main_c.write_text('#include "tvmgen_cnn.h"\nstatic float in[256], out[10];\n'
                      "int main(void) { struct tvmgen_cnn_inputs i; struct tvmgen_cnn_outputs o;\n"
                      "  i.image = in; o.logits = out; return (int)tvmgen_cnn_run(&i, &o); }\n")
    sources = sorted(map(str, (root / "codegen" / "host" / "src").glob("*.c")))
    subprocess.run(["gcc", "-std=c99", "-O1", "-flto", "-Wall", "-Wextra", "-Werror", "-I",
                    str(root / "codegen" / "host" / "include"), *sources, str(main_c), "-lm", "-o",
                    str(tmp_path / "lto")], check=True)


@pytest.mark.parametrize("output, words", [
    ("afile/t.tar", ["--output", "afile is a file, not a directory"]),
    ("afile/deeper/t.tar", ["afile is a file, not a directory"]),
    ("/proc/t.tar", ["cannot write --output /proc/t.tar", "does not take new files"]),
    ("adir", ["--output", "adir is a directory"]),
    ("m.tflite", ["--output m.tflite is the model file itself"]),
])
def test_unwritable_output_is_one_line_before_compiling(output, words, tmp_path, monkeypatch, capsys):
    """Checked before the model is compiled (the model here is not even a model): one line that
    names the path the user gave, never a traceback or OUT.partial."""
    from project_api import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "adir").mkdir()
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not a model")
    assert cli.main(["compile", str(model), "-o", output]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvmc: error: "), err
    assert all(word in lines[0] for word in words), lines[0]
    assert ".partial" not in err
    assert model.read_bytes() == b"not a model"
