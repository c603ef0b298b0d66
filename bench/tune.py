"""Instructions per inference untuned vs tuned (same run) on QEMU mps2-an386, beside tflite-micro + CMSIS-NN.

For each model: `tvmc tune` on mps2_an386 (the cortex_m template on QEMU with -icount shift=0:
every figure is an exact instruction count) into a fresh records file, then two whole-model
standalone images measured as bench/speed.py does: the untuned compile and the compile with
--tuning-records. Also: the tuning wall time, images built and flashed, candidates measured, and
whether the tuned model's outputs equal the untuned model's on 10 random inputs (host build).
TFLM+CMSIS-NN figures are the published ones quoted in issues 8 and 12 (not rebuilt here).

    python bench/tune.py [--trials N] [MODEL_STEM ...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
MODELS_DIR = REPO.parent / "shared" / "fixtures" / "models"

# Published tflite-micro + CMSIS-NN instructions per inference on QEMU mps2-an386 (issues 8, 12).
TFLM_CMSIS = {
    "mlperf_tiny_kws_ref_model_int8": 7_700_000,
    "mlperf_tiny_ic_resnet8_pretrainedResnet_quant": 29_900_000,
    "mlperf_tiny_vww_96_int8": 24_101_543,
    "mlperf_tiny_ad01_int8": 580_000,
    "tflm_micro_speech_quantized": 1_500_000,
}
DEFAULT_MODELS = ["mlperf_tiny_kws_ref_model_int8", "mlperf_tiny_ic_resnet8_pretrainedResnet_quant",
                  "mlperf_tiny_vww_96_int8"]
BOARD = "mps2_an386"


def tune(model: Path, records: Path, work: Path, trials: int):
    argv = [sys.executable, "-m", "project_api", "tune", str(model), "--tuning-records", str(records),
            "--project-option", f"board={BOARD}", "--work-dir", str(work), "--trials", str(trials), "--no-progress"]
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=7200, env=_env())
    wall = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"tvmc tune failed: {result.stderr.strip()[-600:]}")
    summary = result.stdout.strip().splitlines()[-1]
    numbers = {key: int(value) for value, key in
               re.findall(r"(\d+) (new measurements|builds|flashes)", summary)}
    return wall, numbers, summary


def _env():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def same_outputs(untuned, tuned, work: Path, count: int = 10) -> bool:
    """The two builds' outputs on ``count`` random inputs (host build of each MLF)."""
    from project_api.compiler.mlf import export_mlf
    from project_api.compiler.native import NativeModel

    rng = np.random.default_rng(12)
    batch = [{name: rng.integers(-128, 128, size=untuned.tensors[name].shape, dtype=np.int8)
              for name in untuned.inputs} for _ in range(count)]
    with NativeModel(export_mlf(untuned, work / "untuned.tar")) as a, NativeModel(export_mlf(tuned, work / "tuned.tar")) as b:
        return all(np.array_equal(x, y) for ra, rb in zip(a.run_many(batch), b.run_many(batch)) for x, y in zip(ra, rb))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args(argv)

    import speed
    from project_api import boards
    from project_api.compiler.lowering import lower_model
    from project_api.tune.records import chooser_from_file

    cpu = boards.get_board(BOARD, "cortex_m").cpu
    header = (f"{'model':<46} {'untuned':>12} {'tuned':>12} {'tuned/untuned':>13} {'TFLM+CMSIS*':>12} "
              f"{'tuned/CMSIS':>11} {'tune wall':>9} {'images':>6} {'flashes':>7} {'trials':>6} {'bit-exact':>9}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for stem in args.models:
            model = MODELS_DIR / f"{stem}.tflite"
            if not model.is_file():
                print(f"{stem:<46} (fixture missing: {model})")
                continue
            work = Path(tmp) / stem
            records = work / "records.jsonl"
            wall, numbers, _ = tune(model, records, work / "tune", args.trials)
            chooser, _, _ = chooser_from_file(records, BOARD)
            untuned_model = lower_model(model, mcpu=cpu)
            tuned_model = lower_model(model, mcpu=cpu, chooser=chooser)
            untuned = speed.instructions_per_inference(untuned_model, BOARD, work / "untuned")
            tuned = speed.instructions_per_inference(tuned_model, BOARD, work / "tuned")
            exact = same_outputs(untuned_model, tuned_model, work)
            cmsis = TFLM_CMSIS.get(stem)
            print(f"{stem:<46} {untuned:>12,} {tuned:>12,} {tuned / untuned:>13.3f} "
                  f"{cmsis or 0:>12,} {(tuned / cmsis if cmsis else 0):>11.2f} {wall:>8.0f}s "
                  f"{numbers.get('builds', 0):>6} {numbers.get('flashes', 0):>7} "
                  f"{numbers.get('new measurements', 0):>6} {'yes' if exact else 'NO':>9}", flush=True)
    print("* published tflite-micro + CMSIS-NN counts (QEMU mps2-an386), quoted from issues 8 and 12; not rebuilt here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
