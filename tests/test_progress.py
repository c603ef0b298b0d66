"""The progress line (project_api/progress.py); tvmc compile's stages: tests/test_report.py."""

import io
import time

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
