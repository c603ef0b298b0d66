"""The sine MLP (float and int8) on the emulated Arduino Mega 2560 (simavr, 16 MHz): sketch flash
and RAM beside an empty sketch's (the Arduino core alone), and cycles per inference measured two
ways in the same run: the device's own timer (Timer1 at the CPU clock, through time_evaluate) and
simavr's cycle counter (the difference between a session timing 1 run and one timing 1+N runs).

    python bench/avr.py [--runs N]

Needs: apt-get install gcc-avr avr-libc arduino-builder arduino-core-avr simavr libsimavr-dev
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from project_api import boards, client  # noqa: E402
from project_api.emulators import simavr  # noqa: E402
from project_api.rpc.transport import SerialTransport  # noqa: E402
from project_api.session import Session  # noqa: E402

BOARD = boards.get_board("mega2560_simavr")
MCU = BOARD.emulator["mcu"]
CLOCK_HZ = int(BOARD.extra["core_clock_hz"])
EMPTY_SKETCH = "void setup() { Serial.begin(115200); Serial.write('.'); }\nvoid loop() {}\n"


def run(argv, **kwargs):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"bench/avr.py: {' '.join(map(str, argv))} failed:\n{result.stdout}{result.stderr}")
    return result


def compile_sine(work: Path, int8: bool) -> Path:
    name = "sine_int8" if int8 else "sine"
    onnx_path, mlf = work / f"{name}.onnx", work / f"{name}.tar"
    run([sys.executable, REPO / "examples" / "sine" / "make_sine_model.py", "-o", onnx_path] + (["--int8"] if int8 else []))
    run([sys.executable, "-m", "project_api", "compile", onnx_path, "-o", mlf, "--output-format", "mlf",
         "--model-name", name])
    return mlf


def build_project(work: Path, mlf: Path) -> Path:
    project = work / f"{mlf.stem}_mega"
    with client.instantiate_from_template("arduino") as template:
        template.generate_project(mlf, None, project, {"board": BOARD.name, "project_type": "host_driven"})
    with client.instantiate_from_dir(project) as api:
        api.build({})
        api.flash({})
    return project


def empty_sketch_usage(work: Path):
    """Flash and RAM of a sketch that only opens Serial: what the Arduino core costs by itself."""
    sketch = work / "empty" / "empty.ino"
    sketch.parent.mkdir()
    sketch.write_text(EMPTY_SKETCH)
    project = work / "empty"
    (project / "build").mkdir()
    proj = _load_server()
    argv = proj.arduino_builder_argv("arduino-builder", BOARD, project, {})
    run(argv)
    return simavr.avr_memory_usage(project / "build" / "empty.ino.elf")


def _load_server():
    import importlib.util

    path = REPO / "template_projects" / "arduino" / "microtvm_api_server.py"
    spec = importlib.util.spec_from_file_location("arduino_template_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def session_cycles(image: Path, number: int):
    """Open the flashed firmware on simavr, time `number` runs; return (Timer1 cycles per run, simavr's total)."""
    machine = simavr.SimavrMachine(image, MCU, CLOCK_HZ)
    try:
        with Session(SerialTransport(machine.start())) as sess:
            timing = sess.time_evaluate(number=number, repeat=1)
    finally:
        machine.stop()
    return timing.cycles[0], machine.cycles


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="extra runs for the simavr-counter measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_avr_") as tmp:
        work = Path(tmp)
        base_flash, base_ram = empty_sketch_usage(work)
        print(f"board {BOARD.name}: {MCU} at {CLOCK_HZ / 1e6:g} MHz, {BOARD.flash_bytes:,} B flash, "
              f"{BOARD.ram_bytes:,} B RAM")
        header = (f"{'sketch':<22}{'flash B':>9}{'RAM B':>8}{'cycles/inf (Timer1)':>21}"
                  f"{'cycles/inf (simavr)':>21}{'ms @16MHz':>11}")
        print(header)
        print("-" * len(header))
        print(f"{'empty sketch (core)':<22}{base_flash:>9,}{base_ram:>8,}{'-':>21}{'-':>21}{'-':>11}")
        for int8 in (False, True):
            mlf = compile_sine(work, int8)
            project = build_project(work, mlf)
            flash, ram = simavr.avr_memory_usage(project / "build" / f"{project.name}.ino.elf")
            image = project / "simavr_flash.elf"
            timer1, total_one = session_cycles(image, 1)
            _, total_many = session_cycles(image, 1 + args.runs)
            # Both sessions do the same handshake and requests; the difference is the extra runs (plus the
            # simulated time the firmware spends waiting for the host, which varies a little).
            counted = (total_many - total_one) / args.runs
            label = f"sine MLP {'int8' if int8 else 'float'} + RPC"
            print(f"{label:<22}{flash:>9,}{ram:>8,}{timer1:>21,.0f}{counted:>21,.0f}{timer1 / CLOCK_HZ * 1e3:>11.2f}")
        print("RAM = .data + .bss (AVR keeps constants in RAM); the stack comes on top.")


if __name__ == "__main__":
    main()
