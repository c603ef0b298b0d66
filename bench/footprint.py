"""Footprint of standalone Cortex-M images: ROM, RAM and instructions per inference on QEMU.

For each model: `tvmc compile`, a standalone cortex_m project for mps2_an386 (inputs embedded),
built with the template's Makefile, run on qemu-system-arm -icount shift=0. Printed per model:
  ROM  = .vectors + .text + .rodata + .data (+ .ARM.exidx): everything the image stores in flash
  RAM  = .data + .bss + the stack high-water mark measured in the firmware (painted stack)
  instructions per inference = (SysTick ticks of 1+N runs - ticks of 1 run) / N * (1e9 / tick_hz):
       with -icount shift=0 one instruction is one nanosecond of virtual time, so a 25 MHz SysTick
       tick is 40 instructions; the difference cancels the timer reads' own cost.
The float sine model is checked against the target (ROM < 4 KB, RAM < 1.5 KB, stack included)
and printed beside the published figure of a static-runtime generator for TVM on the same model
(5.9 kB ROM, 2.3 kB RAM, RV32GC).

    python bench/footprint.py                      # the default model set
    python bench/footprint.py --models sine_float kws --runs 21
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from project_api import client, project_gen, resources, standalone  # noqa: E402
from project_api.emulators.qemu import run_to_exit  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "models"
MODELS = {
    "sine_float": "tflm_hello_world_float.tflite",
    "sine_int8": "tflm_hello_world_int8.tflite",
    "cnn_float": "onnx:build_small_cnn",
    "cnn_int8": "onnx:build_small_cnn_qdq",
    "micro_speech": "tflm_micro_speech_quantized.tflite",
    "kws": "mlperf_tiny_kws_ref_model_int8.tflite",
    "ad": "mlperf_tiny_ad01_int8.tflite",
    "ic": "mlperf_tiny_ic_resnet8_pretrainedResnet_quant.tflite",
}
DEFAULT_MODELS = ["sine_float", "sine_int8", "cnn_float", "micro_speech", "kws"]
BOARD, MACHINE = "mps2_an386", "mps2-an386"
TARGET_ROM, TARGET_RAM = 4096, 1536  # float sine model, whole image
PEER = ("static-runtime generator for TVM (published, RV32GC)", 5900, 2300)
ROM_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".data")


def model_source(name: str, work: pathlib.Path) -> pathlib.Path:
    source = MODELS[name]
    if source.startswith("onnx:"):
        sys.path.insert(0, str(REPO / "tests"))
        import model_builders  # tests/model_builders.py: the project's ONNX test models

        return getattr(model_builders, source[5:])(work / f"{name}.onnx")
    path = FIXTURES / source
    if not path.is_file():
        raise SystemExit(f"{path} is absent: the ../shared fixtures must sit beside the checkout for model '{name}'")
    return path


def section_sizes(elf: pathlib.Path) -> dict:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], check=True, capture_output=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0].startswith(".") and fields[1].isdigit():
            sizes[fields[0]] = int(fields[1])
    return sizes


def measure(name: str, work: pathlib.Path, runs: int) -> dict:
    mlf = work / f"{name}.tar"
    subprocess.run([sys.executable, "-m", "project_api", "compile", str(model_source(name, work)), "-o", str(mlf)],
                   check=True, capture_output=True)
    info = project_gen.read_mlf(mlf)
    rng = np.random.default_rng(0)
    inputs = {t.name: (rng.uniform(-1, 1, t.shape) if np.dtype(t.dtype).kind == "f"
                       else rng.integers(-20, 20, t.shape)).astype(t.dtype) for t in info.inputs}
    np.savez(work / f"{name}_in.npz", **inputs)
    project = work / f"{name}_project"
    with client.instantiate_from_dir(resources.template_dir("cortex_m")) as api:
        api.generate_project(mlf, None, project, {
            "board": BOARD, "project_type": "standalone", "standalone_inputs": str(work / f"{name}_in.npz"),
            "standalone_runs": runs, "warning_as_error": True})
    with client.instantiate_from_dir(project) as api:
        api.build({})
    elf = project / "build" / "firmware.elf"
    status, output = run_to_exit(MACHINE, elf, timeout_sec=600)
    result = standalone.parse(output.decode(), info.outputs)
    if status != 0:
        raise SystemExit(f"{name}: the standalone image exited with status {status}")
    sizes = section_sizes(elf)
    ns_per_tick = 1e9 / result["tick_hz"]
    per_inference = (result["ticks"][runs] - result["ticks"][1]) / (runs - 1) * ns_per_tick
    return {
        "rom": sum(sizes.get(s, 0) for s in ROM_SECTIONS),
        "ram": sizes.get(".data", 0) + sizes.get(".bss", 0) + result["stack_bytes"],
        "stack": result["stack_bytes"],
        "text": sizes.get(".text", 0) + sizes.get(".vectors", 0),
        "rodata": sizes.get(".rodata", 0),
        "data": sizes.get(".data", 0),
        "bss": sizes.get(".bss", 0),
        "arena": info.workspace_size_bytes,
        "instructions": per_inference,
        "tick_resolution": ns_per_tick / (runs - 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(MODELS))
    parser.add_argument("--runs", type=int, default=11, help="inferences timed after the first (>= 2)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    print(f"standalone images on {BOARD} (QEMU {MACHINE}, -icount shift=0), arm-none-eabi-gcc -Os, newlib-nano")
    header = f"{'model':<14}{'ROM B':>9}{'RAM B':>8}{'stack':>7}{'.text':>8}{'.rodata':>9}{'.data':>7}{'.bss':>8}" \
             f"{'arena':>8}{'instr/inference':>17}"
    print(header)
    results = {}
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        for name in args.models:
            started = time.monotonic()
            r = results[name] = measure(name, pathlib.Path(tmp), args.runs + 1)
            print(f"{name:<14}{r['rom']:>9,}{r['ram']:>8,}{r['stack']:>7,}{r['text']:>8,}{r['rodata']:>9,}"
                  f"{r['data']:>7,}{r['bss']:>8,}{r['arena']:>8,}{r['instructions']:>17,.0f}"
                  f"   (+-{r['tick_resolution']:.0f}; {time.monotonic() - started:.1f} s)")
    if "sine_float" in results:
        r = results["sine_float"]
        peer_name, peer_rom, peer_ram = PEER
        print()
        print("float sine model, whole standalone image:")
        print(f"  this template     ROM {r['rom']:>6,} B   RAM {r['ram']:>6,} B (stack {r['stack']} B)")
        print(f"  {peer_name}: ROM {peer_rom:,} B, RAM {peer_ram:,} B")
        print(f"  target            ROM < {TARGET_ROM:,} B: {'met' if r['rom'] < TARGET_ROM else 'MISSED'};"
              f"   RAM < {TARGET_RAM:,} B: {'met' if r['ram'] < TARGET_RAM else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
