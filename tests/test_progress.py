"""The progress line (project_api/progress.py) and tvmc compile's stages."""

import io
import time

from conftest import fixture_path
import project_helpers
from project_api.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_line_is_rewritten_and_erased():
    term = _Terminal()
    with Progress("job", stream=term) as progress:
        progress.stage("first stage")
        time.sleep(0.6)  # at least one refresh by the thread
        progress.stage("second")
    text = term.getvalue()
    assert "\n" not in text  # one line, rewritten in place
    assert text.count("job: first stage ...") >= 2 and "job: second ..." in text
    assert text.endswith("\r") and text.rsplit("\r", 2)[-2].strip() == ""  # erased at the end


def test_not_a_terminal_is_quiet_unless_verbose():
    quiet, verbose = io.StringIO(), io.StringIO()
    for stream, flag in ((quiet, False), (verbose, True)):
        with Progress("job", stream=stream, verbose=flag) as progress:
            progress.stage("a")
            progress.stage("b")
    assert quiet.getvalue() == ""
    lines = verbose.getvalue().splitlines()
    assert [line.split(" done in ")[0] for line in lines] == ["job: a", "job: b"]
    assert all(line.endswith(" s") for line in lines)


def test_tvmc_compile_reports_its_stages(tmp_path):
    model = fixture_path("models", "tflm_hello_world_float.tflite")
    result = project_helpers.tvmc("-v", "compile", model, "-o", tmp_path / "m.tar")
    stages = [line.split(": ", 1)[1].split(" done in ")[0] for line in result.stderr.splitlines()
              if line.startswith("tvmc compile: ")]
    assert stages[:4] == ["lowering tflm_hello_world_float.tflite with TVM", "planning the arena",
                          "generating the static runtime", f"writing {tmp_path / 'm.tar'}"]
    assert stages[4].startswith("measuring ROM and stack")
