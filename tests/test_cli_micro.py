"""tvmc micro create/build/flash end to end on the host platform, and its one-line errors."""

import binascii
import pathlib
import shutil
import tarfile

import numpy as np
import pytest

from project_api import cli, client, project_gen
from project_api.compiler.native import run_native
from project_helpers import compiled_mlf, needs_cc, tvmc

SESSION_START = bytes.fromhex("FFFD04000000820000017BE9")  # host nonce 0x82 (docs: microtvm-facts)


@pytest.fixture(scope="module")
def sine_mlf(tmp_path_factory):
    return compiled_mlf(tmp_path_factory, "tflm_hello_world_float.tflite")


@pytest.fixture(scope="module")
def host_project(sine_mlf, tmp_path_factory):
    """A built host project, made the way a user makes it (crt: the legacy platform name)."""
    if not (shutil.which("make") and shutil.which("cc")):
        pytest.skip("needs make and a C compiler (apt-get install make gcc)")
    project = tmp_path_factory.mktemp("cli") / "project"
    tvmc("micro", "create", project, sine_mlf, "crt", "--project-option", "warning_as_error=true",
         "compile_definitions=MTP_TEST_DEFINE=1")
    tvmc("micro", "build", project, "host")
    tvmc("micro", "flash", project, "host")
    return project


def _children(pid):
    path = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs Linux /proc to see the device process")
    return [int(p) for p in path.read_text().split()]


def _error_line(capsys, argv):
    """Run tvmc in-process; it must fail with exactly one line on stderr."""
    assert cli.main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvmc: error: "), err
    return lines[0]


@pytest.mark.slow
@needs_cc
def test_host_project_bytes_go_both_ways(host_project):
    assert (host_project / "build" / "main").is_file()
    assert "-Werror -DMTP_TEST_DEFINE=1" in (host_project / "config.mk").read_text()
    with client.instantiate_from_dir(host_project) as api:
        info = api.server_info_query("0.27.0")
        assert info["is_template"] is False and info["model_library_format_path"].endswith("model.tar")
        api.open_transport({})
        device_pids = _children(api.process.pid)  # build/main, started by the server
        assert device_pids
        api.write_transport(SESSION_START, 5.0)
        reply = b""
        while len(reply.lstrip(b"\xfe")) < 12:
            reply += api.read_transport(64, 5.0)["data"]
        reply = reply.lstrip(b"\xfe")  # 0xFE: the no-op a device may send before its first packet
        # A start-session reply: FF FD, length 4, our nonce, the device's nonce, type 0x01, version 1, CRC.
        assert reply[:7] == bytes.fromhex("FFFD0400000082"), reply.hex()
        assert reply[8:10] == b"\x01\x01", reply.hex()
        assert int.from_bytes(reply[10:12], "little") == binascii.crc_hqx(reply[:10], 0xFFFF)
        api.close_transport()
        with pytest.raises(Exception, match="not open"):
            api.read_transport(1, 0.1)
    for pid in device_pids:
        assert not pathlib.Path(f"/proc/{pid}").exists(), "the device program outlived its server"


@pytest.mark.slow
@needs_cc
def test_host_project_infers_like_the_native_build(host_project, sine_mlf):
    from project_api.rpc.transport import ProjectAPITransport
    from project_api.session import Session

    x = np.array([[1.25]], dtype=np.float32)
    with client.instantiate_from_dir(host_project) as api:
        with Session(ProjectAPITransport(api)) as session:
            session.set_input(0, x)
            session.run()
            got = session.get_output(0)
    np.testing.assert_array_equal(got, run_native(sine_mlf, [x])[0])


@pytest.mark.slow
@needs_cc
def test_build_refuses_existing_build_dir_without_force(host_project, capsys):
    line = _error_line(capsys, ["micro", "build", host_project, "host"])
    assert "build already exists" in line and "-f" in line
    assert _error_line(capsys, ["micro", "build", host_project, "cortex_m"]).endswith("is a host project, not cortex_m")
    stamp = (host_project / "build" / "main").stat().st_mtime_ns
    assert cli.main(["micro", "build", "-f", str(host_project), "host"]) == 0
    assert (host_project / "build" / "main").stat().st_mtime_ns != stamp


