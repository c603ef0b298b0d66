"""Memory of the compiled fixture models beside tflite-micro's, measured in the same run.

For each fixture .tflite model (the hybrid one is a refusal case, not a model to measure):
  our arena (planner), the liveness lower bound, the ratio, weights bytes, inputs+outputs bytes,
  tflite-micro's arena (RecordingMicroAllocator: total, and its "head" = planned tensors incl. I/O),
  and the .text of the generated kernels for Cortex-M4 (arm-none-eabi-gcc -Os, arm-none-eabi-size);
then patch-based inference (project_api/compiler/patching.py): the layer-wise lower bound, our arena
without and with patching (the smallest planned arena among the plans costing at most 15% extra
MACs), its plan and extra MACs, the smallest arena any plan reaches and at what MAC cost, the
kernels' .text with patching, and tflite-micro's arena again for comparison.
Then, for each legacy archive (TVM 0.8-0.18 MLF .tar, ../shared/fixtures/legacy-mlf/), the arena of
the static runtime `tvmc micro create` generates for it beside the workspace_size_bytes its own
metadata records (what legacy templates reserved).
Targets: arena <= 1.05x the lower bound, and below tflite-micro's arena, on every model; patched
VWW arena <= 0.5x the layer-wise lower bound with <= 15% extra MACs; legacy arena <=
workspace_size_bytes.

The first table also gives our previous release's arena (--previous, default c257bff: its compiler,
extracted with `git archive` in this run, as bench/speed.py does).

    python bench/memory.py [--previous REV | --no-previous] [MODEL.tflite | LEGACY_MLF.tar ...]
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
    return {**report, "text": text, "tflm": tflm_arena(model), "patching": measure_patching(model, lowered, plan)}


MAX_EXTRA_MACS = 0.15  # the ceiling on the MACs patching may add


def measure_patching(model: Path, lowered, plan) -> dict:
    """The cheapest-in-memory plan within MAX_EXTRA_MACS and the smallest arena at any MAC cost,
    each compiled and planned (the planned arena, not the estimate)."""
    from project_api.compiler import patching
    from project_api.compiler.lowering import lower_model
    from project_api.compiler.planner import plan_model
    from project_api.compiler.runtime_gen import generate_runtime

    plans = patching.search(model, lowered)
    if not plans:
        return {}
    result = {}
    for key, choice in (("within", patching.smallest_plan(plans, MAX_EXTRA_MACS, below=plan.arena_size)),
                        ("smallest", patching.smallest_plan(plans))):
        if choice is None:
            continue
        patched = lower_model(model, patch_plan=choice)
        patched_plan = plan_model(patched)
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            text = kernels_text_bytes(generate_runtime(patched, patched_plan), Path(tmp))
        result[key] = {"plan": choice, "arena": patched_plan.arena_size, "text": text}
    return result


_PREVIOUS_ARENA = r"""
import sys
from project_api.compiler.lowering import lower_model
from project_api.compiler.planner import plan_model
print(plan_model(lower_model(sys.argv[1])).arena_size)
"""


def previous_arena(tree: Path, model: Path) -> str:
    """The arena the previous release's compiler (its tree first on the path) plans for ``model``."""
    import os

    result = subprocess.run([sys.executable, "-c", _PREVIOUS_ARENA, str(model)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tree)}, cwd=str(tree), timeout=900)
    return result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else "refused"


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
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed import PREVIOUS_RELEASE, previous_release_tree

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--previous", default=PREVIOUS_RELEASE, help=f"previous release (default {PREVIOUS_RELEASE})")
    parser.add_argument("--no-previous", action="store_true")
    args = parser.parse_args(argv)
    legacy = [Path(a) for a in args.models if a.endswith(".tar")]
    models = [Path(a) for a in args.models if not a.endswith(".tar")]
    if not args.models:
        models = sorted(p for p in MODELS_DIR.glob("*.tflite") if p.name not in HYBRID_MODELS)
        legacy = sorted(LEGACY_DIR.glob("*.tar"))
    if not models and not legacy:
        print(f"no models: {MODELS_DIR} is absent (the ../shared fixtures are not beside this checkout)")
        return 0
    if models:
        work = tempfile.TemporaryDirectory(prefix="bench-memory-previous-")
        tree = None if args.no_previous else previous_release_tree(args.previous, Path(work.name))
        rows = print_models(models, tree, args.previous)
        work.cleanup()
        print()
        print_patching(rows)
    if legacy:
        print()
        print_legacy(legacy)
    return 0


