"""Instructions per inference of the int8 fixture models on emulated Cortex-M, beside the peers.

For each int8 fixture model and board (mps2_an386 = Cortex-M4F with the DSP extension, mps2_an385 =
Cortex-M3 without it: the portable path), two builds of the same model measured in this run:
  ours   the integer kernels (project_api/compiler/qnn.py), compiled with --mcpu of the board;
  naive  TVM 0.27's own lowering of the same model (dequantize -> float op -> quantize), which is
         what the compiler produced before the integer kernels (mps2_an386 only: the M3 has no FPU,
         so its float path would measure soft-float);
  prev   our previous release: the same model compiled by the compiler of git revision --previous
         (default c257bff, the release on main), extracted with `git archive` into a temp dir in this
         run, and built and run with this tree's cortex_m template;
  patched the model compiled with patch-based inference (patching.py: the smallest arena among the
         plans adding <= 15% MACs, as bench/memory.py), where a plan applies (VWW): what the memory saving
         costs in instructions;
and, for reference, the tflite-micro figures quoted in issue 8 (VWW: in issue 15) (measured on QEMU
mps2-an386 with arm-none-eabi-gcc builds of tflite-micro, which cannot be rebuilt here: no
tflite-micro sources). /MAC is instructions per multiply-accumulate: QEMU counts instructions, not
cycles (it models no pipeline or wait states), so it stands in for cycles/MAC.
The float path (issue 15, item 2) is measured on mps2_an386 (hard float) for the float fixture and
the small float CNN of tests/model_builders.py; tflite-micro's float reference kernels cannot be
built here and no published figure for these models exists, so that column says so.
Each build is the cortex_m template's standalone image (`tvmc micro create ... project_type=
standalone standalone_runs=11`) run under QEMU with -icount shift=0, where one instruction is one
nanosecond and SysTick (25 MHz) ticks every 40 instructions: instructions per inference are
(ticks of 11 runs - ticks of 1 run) x 40 / 10, exact to +-8 instructions.
Target: ours at or below tflite-micro + CMSIS-NN on every model.
--per-kernel also prints, per board, each kernel call's instructions: the image with that one call
made twice, minus the image as generated (every call writes only its output, so a repeated call
does the same work again).

Then the ONNX QDQ CNN (tests/model_builders.py) before and after the integer path, on each board.

    python bench/speed.py [--boards mps2_an386,mps2_an385] [--no-naive] [--no-previous] [--previous REV]
                          [--no-float] [--per-kernel] [MODEL_STEM ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODELS_DIR = REPO.parent / "shared" / "fixtures" / "models"
RUNS = 11
INSTRUCTIONS_PER_TICK = 40  # 1 ns per instruction under -icount shift=0, SysTick at 25 MHz

# Issue 8, QEMU mps2-an386 (instructions per inference): reference kernels, CMSIS-NN.
TFLM_QUOTED = {
    "tflm_hello_world_int8": (5_231, 3_524),
    "tflm_micro_speech_quantized": (9_310_000, 1_500_000),
    "mlperf_tiny_kws_ref_model_int8": (43_000_000, 7_700_000),
    "mlperf_tiny_ad01_int8": (1_950_000, 580_000),
    "mlperf_tiny_ic_resnet8_pretrainedResnet_quant": (107_400_000, 29_900_000),
    # Issue 15 (MobileNetV1 0.25, 96x96x3, the VWW/person-detect-class model).
    "mlperf_tiny_vww_96_int8": (100_250_554, 24_101_543),
}
PREVIOUS_RELEASE = "c257bff"  # main's release when the previous-release column was added
FLOAT_BOARD = "mps2_an386"
MAX_EXTRA_MACS = 0.15


def model_macs(path: Path) -> int:
    """Multiply-accumulates of one inference (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED)."""
    from project_api.compiler.frontend import read_tflite

    model, subgraph, op_names, _, _ = read_tflite(path, path.read_bytes())
    total = 0
    for index, name in enumerate(op_names):
        op = subgraph.Operators(index)
        shape = lambda i: [int(d) for d in subgraph.Tensors(int(i)).ShapeAsNumpy()]  # noqa: E731
        weights, out = shape(op.InputsAsNumpy()[1]) if op.InputsLength() > 1 else [], shape(op.OutputsAsNumpy()[0])
        if name == "CONV_2D":
            total += int(np.prod(out)) * weights[1] * weights[2] * weights[3]
        elif name == "DEPTHWISE_CONV_2D":
            total += int(np.prod(out)) * weights[1] * weights[2]
        elif name == "FULLY_CONNECTED":
            total += int(np.prod(out)) * weights[1]
    return total


def _tvmc(*argv):
    result = subprocess.run([sys.executable, "-m", "project_api", *map(str, argv)], capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"tvmc {' '.join(map(str, argv[:2]))} failed: {result.stderr.strip()[-400:]}")


def instructions_per_inference(lowered, board_name: str, work: Path) -> int:
    from project_api.compiler.mlf import export_mlf

    work.mkdir(parents=True, exist_ok=True)
    return mlf_instructions_per_inference(export_mlf(lowered, work / "model.tar"), board_name, work)


def mlf_instructions_per_inference(mlf: Path, board_name: str, work: Path) -> int:
    from project_api import boards, project_gen, standalone
    from project_api.emulators.qemu import run_to_exit

    sys.path.insert(0, str(REPO / "tests"))
    from cortex_m_helpers import load_server_module

    project = work / "project"
    _tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", f"board={board_name}",
          "project_type=standalone", f"standalone_runs={RUNS}")
    _tvmc("micro", "build", project, "cortex_m")
    server = load_server_module()
    machine = server.qemu_machine(boards.get_board(board_name, "cortex_m"))
    status, output = run_to_exit(machine, project / "build" / "firmware.elf", 600)
    result = standalone.parse(output.decode(), project_gen.read_mlf(mlf).outputs)
    if status != 0 or result["status"] != 0:
        raise RuntimeError(f"{board_name}: the image failed (exit {status}, model status {result['status']})")
    ticks = result["ticks"]
    return round((ticks[RUNS] - ticks[1]) * INSTRUCTIONS_PER_TICK / (RUNS - 1))


_PREVIOUS_COMPILE = r"""
import sys
from project_api.compiler.lowering import lower_model
from project_api.compiler.mlf import export_mlf
export_mlf(lower_model(sys.argv[1], mcpu=sys.argv[2]), sys.argv[3])
"""


def previous_release_tree(revision: str, work: Path) -> Path:
    """The sources of ``revision`` (``git archive``: no worktree or branch is touched) in ``work``."""
    tree = work / f"release-{revision}"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def previous_release_mlf(tree: Path, model: Path, cpu: str, out: Path) -> Path:
    """``model`` compiled by the previous release's compiler (its tree first on the path)."""
    import os

    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run([sys.executable, "-c", _PREVIOUS_COMPILE, str(model), cpu, str(out)], env=env,
                            capture_output=True, text=True, timeout=900, cwd=str(tree))
    if result.returncode != 0:
        raise RuntimeError(f"the previous release could not compile {model.name}: {result.stderr.strip()[-300:]}")
    return out