def test_create_errors_are_one_line(sine_mlf, tmp_path, capsys):
    assert "does not exist" in _error_line(capsys, ["micro", "create", tmp_path / "p", tmp_path / "nope.tar", "host"])
    line = _error_line(capsys, ["micro", "create", tmp_path / "p", sine_mlf, "host", "--project-option", "board=uno"])
    assert "option 'board'" in line and "uno" in line and "host, crt, native" in line
    line = _error_line(capsys, ["micro", "create", tmp_path / "p", sine_mlf, "host", "--project-option", "bord=host"])
    assert "unknown project option(s) bord" in line and "board" in line
    assert "NAME=VALUE" in _error_line(capsys, ["micro", "create", tmp_path / "p", sine_mlf, "host",
                                                "--project-option", "board"])
    line = _error_line(capsys, ["micro", "create", tmp_path / "p", sine_mlf, "raspberry"])
    assert "unknown platform 'raspberry'" in line and "host" in line
    assert "--template-dir" in _error_line(capsys, ["micro", "create", tmp_path / "p", sine_mlf, "template"])
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar" * 200)
    line = _error_line(capsys, ["micro", "create", tmp_path / "p", junk, "host"])
    assert "generate_project failed" in line and "junk.tar" in line
    assert not (tmp_path / "p").exists()

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("precious")
    assert "pass -f" in _error_line(capsys, ["micro", "create", tmp_path / "p", sine_mlf, "host"])
    assert "refusing to delete" in _error_line(capsys, ["micro", "create", "-f", tmp_path / "p", sine_mlf, "host"])
    assert (tmp_path / "p" / "notes.txt").read_text() == "precious"
    assert "not a generated project" in _error_line(capsys, ["micro", "build", tmp_path / "p", "host"])


def test_create_force_replaces_a_project_and_template_dir_works(sine_mlf, tmp_path, capsys):
    from project_api import resources

    project = tmp_path / "p"
    assert cli.main(["micro", "create", str(project), str(sine_mlf), "template",
                     "--template-dir", str(resources.template_dir("host"))]) == 0
    (project / "stale.txt").write_text("old")
    assert cli.main(["micro", "create", "-f", str(project), str(sine_mlf), "host"]) == 0
    assert not (project / "stale.txt").exists() and (project / "src" / "model_glue.c").is_file()
    capsys.readouterr()


def test_list_options_and_help_show_the_server_options(tmp_path):
    listed = tvmc("micro", "create", tmp_path / "p", tmp_path / "m.tar", "host", "--list-options").stdout
    helped = tvmc("micro", "create", tmp_path / "p", tmp_path / "m.tar", "crt", "--help").stdout
    for text in (listed, helped):
        for name in ("board=VALUE", "verbose=VALUE", "warning_as_error=VALUE", "compile_definitions=VALUE"):
            assert name in text, text
        assert "host, crt, native" in text


@pytest.mark.slow
@needs_cc
def test_sigterm_to_the_server_stops_the_device_program(host_project):
    with client.instantiate_from_dir(host_project) as api:
        api.open_transport({})
        device_pids = _children(api.process.pid)
        assert device_pids
        api.process.terminate()
        assert api.process.wait(timeout=10) == 0
    for pid in device_pids:
        assert not pathlib.Path(f"/proc/{pid}").exists(), "the device program outlived its server"


@pytest.mark.slow
@needs_cc
def test_legacy_script_lines_on_the_host_board(tmp_path_factory):
    """The lines users have in scripts (microtvm-facts), run from the folder holding model.tar with
    relative paths: several NAME=VALUE after one --project-option, then tvmc run --print-top 4."""
    import model_builders
    from rpc_test_device import compile_onnx

    mlf = compile_onnx(tmp_path_factory, model_builders.build_small_cnn)
    work = tmp_path_factory.mktemp("legacy_lines")
    shutil.copy2(mlf, work / "model.tar")
    tvmc("micro", "create", "project", "model.tar", "crt", "--project-option", "project_type=host_driven",
         "board=host", "warning_as_error=true", cwd=work)
    recorded = project_gen.read_project_yaml(work / "project")
    assert (recorded["project_type"], recorded["board"], recorded["warning_as_error"]) == ("host_driven", "host", True)
    tvmc("micro", "build", "project", "crt", cwd=work)
    tvmc("micro", "build", "project", "crt", "-f", cwd=work)
    tvmc("micro", "flash", "project", "crt", cwd=work)
    lines = tvmc("run", "--device", "micro", "project", "--fill-mode", "ones", "--print-top", "4", cwd=work).stdout.splitlines()
    assert lines[0].startswith("top 4 of output_0 (") and lines[1].split() == ["index", "value"]
    from project_api.compiler.mlf import read_metadata

    ones = [np.ones(t["shape"], np.dtype(t["dtype"])) for t in read_metadata(mlf)["inputs"]]
    want = run_native(mlf, ones)[0].reshape(-1)
    assert [int(line.split()[0]) for line in lines[2:6]] == list(np.argsort(-want, kind="stable")[:4])
    assert [float(line.split()[1]) for line in lines[2:6]] == pytest.approx(np.sort(want)[::-1][:4], rel=1e-6)