def print_models(models, tree, previous_rev):
    header = (f"{'model':<52} {'arena':>7} {'bound':>7} {'ratio':>6} {'prev':>7} {'tflm':>7} {'tflm head':>9} "
              f"{'vs tflm':>7} {'weights':>8} {'io':>6} {'.text M4':>8}")
    print(header)
    print("-" * len(header))
    met = True
    rows = []
    for model in models:
        try:
            row = measure(model)
            rows.append((model.name, row))
        except Exception as err:  # a model the compiler refuses is a result too: print it and go on
            print(f"{model.name:<52} failed: {' '.join(str(err).split())[:120]}")
            met = False
            continue
        arena, bound, tflm = row["arena_bytes"], row["lower_bound_bytes"], row["tflm"]
        ratio = arena / bound if bound else 1.0
        total = tflm.get("total")
        versus = f"{arena / total:.2f}x" if total else "-"
        met &= ratio <= 1.05 and (total is None or arena < total)
        previous = previous_arena(tree, model) if tree is not None else "-"
        print(f"{model.name:<52} {arena:>7} {bound:>7} {ratio:>5.2f}x {previous:>7} "
              f"{total if total else tflm.get('error', '-'):>7} "
              f"{tflm.get('head', '-'):>9} {versus:>7} {row['weight_bytes']:>8} {row['io_bytes']:>6} {row['text']:>8}")
    print()
    print("arena: our static arena (inputs/outputs are caller buffers, outside it); bound: liveness lower bound;")
    print(f"prev: the arena of our previous release ({previous_rev}, compiled in this run);")
    print("tflm: tflite-micro RecordingMicroAllocator total (head = its planned tensors incl. inputs/outputs);")
    print("weights: constant bytes in flash; .text M4: generated kernels, arm-none-eabi-gcc -Os, Cortex-M4.")
    print(f"targets (arena <= 1.05x bound, arena < tflm on every model): {'met' if met else 'NOT met'}")
    return rows


def print_patching(rows) -> None:
    header = (f"{'model':<52} {'bound':>7} {'arena':>7} {'patched':>7} {'ratio':>6} {'plan':>9} {'+MACs':>7} "
              f"{'smallest':>8} {'ratio':>6} {'plan':>9} {'+MACs':>7} {'tflm':>7} {'.text M4':>8} {'patched':>8}")
    print("patch-based inference (row bands of the leading convolutions)")
    print(header)
    print("-" * len(header))
    vww_met = None
    for name, row in rows:
        bound, arena, found, tflm = row["lower_bound_bytes"], row["arena_bytes"], row["patching"], row["tflm"]

        def cells(key):
            if key not in found:
                return f"{'-':>7} {'-':>6} {'-':>9} {'-':>7}"
            item, patch = found[key], found[key]["plan"]
            return (f"{item['arena']:>7} {item['arena'] / bound:>5.2f}x {f'{patch.split}x{patch.patches}':>9} "
                    f"{100 * patch.extra_fraction:>6.1f}%")

        note = "" if found else "  (no chain of 2+ convolutions from the input, residual-free: nothing to patch)"
        text = found.get("within", found.get("smallest", {})).get("text", "-") if found else "-"
        print(f"{name:<52} {bound:>7} {arena:>7} {cells('within')} {cells('smallest')} "
              f"{tflm.get('total', '-'):>7} {row['text']:>8} {text:>8}{note}")
        if "vww" in name:
            within = found.get("within")
            vww_met = bool(within) and within["arena"] <= 0.5 * bound and within["plan"].extra_fraction <= MAX_EXTRA_MACS
    print()
    print("bound: layer-wise liveness lower bound (no layer-by-layer plan is smaller); arena: ours, layer by layer;")
    print(f"patched: the smallest planned arena among plans costing <= {100 * MAX_EXTRA_MACS:.0f}% extra MACs (of the "
          "model's), plan = patched calls x row bands;")
    print("smallest: the smallest arena any plan reaches; tflm: tflite-micro's arena (RecordingMicroAllocator, this run);")
    print(".text M4: the kernels without / with patching (the patched plan, or the smallest when none is within the MACs).")
    if vww_met is not None:
        print(f"target (VWW patched arena <= 0.5x bound, <= 15% extra MACs): {'met' if vww_met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
