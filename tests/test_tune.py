"""Autotuning (project_api/tune/): every candidate bit-exact with the untuned kernel, tvmc tune on
QEMU mps2-an386 through the cortex_m template's Project API (resumable records, tuned compile
bit-identical to the untuned one), and a board killed in the middle of a measurement."""

import importlib.util
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import fixture_path
from cortex_m_helpers import needs_arm_tools

KWS = "mlperf_tiny_kws_ref_model_int8.tflite"
MICRO_SPEECH = "tflm_micro_speech_quantized.tflite"
HELLO = "tflm_hello_world_int8.tflite"
RESNET = "mlperf_tiny_ic_resnet8_pretrainedResnet_quant.tflite"


def test_every_candidate_is_bit_exact_on_the_host(tmp_path):
    """All candidates of every KWS kernel (gathered/widened/pointwise/direct convolutions,
    depthwise, pooling, both fully connected forms, softmax) in their candidate images, built for
    the host with -Werror (the portable C path): each gives exactly the untuned kernel's output."""
    from project_api.compiler.mlf import export_mlf
    from project_api.compiler.native import NativeModel
    from project_api.tune.image import candidate_image
    from project_api.tune.space import model_tasks

    tasks = [(KWS, t) for t in model_tasks(fixture_path("models", KWS))]
    kinds = {t.kind for _, t in tasks}
    assert {"conv2d", "depthwise_conv2d", "fully_connected", "average_pool2d", "softmax"} <= kinds
    methods = {k["method"] for _, t in tasks if t.kind == "conv2d" for k in t.candidates}
    assert methods == {"direct", "gathered", "gathered_widened", "widened"}
    # ResNet-8's strided pointwise convolutions (the widened pair's second pixel two inputs on)
    tasks += [(RESNET, t) for t in model_tasks(fixture_path("models", RESNET))
              if t.params.get("strides") == [2, 2] and t.params["weight_shape"][1:3] == [1, 1]]
    assert len(tasks) == 8
    for number, (model, task) in enumerate(tasks):
        lowered, _ = candidate_image(fixture_path("models", model), task, task.candidates)
        assert lowered.inputs == ["tune_selector"]  # the layer's inputs are made on the device
        mlf = export_mlf(lowered, tmp_path / f"{number}.tar")
        with NativeModel(mlf, build_dir=tmp_path / f"b{number}", extra_cflags=["-Wall", "-Wextra", "-Werror"]) as native:
            runs = native.run_many([{"tune_selector": np.array([i], np.int32)} for i in range(-1, len(task.candidates))])
            baseline, outputs = runs[0], runs[1:]
            for knobs, (output, checksum) in zip(task.candidates, outputs):
                assert np.array_equal(output, outputs[0][0]), (task.signature, knobs)
                assert checksum[0] == outputs[0][1][0]
            # selector -1 runs no candidate (the timing baseline): the output keeps its marker
            assert np.all(baseline[0] == 0x5A) and baseline[1][0] != outputs[0][1][0]


def test_cost_model_transfers_between_models():
    """Trained on KWS records in which widened inputs pay on the pointwise kernel (and nothing
    else does), the cost model ranks widened first for every pointwise kernel of VWW, which it
    has never seen; untrained, it keeps the table's order."""
    from project_api.tune.records import Records
    from project_api.tune.runner import Runner
    from project_api.tune.tuner import TaskState, Tuner
    from project_api.tune.space import model_tasks

    kws = model_tasks(fixture_path("models", KWS))
    prior = []
    for task in kws:
        for knobs in task.candidates:
            ratio = 0.8 if knobs.get("method") == "widened" else 1.0 + 0.01 * (len(prior) % 3)
            prior.append({"signature": task.signature, "knobs": knobs, "cycles": 1e6 * ratio, "board": "b",
                          "error": None})
    tuner = Tuner(fixture_path("models", KWS), Runner(), Records(None), "cortex_m", Path("."), progress=False)
    pointwise = [t for t in model_tasks(fixture_path("models", "mlperf_tiny_vww_96_int8.tflite"))
                 if t.kind == "conv2d" and t.params["weight_shape"][1:3] == [1, 1]]
    assert len(pointwise) >= 8
    for task in pointwise:  # untrained: the table's order (the untuned kernel first)
        assert tuner._ranked(TaskState(task)) == task.candidates
    assert tuner.learn_records(prior) == len(prior)
    for task in pointwise:
        assert tuner._ranked(TaskState(task))[0]["method"] == "widened", task.signature