def test_create_force_regenerates_from_the_projects_own_model(sine_mlf, tmp_path, capsys):
    """-f deletes the old project, so the archive it was given from inside it is read first."""
    project = tmp_path / "p"
    assert cli.main(["micro", "create", str(project), str(sine_mlf), "host"]) == 0
    (project / "stale.txt").write_text("old")
    with tarfile.open(project / "extra.tar", "w") as tar:
        tar.add(project / "stale.txt", arcname="extra.txt")
    assert cli.main(["micro", "create", "-f", str(project), str(project / "model.tar"), "host",
                     "--project-option", f"extra_files_tar={project / 'extra.tar'}"]) == 0
    assert (project / "model.tar").read_bytes() == sine_mlf.read_bytes()
    assert (project / "src" / "model_glue.c").is_file() and not (project / "stale.txt").exists()
    assert (project / "extra.txt").read_text() == "old"
    # a generation that fails puts the old project back, and leaves nothing beside it
    assert cli.main(["micro", "create", "-f", str(project), str(sine_mlf), "host", "--project-option", "board=uno"]) == 1
    assert (project / "extra.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    capsys.readouterr()


def _one_line_error(capfd, *argv):
    """tvmc in-process, its servers' stderr captured too (fd 2): exactly one line, no traceback."""
    assert cli.main([str(a) for a in argv]) == 1
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvmc: error: "), err
    return lines[0]


def test_project_dir_that_is_a_file_or_cannot_be_made(sine_mlf, tmp_path, capfd):
    (tmp_path / "afile").write_text("a file")
    for action in ("build", "flash"):
        line = _one_line_error(capfd, "micro", action, tmp_path / "afile", "host")
        assert "afile is a file, not a project directory" in line
    assert "afile is a file, not a project directory" in _one_line_error(capfd, "micro", "create", tmp_path / "afile",
                                                                         sine_mlf, "host")
    line = _one_line_error(capfd, "micro", "create", "/proc/xx", sine_mlf, "host")
    assert line == ("tvmc: error: generate_project failed: cannot create project directory /proc/xx: "
                    "No such file or directory; pick a PROJECT_DIR in a writable folder")


def test_corrupt_project_yaml_is_one_line_for_build_and_flash(sine_mlf, tmp_path, capfd):
    project = tmp_path / "p"
    assert cli.main(["micro", "create", str(project), str(sine_mlf), "host"]) == 0
    capfd.readouterr()
    (project / "project.yaml").write_text("options: {board: [host\n")
    for action in ("build", "flash"):
        line = _one_line_error(capfd, "micro", action, project, "host")
        assert "project.yaml is not valid YAML (line 2:" in line and "tvmc micro create -f" in line
    (project / "project.yaml").write_text("- just a list\n")
    assert "is not a project.yaml" in _one_line_error(capfd, "micro", "flash", project, "host")
    (project / "project.yaml").write_text("options: {board: [host], warning_as_error: maybe}\n")
    assert _one_line_error(capfd, "micro", "flash", project, "host") == (
        "tvmc: error: project.yaml option 'board': want a string, got ['host']; fix it or regenerate the project "
        "with tvmc micro create -f")


@pytest.mark.slow
@needs_cc
def test_build_force_replaces_a_build_file(sine_mlf, tmp_path, capfd):
    """-f removes what is at PROJECT/build, a stray file too, instead of a NotADirectoryError."""
    project = tmp_path / "p"
    assert cli.main(["micro", "create", str(project), str(sine_mlf), "host"]) == 0
    (project / "build").write_text("not a folder")
    assert "pass -f" in _one_line_error(capfd, "micro", "build", project, "host")
    assert cli.main(["micro", "build", "-f", str(project), "host"]) == 0
    assert (project / "build" / "main").is_file()