def patched_lowering(path: Path, cpu: str):
    """``path`` compiled with the smallest-arena patch plan adding <= MAX_EXTRA_MACS, or None."""
    from project_api.compiler import patching
    from project_api.compiler.lowering import lower_model
    from project_api.compiler.planner import plan_model

    lowered = lower_model(path, mcpu=cpu)
    plan = patching.smallest_plan(patching.search(path, lowered), MAX_EXTRA_MACS, below=plan_model(lowered).arena_size)
    return (lower_model(path, mcpu=cpu, patch_plan=plan), plan) if plan else (None, None)


def onnx_macs(path: Path) -> int:
    """Multiply-accumulates of an ONNX model's Conv, Gemm and MatMul nodes (shapes inferred)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            total += int(np.prod(out)) * a[-1]
    return total


def float_models(work: Path):
    """(label, path, MACs) of the float models: the float fixture and tests/model_builders' small CNN."""
    sys.path.insert(0, str(REPO / "tests"))
    import model_builders

    found = []
    fixture = MODELS_DIR / "tflm_hello_world_float.tflite"
    if fixture.is_file():
        found.append((fixture.stem, fixture, model_macs(fixture)))
    work.mkdir(parents=True, exist_ok=True)
    cnn = model_builders.build_small_cnn(work / "small_cnn.onnx")
    found.append(("small_cnn (tests/model_builders.py)", cnn, onnx_macs(cnn)))
    return found


