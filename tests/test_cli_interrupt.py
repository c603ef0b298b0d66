"""Ctrl-C during ``tvmc run --device micro``: one line ``tvmc: interrupted``, exit status 130, and
nothing left running — not the Project API server, nor what it started (the host board's
device program, QEMU). Ctrl-C is simulated as a terminal sends it: SIGINT to the whole process
group, tvmc's children included."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import model_builders
from cortex_m_helpers import needs_arm_tools
from project_helpers import needs_cc, tvmc
from rpc_test_device import compile_onnx, host_project

pytestmark = [pytest.mark.slow, needs_cc]

if not pathlib.Path("/proc/self/task").is_dir():
    pytest.skip("needs Linux /proc to follow tvmc's child processes", allow_module_level=True)


def _descendants(pid):
    """pid's children, grandchildren ... (read from /proc)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        try:
            children = [int(c) for c in pathlib.Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            continue
        found += children
        queue += children
    return found


def _command(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt_mid_run(project, device_marker):
    """Start a long tvmc run, wait until the device (a process whose command line holds
    ``device_marker``) is up and the run under way, then Ctrl-C the process group."""
    argv = [sys.executable, "-m", "project_api", "run", "--device", "micro", str(project),
            "--print-time", "--number", "100000000"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not any(device_marker in _command(p) for p in _descendants(proc.pid)):
            assert proc.poll() is None, f"tvmc ended before its device started: {proc.communicate()}"
            assert time.monotonic() < deadline, "the device did not start within 60 s"
            time.sleep(0.05)
        time.sleep(1.0)  # into the timed runs
        started = _descendants(proc.pid)
        assert proc.poll() is None, "the run ended before the interrupt: raise --number"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # What tvmc started must be gone once it has exited (give the kernel a moment to reap).
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [_command(p) for p in started if _alive(p)]
    for pid in started:  # never leak one, even when the test fails
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert (proc.returncode, out, err) == (130, "", "tvmc: interrupted\n")
    assert not survivors, f"still running after tvmc exited: {survivors}"


def test_ctrl_c_on_the_host_board(tmp_path_factory):
    mlf = compile_onnx(tmp_path_factory, model_builders.build_sine_mlp)
    project = host_project(tmp_path_factory, "sine_mlp", mlf)
    _interrupt_mid_run(project, "build/main")


@needs_arm_tools
def test_ctrl_c_on_an_emulated_cortex_m_board(tmp_path_factory):
    mlf = compile_onnx(tmp_path_factory, model_builders.build_sine_mlp)
    project = tmp_path_factory.mktemp("interrupt_cortex_m") / "project"
    tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", "board=mps2_an385")
    tvmc("micro", "build", project, "cortex_m")
    tvmc("micro", "flash", project, "cortex_m")
    _interrupt_mid_run(project, "qemu-system-arm")