def test_untuned_compile_takes_the_default_knobs():
    """A chooser that knows no signature leaves the C exactly as without one."""
    from project_api.compiler.lowering import lower_model

    path = fixture_path("models", MICRO_SPEECH)
    plain = lower_model(path, mcpu="cortex-m4")
    unknown = lower_model(path, mcpu="cortex-m4", chooser=lambda signature: None)
    assert plain.kernels_c == unknown.kernels_c
    assert "mtp_widen_s8" not in plain.kernels_c


def test_bad_command_lines_are_one_line(tmp_path, capsys):
    from project_api.cli import main

    model = fixture_path("models", HELLO)

    def error(*argv):
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        return err

    assert "--project-option board=" in error("tune", model, "--tuning-records", tmp_path / "r.jsonl")
    if importlib.util.find_spec("project_api.tune.farm") is None:  # a build without the board farm
        assert "board farm: not available in this build" in error(
            "tune", model, "--tuning-records", tmp_path / "r.jsonl", "--rpc-tracker", "127.0.0.1:9190",
            "--rpc-key", "mps2_an386")
    assert "--rpc-key needs --rpc-tracker" in error("tune", model, "--tuning-records", tmp_path / "r.jsonl",
                                                    "--rpc-key", "mps2_an386")
    assert "--trials must be at least 1" in error("tune", model, "--tuning-records", tmp_path / "r.jsonl",
                                                  "--project-option", "board=mps2_an386", "--trials", "0")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"signature": "x"}\n')
    assert "bad.jsonl:1" in error("compile", model, "-o", tmp_path / "m.tar", "--tuning-records", bad)
    assert "nothing to tune" in error("tune", fixture_path("models", "tflm_hello_world_float.tflite"),
                                      "--tuning-records", tmp_path / "r.jsonl", "--project-option",
                                      "board=mps2_an386", "--work-dir", tmp_path / "w")


