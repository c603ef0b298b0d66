"""Shared by the tests of project generation, the CLI and the templates: real MLF archives made
with `tvmc compile` (once per session and model), tvmc run in a subprocess, template servers
loaded as modules, a device frozen (SIGSTOP) in the middle of time_evaluate."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import fixture_path
from project_api.errors import SessionError

_compiled = {}
_servers = {}

needs_cc = pytest.mark.skipif(not (shutil.which("make") and shutil.which("cc")),
                              reason="needs make and a C compiler (apt-get install make gcc)")


def tvmc(*argv, cwd=None, check=True) -> subprocess.CompletedProcess:
    """Run the tvmc command line as a user would; returns the completed process (text output)."""
    result = subprocess.run([sys.executable, "-m", "project_api", *map(str, argv)], cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tvmc {' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stderr}")
    return result


def compiled_mlf(tmp_path_factory, model_file: str) -> Path:
    """model.tar compiled from ../shared/fixtures/models/<model_file> (skips when absent)."""
    source = fixture_path("models", model_file)
    if model_file not in _compiled:
        out = tmp_path_factory.mktemp("mlf") / "model.tar"
        tvmc("compile", source, "-o", out, "--output-format", "mlf")
        _compiled[model_file] = out
    return _compiled[model_file]


def load_server(server_py: Path):
    """A template's or generated project's microtvm_api_server.py as a module (a script, not a
    package; every template's has that file name, so each is loaded once under a name of its own)."""
    server_py = Path(server_py).resolve()
    if server_py not in _servers:
        spec = importlib.util.spec_from_file_location(f"microtvm_api_server_{len(_servers)}", server_py)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import does: the module's classes can find their file
        spec.loader.exec_module(module)
        _servers[server_py] = module
    return _servers[server_py]


def frozen_during_time_evaluate(session, device_pid, number, repeat, freeze_in_batch, hard_limit_sec):
    """time_evaluate(number, repeat) with the device SIGSTOPped 0.1 s into batch
    ``freeze_in_batch`` (1-based); SIGKILLed after ``hard_limit_sec`` should nothing notice.
    Returns (the SessionError, seconds from the start of time_evaluate to the error, seconds per
    batch measured before the freeze)."""
    batch_times, time_runs = [], session.commands.time_runs

    def time_runs_then_freeze(count, **kwargs):
        if count == number and len(batch_times) + 1 == freeze_in_batch:
            threading.Timer(0.1, os.kill, (device_pid, signal.SIGSTOP)).start()
        started = time.monotonic()
        timed = time_runs(count, **kwargs)
        if count == number:
            batch_times.append(time.monotonic() - started)
        return timed

    session.commands.time_runs = time_runs_then_freeze
    watchdog = threading.Timer(hard_limit_sec, os.kill, (device_pid, signal.SIGKILL))
    watchdog.start()
    started = time.monotonic()
    try:
        with pytest.raises(SessionError) as caught:
            session.time_evaluate(number=number, repeat=repeat)
        return caught.value, time.monotonic() - started, max(batch_times)
    finally:
        watchdog.cancel()


def check_frozen_error(error, elapsed, batch_sec, repeat, timeouts):
    """The line names the command and what a batch was expected to take (what the batches before
    the freeze took), and came within 2x the expected run time plus the established timeout."""
    match = re.search(r"the device stopped answering during TIME_RUNS: no reply within ([\d.]+) s, "
                      r"where ([\d.e-]+) s was expected", str(error))
    assert match, error
    assert 0.5 * batch_sec < float(match.group(2)) < 2 * batch_sec, (error, batch_sec)
    expected_run_sec = batch_sec * repeat
    assert elapsed < 2 * expected_run_sec + timeouts.session_established_timeout_sec, (elapsed, batch_sec)
    print(f"\nfrozen device noticed {elapsed:.2f} s after time_evaluate started "
          f"({repeat} batches of {batch_sec:.3f} s expected): {error}")
