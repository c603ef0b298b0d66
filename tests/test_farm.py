"""The board farm (project_api/farm/): TVM's real RPC tracker on 127.0.0.1, three emulated
mps2-an386 boards (QEMU) each behind its own board server on its own 127.0.0.1 port, KWS
candidate images measured through the cortex_m template's Project API.

The farm is started once for the module (a tracker and three board servers: ~20 s on a loaded
2-core machine) and every test checks that nothing it started is left running.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import fixture_path
from cortex_m_helpers import needs_arm_tools
from project_helpers import tvmc

KWS = "mlperf_tiny_kws_ref_model_int8.tflite"

needs_tornado = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tornado") is None,
    reason="TVM's RPC tracker needs tornado (pip install tornado; a dependency in pyproject.toml)")


def _processes_mentioning(text: str):
    """PIDs of live processes whose command line contains ``text`` (not zombies)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != b"Z":
            found.append((int(entry), cmdline))
    return found


def _left_running(text: str, within_sec: float = 5.0):
    """The processes mentioning ``text`` still there after ``within_sec`` (a SIGKILLed process
    takes a moment to be gone from /proc): what was really left running."""
    deadline = time.monotonic() + within_sec
    while True:
        found = _processes_mentioning(text)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _our_processes():
    from project_api.farm.processes import descendants

    return [(pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120])
            for pid in descendants(os.getpid()) if Path(f"/proc/{pid}").exists()]


def _farm_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "project_api.farm", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(result, prefix):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def test_bad_input_gets_one_line(tmp_path):
    """Unreachable tracker, unknown board, malformed address: one line each, exit status 1."""
    from project_api.emulators.qemu import free_local_port

    dead = f"127.0.0.1:{free_local_port()}"  # nothing listens there
    line = _one_line_error(_farm_cli("serve", "--tracker", dead, "--key", "k", "--board", "no_such_board"),
                           "farm: error: unknown board 'no_such_board'")
    assert "mps2_an386" in line
    line = _one_line_error(_farm_cli("serve", "--tracker", dead, "--key", "k", "--board", "mps2_an386"),
                           f"farm: error: cannot reach an RPC tracker at {dead}")
    _one_line_error(_farm_cli("status", "--tracker", "localhost"), "farm: error: --tracker 'localhost': give HOST:PORT")
    _one_line_error(_farm_cli("status", "--tracker", dead), f"farm: error: cannot reach an RPC tracker at {dead}")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"")
    result = tvmc("tune", model, "--tuning-records", tmp_path / "r.jsonl", "--rpc-tracker", dead,
                  "--rpc-key", "mps2_an386", "--work-dir", tmp_path / "w", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"tvmc: error: cannot reach an RPC tracker at {dead}"), result.stderr
    assert _our_processes() == []


@pytest.fixture(scope="module")
def farm():
    from project_api.farm.emulated import EmulatedFarm

    farm = EmulatedFarm(boards=3, board="mps2_an386", key="mps2_an386")
    with farm:
        yield farm
    assert _our_processes() == [], "the farm left processes running"
    for index in range(len(farm.boards)):
        assert _left_running(farm.work_dir(index)) == [], "an emulator outlived its board server"


@pytest.fixture(scope="module")
def kws_jobs(tmp_path_factory):
    from project_api.farm.jobs import tuning_jobs

    model = fixture_path("models", KWS)
    return tuning_jobs(model, tmp_path_factory.mktemp("jobs"), images=3, per_image=2, lightest=True)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("client")  # the client's build cache, shared by the tests


def _records(results):
    """The records' content (what tvmc tune writes) but the figure and the attempts."""
    return [[(r.signature, r.knobs, r.unit, r.board, r.error) for r in job] for job in results]


# The figures are instruction counts read off a 25 MHz SysTick under -icount shift=0: 40
# instructions per tick, and a board's earlier commands shift the tick's phase, so the same
# candidate reads +-1 tick (baseline and candidate: 2 ticks) depending on what ran before it.
TICK_INSTRUCTIONS = 40


def _figures_agree(results, reference):
    return all(abs(a.cycles - b.cycles) <= 2 * TICK_INSTRUCTIONS
               for job_a, job_b in zip(results, reference) for a, b in zip(job_a, job_b))


@needs_tornado
@needs_arm_tools
def test_unknown_key_and_the_farm_status(farm):
    from project_api.farm import FarmError
    from project_api.farm.runner import TrackerRunner

    with pytest.raises(FarmError, match=r"has no board under key 'nope'; its keys: mps2_an386"):
        TrackerRunner(farm.tracker, "nope", Path("/nonexistent"))
    status = _farm_cli("status", "--tracker", farm.tracker)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("mps2_an386: 3 free of 3,"), status.stdout
    for board in farm.boards:  # each on its own port, on 127.0.0.1 only
        assert f"127.0.0.1:{board.port}" in status.stdout


