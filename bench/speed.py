"""Instructions per inference of the int8 fixture models on emulated Cortex-M, beside the peers.

For each int8 fixture model and board (mps2_an386 = Cortex-M4F with the DSP extension, mps2_an385 =
Cortex-M3 without it: the portable path), two builds of the same model measured in this run:
  ours   the integer kernels (project_api/compiler/qnn.py), compiled with --mcpu of the board;
  naive  TVM 0.27's own lowering of the same model (dequantize -> float op -> quantize), which is
         what the compiler produced before the integer kernels (mps2_an386 only: the M3 has no FPU,
         so its float path would measure soft-float);
and, for reference, the tflite-micro figures quoted in issue 8 (measured on QEMU mps2-an386 with
arm-none-eabi-gcc builds of tflite-micro, which cannot be rebuilt here: no tflite-micro sources).
Each build is the cortex_m template's standalone image (`tvmc micro create ... project_type=
standalone standalone_runs=11`) run under QEMU with -icount shift=0, where one instruction is one
nanosecond and SysTick (25 MHz) ticks every 40 instructions: instructions per inference are
(ticks of 11 runs - ticks of 1 run) x 40 / 10, exact to +-8 instructions.
Target: ours at or below tflite-micro + CMSIS-NN on every model.
--per-kernel also prints, per board, each kernel call's instructions: the image with that one call
made twice, minus the image as generated (every call writes only its output, so a repeated call
does the same work again).

Then the ONNX QDQ CNN (tests/model_builders.py) before and after the integer path, on each board.

    python bench/speed.py [--boards mps2_an386,mps2_an385] [--no-naive] [--per-kernel] [MODEL_STEM ...]
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
}


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
    from project_api import boards, project_gen
    from project_api.compiler.mlf import export_mlf
    from project_api.emulators.qemu import run_to_exit

    sys.path.insert(0, str(REPO / "tests"))
    from cortex_m_helpers import load_server_module

    work.mkdir(parents=True, exist_ok=True)
    mlf = export_mlf(lowered, work / "model.tar")
    project = work / "project"
    _tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", f"board={board_name}",
          "project_type=standalone", f"standalone_runs={RUNS}")
    _tvmc("micro", "build", project, "cortex_m")
    server = load_server_module()
    machine = server.qemu_machine(boards.get_board(board_name, "cortex_m"))
    status, output = run_to_exit(machine, project / "build" / "firmware.elf", 600)
    result = server.parse_standalone_output(output.decode(), project_gen.read_mlf(mlf))
    if status != 0 or result["status"] != 0:
        raise RuntimeError(f"{board_name}: the image failed (exit {status}, model status {result['status']})")
    ticks = result["ticks"]
    return round((ticks[RUNS] - ticks[1]) * INSTRUCTIONS_PER_TICK / (RUNS - 1))


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
    args = parser.parse_args(argv)

    from project_api import boards
    from project_api.compiler.lowering import lower_model

    board_names = args.boards.split(",")
    header = f"{'model':<48} {'board':<11} {'MACs':>11} {'ours':>12} {'/MAC':>6} {'naive TVM':>12} " \
             f"{'TFLM ref*':>12} {'TFLM+CMSIS*':>12} {'ours/CMSIS':>10}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
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
                ratio = f"{ours / cmsis:.2f}" if cmsis and board_name == "mps2_an386" else "-"
                print(f"{stem:<48} {board_name:<11} {macs:>11,} {ours:>12,} {ours / max(macs, 1):>6.2f} "
                      f"{naive:>12} {reference:>12,} {cmsis:>12,} {ratio:>10}", flush=True)
                if args.per_kernel:
                    print_per_kernel(lowered, ours, board_name, Path(tmp) / stem / f"{board_name}-calls")
        measure_onnx_qdq_cnn(board_names, Path(tmp) / "onnx_qdq_cnn")
    print("* quoted from issue 8 (QEMU mps2-an386, tflite-micro built with arm-none-eabi-gcc); not rebuilt here")
    return 0


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