def print_per_kernel(lowered, total: int, board_name: str, work: Path) -> None:
    for index, call in enumerate(lowered.calls):
        repeated = dataclasses.replace(lowered, calls=lowered.calls[:index + 1] + lowered.calls[index:])
        cost = instructions_per_inference(repeated, board_name, work / f"call{index}") - total
        print(f"    {call.func_name:<44} {cost:>12,}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(TFLM_QUOTED))
    parser.add_argument("--boards", default="mps2_an386,mps2_an385")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive TVM lowering (slow on IC)")
    parser.add_argument("--per-kernel", action="store_true", help="also print each kernel call's instructions")
    parser.add_argument("--previous", default=PREVIOUS_RELEASE, help=f"git revision of the previous release "
                        f"(default {PREVIOUS_RELEASE})")
    parser.add_argument("--no-previous", action="store_true", help="skip the previous release's builds")
    parser.add_argument("--no-patched", action="store_true", help="skip the patch-based builds")
    parser.add_argument("--no-float", action="store_true", help="skip the float models")
    args = parser.parse_args(argv)

    from project_api import boards
    from project_api.compiler.lowering import lower_model

    board_names = args.boards.split(",")
    header = f"{'model':<48} {'board':<11} {'MACs':>11} {'ours':>12} {'/MAC':>6} {'prev':>12} {'/MAC':>6} " \
             f"{'ours/prev':>9} {'naive TVM':>12} {'TFLM ref*':>12} {'TFLM+CMSIS*':>12} {'ours/CMSIS':>10} {'ours/ref':>8}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        previous_tree = None if args.no_previous else previous_release_tree(args.previous, Path(tmp))
        for stem in args.models:
            path = MODELS_DIR / f"{stem}.tflite"
            macs = model_macs(path)
            reference, cmsis = TFLM_QUOTED.get(stem, (0, 0))
            for board_name in board_names:
                cpu = boards.get_board(board_name, "cortex_m").cpu
                lowered = lower_model(path, mcpu=cpu)
                ours = instructions_per_inference(lowered, board_name, Path(tmp) / stem / board_name)
                naive = "-"
                if not args.no_naive and board_name == "mps2_an386":
                    naive_model = lower_model(path, mcpu=cpu, integer_kernels=False)
                    naive = f"{instructions_per_inference(naive_model, board_name, Path(tmp) / stem / 'naive'):,}"
                previous, previous_cells = None, f"{'-':>12} {'-':>6} {'-':>9}"
                if previous_tree is not None:
                    work = Path(tmp) / stem / f"{board_name}-previous"
                    work.mkdir(parents=True, exist_ok=True)
                    try:
                        mlf = previous_release_mlf(previous_tree, path, cpu, work / "model.tar")
                        previous = mlf_instructions_per_inference(mlf, board_name, work)
                        previous_cells = f"{previous:>12,} {previous / max(macs, 1):>6.2f} {ours / previous:>9.2f}"
                    except RuntimeError as err:  # a model the previous release refused is a result too
                        previous_cells = f"{'refused':>12} {'-':>6} {'-':>9}"
                        print(f"  previous release {args.previous}: {' '.join(str(err).split())[:150]}")
                ratio = f"{ours / cmsis:.2f}" if cmsis and board_name == "mps2_an386" else "-"
                # The portable path's peer is tflite-micro's reference kernels (issue 15: <= 0.8x on M3).
                ref_ratio = f"{ours / reference:.2f}" if reference else "-"
                print(f"{stem:<48} {board_name:<11} {macs:>11,} {ours:>12,} {ours / max(macs, 1):>6.2f} "
                      f"{previous_cells} {naive:>12} {reference:>12,} {cmsis:>12,} {ratio:>10} {ref_ratio:>8}",
                      flush=True)
                if not args.no_patched:
                    patched, patch = patched_lowering(path, cpu)
                    if patched is not None:
                        cost = instructions_per_inference(patched, board_name, Path(tmp) / stem / f"{board_name}-patched")
                        label = f"  patched {patch.split}x{patch.patches} (+{100 * patch.extra_fraction:.1f}% MACs)"
                        patched_macs = patch.model_macs + patch.extra_macs
                        print(f"{label:<48} {board_name:<11} {patched_macs:>11,} {cost:>12,} "
                              f"{cost / patched_macs:>6.2f}   {cost / ours:.2f}x the unpatched build", flush=True)
                if args.per_kernel:
                    print_per_kernel(lowered, ours, board_name, Path(tmp) / stem / f"{board_name}-calls")
        measure_onnx_qdq_cnn(board_names, Path(tmp) / "onnx_qdq_cnn")
        if not args.no_float:
            print_float(Path(tmp) / "float")
    print("* quoted from issue 8 (VWW: issue 15) (QEMU mps2-an386, tflite-micro built with arm-none-eabi-gcc); "
          "not rebuilt here")
    print(f"prev: revision {args.previous}'s compiler in this run (git archive), this tree's template and QEMU; "
          "/MAC: instructions per MAC (QEMU counts instructions, not cycles)")
    return 0


def print_float(work: Path) -> None:
    """The float path on mps2_an386 (hard float): instructions per inference, per MAC."""
    from project_api import boards
    from project_api.compiler.lowering import lower_model

    cpu = boards.get_board(FLOAT_BOARD, "cortex_m").cpu
    print()
    header = f"{'float model':<48} {'board':<11} {'MACs':>11} {'ours':>12} {'/MAC':>6}  TFLM float reference kernels"
    print(header)
    print("-" * len(header))
    for label, path, macs in float_models(work):
        ours = instructions_per_inference(lower_model(path, mcpu=cpu), FLOAT_BOARD, work / path.stem)
        print(f"{label:<48} {FLOAT_BOARD:<11} {macs:>11,} {ours:>12,} {ours / max(macs, 1):>6.2f}  "
              "not measured: cannot be built here (no tflite-micro sources), no published figure", flush=True)


def measure_onnx_qdq_cnn(board_names, work: Path) -> None:
    """The QDQ int8 CNN of tests/model_builders.py (onnxruntime-style static quantization) on each
    board: before (TVM's dequantize -> float op -> quantize; soft-float on the M3) and after (the
    integer kernels through project_api/compiler/onnx_qdq.py)."""
    from project_api import boards
    from project_api.compiler.lowering import lower_model

    sys.path.insert(0, str(REPO / "tests"))
    import model_builders

    path = model_builders.build_small_cnn_qdq(work / "small_cnn_qdq.onnx")
    print(f"\nONNX QDQ CNN ({path.name}), instructions per inference:")
    print(f"{'board':<11} {'before (float requant)':>24} {'after (integer)':>16} {'speed-up':>9}")
    for board_name in board_names:
        cpu = boards.get_board(board_name, "cortex_m").cpu
        before = instructions_per_inference(lower_model(path, mcpu=cpu, integer_kernels=False), board_name,
                                            work / board_name / "before")
        after = instructions_per_inference(lower_model(path, mcpu=cpu), board_name, work / board_name / "after")
        print(f"{board_name:<11} {before:>24,} {after:>16,} {before / after:>8.1f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
