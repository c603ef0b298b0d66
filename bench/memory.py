"""Memory of the compiled fixture models beside tflite-micro's, measured in the same run.

For each fixture .tflite model (the hybrid one is a refusal case, not a model to measure):
  our arena (planner), the liveness lower bound, the ratio, weights bytes, inputs+outputs bytes,
  tflite-micro's arena (RecordingMicroAllocator: total, and its "head" = planned tensors incl. I/O),
  and the .text of the generated kernels for Cortex-M4 (arm-none-eabi-gcc -Os, arm-none-eabi-size).
Targets: arena <= 1.05x the lower bound, and below tflite-micro's arena, on every model.
Then, for each legacy archive (TVM 0.8-0.18 MLF .tar, ../shared/fixtures/legacy-mlf/), the arena of
the static runtime `tvmc micro create` generates for it beside the workspace_size_bytes its own
metadata records (what legacy templates reserved). Target: arena <= workspace_size_bytes.

    python bench/memory.py [MODEL.tflite | LEGACY_MLF.tar ...]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODELS_DIR = REPO.parent / "shared" / "fixtures" / "models"
LEGACY_DIR = REPO.parent / "shared" / "fixtures" / "legacy-mlf"
HYBRID_MODELS = {"mlperf_tiny_kws_ref_model_float32.tflite"}  # dynamic-range: must be refused, not measured
ARM_CFLAGS = ["-Os", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]

# tflite-micro prints its allocation record from C, so it runs in a child process.
_TFLM_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
interpreter = runtime.Interpreter.from_file(sys.argv[1])
index = 0
while True:
    try:
        details = interpreter.get_input_details(index)
    except Exception:
        break
    interpreter.set_input(np.zeros(details["shape"], details["dtype"]), index)
    index += 1
interpreter.invoke()
sys.stdout.flush()
interpreter.print_allocations()
"""


def tflm_arena(model: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", _TFLM_PROBE, str(model)], capture_output=True, text=True, timeout=300)
    # MicroPrintf writes to stderr in this build; read both streams.
    found = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", result.stdout + result.stderr))
    if "total" not in found:
        return {"error": (result.stderr.strip().splitlines() or ["no allocation record"])[-1]}
    return {k: int(v) for k, v in found.items()}


def kernels_text_bytes(runtime, tmp: Path) -> object:
    if not shutil.which("arm-none-eabi-gcc"):
        return "n/a"
    runtime.write(tmp / "include", tmp / "src")
    source = tmp / "src" / f"{runtime.c_name}_kernels.c"
    obj = tmp / "kernels.o"
    subprocess.run(["arm-none-eabi-gcc", *ARM_CFLAGS, "-I", str(tmp / "include"), "-c", str(source), "-o", str(obj)],
                   check=True, capture_output=True, text=True)
    size = subprocess.run(["arm-none-eabi-size", str(obj)], check=True, capture_output=True, text=True).stdout
    return int(size.splitlines()[1].split()[0])


def measure(model: Path) -> dict:
    from project_api.compiler.lowering import lower_model
    from project_api.compiler.mlf import memory_report
    from project_api.compiler.planner import plan_model
    from project_api.compiler.runtime_gen import generate_runtime

    lowered = lower_model(str(model))
    plan = plan_model(lowered)
    report = memory_report(lowered, plan)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        text = kernels_text_bytes(generate_runtime(lowered, plan), Path(tmp))
    return {**report, "text": text, "tflm": tflm_arena(model)}


def measure_legacy(archive: Path) -> dict:
    """The translation `tvmc micro create` makes of a legacy archive (project_api/mlf/legacy.py)."""
    from project_api.mlf.legacy import translate_if_legacy
    from project_api.mlf.reader import extract_mlf

    with tempfile.TemporaryDirectory(prefix="bench-legacy-") as tmp:
        model_dir = extract_mlf(archive, Path(tmp) / "model")
        translation = translate_if_legacy(model_dir, str(archive))
    if translation is None:
        raise ValueError("not a legacy archive (written by microtvm-projects)")
    return {"executor": translation.executor, "arena": translation.arena_bytes, "bound": translation.lower_bound_bytes,
            "workspace": translation.workspace_size_bytes}


def print_legacy(archives) -> bool:
    header = f"{'legacy archive':<52} {'executor':>8} {'arena':>7} {'bound':>7} {'archive workspace_size_bytes':>29} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    met = True
    for archive in archives:
        try:
            row = measure_legacy(archive)
        except Exception as err:  # a refused archive is a result too
            print(f"{archive.name:<52} refused: {' '.join(str(err).split())[:120]}")
            met = False
            continue
        workspace = row["workspace"]
        ratio = f"{row['arena'] / workspace:.2f}x" if workspace else "-"
        met &= workspace is None or row["arena"] <= workspace
        print(f"{archive.name:<52} {row['executor']:>8} {row['arena']:>7} {row['bound']:>7} {workspace if workspace is not None else '-':>29} {ratio:>6}")
    print()
    print("arena: the static memory of the runtime generated at `tvmc micro create` (graph: one planned arena for")
    print("intermediates and kernel workspaces; AOT: the archive's own pool); archive workspace_size_bytes: its metadata.")
    print(f"target (arena <= archive workspace_size_bytes): {'met' if met else 'NOT met'}")
    return met


def main(argv) -> int:
    legacy = [Path(a) for a in argv if a.endswith(".tar")]
    models = [Path(a) for a in argv if not a.endswith(".tar")]
    if not argv:
        models = sorted(p for p in MODELS_DIR.glob("*.tflite") if p.name not in HYBRID_MODELS)
        legacy = sorted(LEGACY_DIR.glob("*.tar"))
    if not models and not legacy:
        print(f"no models: {MODELS_DIR} is absent (the ../shared fixtures are not beside this checkout)")
        return 0
    if models:
        print_models(models)
    if legacy:
        if models:
            print()
        print_legacy(legacy)
    return 0


def print_models(models) -> bool:
    header = (f"{'model':<52} {'arena':>7} {'bound':>7} {'ratio':>6} {'tflm':>7} {'tflm head':>9} "
              f"{'vs tflm':>7} {'weights':>8} {'io':>6} {'.text M4':>8}")
    print(header)
    print("-" * len(header))
    met = True
    for model in models:
        try:
            row = measure(model)
        except Exception as err:  # a model the compiler refuses is a result too: print it and go on
            print(f"{model.name:<52} failed: {' '.join(str(err).split())[:120]}")
            met = False
            continue
        arena, bound, tflm = row["arena_bytes"], row["lower_bound_bytes"], row["tflm"]
        ratio = arena / bound if bound else 1.0
        total = tflm.get("total")
        versus = f"{arena / total:.2f}x" if total else "-"
        met &= ratio <= 1.05 and (total is None or arena < total)
        print(f"{model.name:<52} {arena:>7} {bound:>7} {ratio:>5.2f}x {total if total else tflm.get('error', '-'):>7} "
              f"{tflm.get('head', '-'):>9} {versus:>7} {row['weight_bytes']:>8} {row['io_bytes']:>6} {row['text']:>8}")
    print()
    print("arena: our static arena (inputs/outputs are caller buffers, outside it); bound: liveness lower bound;")
    print("tflm: tflite-micro RecordingMicroAllocator total (head = its planned tensors incl. inputs/outputs);")
    print("weights: constant bytes in flash; .text M4: generated kernels, arm-none-eabi-gcc -Os, Cortex-M4.")
    print(f"targets (arena <= 1.05x bound, arena < tflm on every model): {'met' if met else 'NOT met'}")
    return met


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