@needs_tornado
@needs_arm_tools
def test_a_board_killed_mid_job_changes_no_record(farm, kws_jobs, work_dir):
    """The same batch (3 KWS candidate images x 2 candidates, one image per board) on the three boards, then again with
    board 1 SIGKILLed (server, TVM session process, Project API server, QEMU) once it has loaded
    the image and starts measuring its first candidate: the job completes on the other two with
    the same records (candidates, errors, instruction counts within the timer's resolution) and
    bit-identical outputs, and the lost board is marked."""
    from project_api.farm.runner import TrackerRunner

    with TrackerRunner(farm.tracker, farm.key, work_dir) as runner:
        assert len(runner.boards_used) == 3
        reference = runner.run_many(kws_jobs)
        reference_outputs = [(m.signature, m.index, m.output_digest) for m in runner.history]
        spread = {m.measured_on for m in runner.history}
    assert all(r.ok for job in reference for r in job), [r.error for job in reference for r in job]
    assert len(spread) == 3, "every board should have measured something"
    assert runner.stats.builds == 3  # built once here, sent to the board that measures it

    victim = f"127.0.0.1:{farm.boards[1].port}"
    started = []

    def kill_on_its_first_candidate(runner, board, job, index):
        if board.server == victim:
            started.append(index)
            farm.kill_board(1)

    lost_lines = []
    with TrackerRunner(farm.tracker, farm.key, work_dir, on_measure=kill_on_its_first_candidate,
                       log=lost_lines.append) as runner:
        assert len(runner.boards_used) == 3
        again = runner.run_many(kws_jobs)
        outputs = [(m.signature, m.index, m.output_digest) for m in runner.history]
        lost = [b.server for b in runner.pool.lost]
        moved = runner.pool.moved
        measured_on = {m.measured_on for m in runner.history}
    assert len(started) == 1, "the victim board never started a candidate"
    assert lost == [victim] and moved == 1
    assert any(victim in line and "lost" in line for line in lost_lines), lost_lines
    assert f"mps2_an386@{victim}" not in measured_on
    assert _records(again) == _records(reference)
    assert _figures_agree(again, reference), [(a.cycles, b.cycles) for ja, jb in zip(again, reference)
                                              for a, b in zip(ja, jb)]
    assert outputs == reference_outputs
    # The killed board left nothing behind: no server, session process, Project API server or QEMU.
    assert _left_running(farm.work_dir(1)) == []
    assert not farm.boards[1].running


@needs_tornado
@needs_arm_tools
def test_tvmc_tune_on_the_farm(farm, tmp_path):
    """``tvmc tune --rpc-tracker --rpc-key``: the tuner's records come from the farm's boards."""
    import json

    records = tmp_path / "records.jsonl"
    result = tvmc("tune", fixture_path("models", KWS), "--tuning-records", records, "--trials", "3",
                  "--per-image", "3", "--rpc-tracker", farm.tracker, "--rpc-key", farm.key,
                  "--work-dir", tmp_path / "work", "--no-progress")
    assert "tuned mlperf_tiny_kws_ref_model_int8.tflite on mps2_an386" in result.stdout, result.stdout
    entries = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(entries) == 3
    assert all(e["board"] == "mps2_an386" and e["unit"] == "instructions" and e["error"] is None
               and e["cycles"] > 0 for e in entries), entries


needs_avr_tools = pytest.mark.skipif(
    not (__import__("shutil").which("arduino-builder") and __import__("shutil").which("avr-gcc")
         and os.path.isdir("/usr/share/arduino/hardware/arduino/avr")
         and os.path.exists("/usr/include/simavr/sim_avr.h")),
    reason="needs apt-get install gcc-avr avr-libc arduino-builder arduino-core-avr simavr libsimavr-dev")


@needs_tornado
@needs_avr_tools
def test_a_simavr_board_registers_the_same_way(farm, tmp_path_factory):
    """An emulated Arduino Mega (simavr) on the same tracker under its own key: the board host
    builds the sketch from the MLF itself (kind "mlf"), and its outputs equal the host build's."""
    import base64
    import json

    import numpy as np

    from project_api.compiler.native import run_native
    from project_api.farm.board import pack_arrays, unpack_arrays
    from project_api.farm.pool import RemoteBoard
    from project_api.farm.processes import BoardServerProcess
    from project_api.farm.tracker import request_board
    from project_helpers import compiled_mlf

    mlf = compiled_mlf(tmp_path_factory, "tflm_hello_world_int8.tflite")
    work_dir = tmp_path_factory.mktemp("avr-board")
    server = BoardServerProcess(farm.tracker, "mega2560_simavr", "mega2560_simavr", extra_args=[
        "--project-option", "build_tool=arduino-builder", "--work-dir", str(work_dir)])
    with server:
        board = RemoteBoard(request_board(farm.tracker, "mega2560_simavr"))
        assert (board.board, board.platform) == ("mega2560_simavr", "arduino")
        loaded = json.loads(board.call("mtp.farm.load", "hello-avr", "mlf", bytearray(mlf.read_bytes()), "{}"))
        assert loaded.get("done") == "built", loaded
        x = np.array([[5]], np.int8)
        reply = json.loads(board.call("mtp.farm.measure", bytearray(pack_arrays({loaded["inputs"][0]: x})), 2, 2))
        assert "error" not in reply, reply
        outputs = unpack_arrays(base64.b64decode(reply["outputs"]))
        assert np.array_equal(outputs[loaded["outputs"][0]], run_native(mlf, {loaded["inputs"][0]: x})[0])
        assert reply["cycles"] and min(reply["cycles"]) > 1000, reply  # simavr counts cycles
        board.close()
    assert _left_running(str(work_dir)) == [], "the simulator outlived its board server"