def _records(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@needs_arm_tools
@pytest.mark.slow
def _tvmc_here(capsys, *argv):
    """The tvmc command line in this process (TVM is imported once for the test's five commands)."""
    from project_api.cli import main

    capsys.readouterr()
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert status == 0, out.err
    return out


def test_tune_resume_and_tuned_compile(tmp_path, capsys):
    """tvmc tune on QEMU mps2-an386 records measurements; the same command again measures, builds
    and flashes nothing; a larger --trials measures only what is new; tvmc compile
    --tuning-records takes the best knobs, and the tuned model's outputs equal the untuned
    model's on 10 random inputs."""
    from project_api.compiler.native import NativeModel

    model = fixture_path("models", HELLO)
    records = tmp_path / "records.jsonl"
    argv = ["tune", model, "--target", "c", "--tuning-records", records, "--project-option", "board=mps2_an386",
            "--per-image", "4", "--work-dir", tmp_path / "work", "--no-progress"]
    first = _tvmc_here(capsys, *argv, "--trials", "5")
    entries = _records(records)
    assert len(entries) == 5 and "5 new measurements" in first.out
    assert all(e["board"] == "mps2_an386" and e["unit"] == "instructions" and "arm-none-eabi-gcc" in e["compiler"]
               for e in entries)
    assert all(e["error"] is None and e["cycles"] > 0 for e in entries)
    assert len({e["cycles"] for e in entries if e["kind"] == "fully_connected"}) > 1  # the knobs change the code

    again = _tvmc_here(capsys, *argv, "--trials", "5")
    assert "0 new measurements" in again.out and "0 builds, 0 flashes" in again.out
    assert len(_records(records)) == 5
    rest = _tvmc_here(capsys, *argv, "--trials", "100")
    entries = _records(records)
    assert "3 new measurements" in rest.out and len(entries) == 8
    assert len({(e["signature"], json.dumps(e["knobs"], sort_keys=True)) for e in entries}) == 8  # none twice

    untuned = _tvmc_here(capsys, "compile", model, "-o", tmp_path / "untuned.tar", "--mcpu", "cortex-m4")
    tuned = _tvmc_here(capsys, "compile", model, "-o", tmp_path / "tuned.tar", "--mcpu", "cortex-m4", "--tuning-records", records)
    assert "tuning records" in tuned.err and "take tuned knobs" in tuned.out
    assert "tuning records" not in untuned.out
    rng = np.random.default_rng(5)
    with NativeModel(tmp_path / "untuned.tar") as a, NativeModel(tmp_path / "tuned.tar") as b:
        batch = [[rng.integers(-128, 128, size=a.inputs[0]["shape"], dtype=np.int8)] for _ in range(10)]
        for x, y in zip(a.run_many(batch), b.run_many(batch)):
            assert np.array_equal(x[0], y[0])


def _qemu_pids(work_dir: Path):
    """QEMU processes running firmware under ``work_dir`` (the test's own, found by id)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and any(str(work_dir).encode() in part for part in cmdline):
            pids.append(int(entry.name))
    return pids


@needs_arm_tools
@pytest.mark.slow
def test_board_killed_mid_measurement(tmp_path):
    """The emulated board hangs (SIGSTOP) during one candidate's measurement: detected by timeout,
    re-flashed, the candidate retried and measured; it is killed (SIGKILL) during both attempts of
    another candidate, which is recorded as failed; the session goes on with the next candidates
    and kernels, and no emulator is left running."""
    from project_api.tune.records import Records
    from project_api.tune.runner import LocalRunner
    from project_api.tune.space import model_tasks
    from project_api.tune.tuner import Tuner

    model = fixture_path("models", HELLO)
    work = tmp_path / "work"
    target = next(t for t in model_tasks(model) if len(t.candidates) == 4)
    killed = []

    def kill_board(runner, job, index):
        visits = [v for v in killed if v[0] == index]
        if job.signature == target.signature and ((index == 1 and not visits) or index == 2):
            pids = _qemu_pids(work)
            assert pids, "the board's emulator should be running"
            for pid in pids:
                os.kill(pid, signal.SIGSTOP if index == 1 else signal.SIGKILL)
            killed.append((index, pids))

    records = Records(tmp_path / "records.jsonl")
    with LocalRunner("cortex_m", {"board": "mps2_an386"}, work, timeout=2, on_measure=kill_board) as runner:
        # four trials: the heaviest kernel (16x16 fully connected, four candidates) in one image
        summary = Tuner(model, runner, records, "cortex_m", work, trials=4, progress=False).tune()
    assert [index for index, _ in killed] == [1, 2, 2]
    entries = _records(tmp_path / "records.jsonl")
    assert len(entries) == 4 and summary.measurements == 4
    mine = [e for e in entries if e["signature"] == target.signature]
    retried = next(e for e in mine if e["knobs"] == target.candidates[1])
    failed = next(e for e in mine if e["knobs"] == target.candidates[2])
    assert retried["error"] is None and retried["attempts"] == 2 and retried["cycles"] > 0
    assert failed["error"] and "board lost" in failed["error"] and failed["cycles"] is None
    assert "TransportClosedError" in failed["error"] or "closed" in failed["error"].lower()
    assert failed["attempts"] == 2
    after = next(e for e in mine if e["knobs"] == target.candidates[3])
    assert after["error"] is None and after["cycles"] > 0  # the session went on after the failure
    assert runner.stats.builds == 1 and runner.stats.flashes == 1 + 3  # one image, one re-flash per fault
    assert not _qemu_pids(work)
    for _, pids in killed:
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "Z" in (Path(f"/proc/{pid}/stat").read_text().split()[2])


def test_records_survive_a_session_killed_mid_write(tmp_path):
    """A records file whose last line was cut short (the session was killed while writing) still
    reads, the cut line is dropped when the next record is appended, and best_knobs picks the
    fewest cycles of one board."""
    from project_api.tune.records import Records, best_knobs, read_records
    from project_api.tune.runner import MeasureResult

    path = tmp_path / "records.jsonl"
    records = Records(path)
    records.append(MeasureResult("conv2d:{}", {"opt": "Os"}, 900.0, "instructions", "a"), "conv2d", "cc 1", "m")
    records.append(MeasureResult("conv2d:{}", {"opt": "O2"}, 800.0, "instructions", "a"), "conv2d", "cc 1", "m")
    records.append(MeasureResult("conv2d:{}", {"opt": "O3"}, None, "instructions", "a", "board lost"), "conv2d",
                   "cc 1", "m")
    path.write_text(path.read_text() + '{"signature": "conv2d:{}", "kno')
    again = Records(path)
    assert len(again.entries) == 3
    assert set(again.measured("a", "cc 1")) == {("conv2d:{}", k) for k in ('{"opt":"Os"}', '{"opt":"O2"}', '{"opt":"O3"}')}
    assert again.measured("a", "cc 2") == {}  # another compiler: measured again
    again.append(MeasureResult("conv2d:{}", {"opt": "Os"}, 700.0, "cycles", "b"), "conv2d", "cc 1", "m")
    entries = list(read_records(path))
    assert len(entries) == 4
    assert best_knobs(entries, "a") == ({"conv2d:{}": {"opt": "O2"}}, "a")
    assert best_knobs(entries) == ({"conv2d:{}": {"opt": "Os"}}, "b")  # the latest record's board
