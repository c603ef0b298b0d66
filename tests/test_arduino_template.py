"""The arduino template's project generation: every board and project type, the sketch layout
Arduino needs (folder named like its .ino, flat src/ of .c/.cpp/.h whose includes resolve), the
AVR RAM check, and the libm functions the template adds for avr-libc."""

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from project_api import boards, resources, server
from project_helpers import load_server

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = resources.template_dir("arduino")
SINE_SCRIPT = REPO_ROOT / "examples" / "sine" / "make_sine_model.py"
ARDUINO_BOARDS = boards.all_boards("arduino")
PROJECT_TYPES = ("host_driven", "example_project")
AVR_CFLAGS = ["-std=gnu11", "-Os", "-Wall", "-Wextra", "-Werror"]

def call(module, method, *args, **options):
    """Call a handler method with options resolved as the Project API framework resolves them."""
    resolved = server.resolve_options(method, module.Handler.PROJECT_OPTIONS, options)
    return getattr(module.Handler(), method)(*args, resolved)


def sine_mlf(tmp_path_factory, int8=False) -> Path:
    """The sine MLP compiled with `tvmc compile`, once per session (shared by the arduino test modules)."""
    name = "sine_int8" if int8 else "sine"
    out_dir = tmp_path_factory.getbasetemp() / "arduino_mlf"
    mlf = out_dir / f"{name}.tar"
    if not mlf.exists():
        out_dir.mkdir(exist_ok=True)
        onnx_path = out_dir / f"{name}.onnx"
        subprocess.run([sys.executable, str(SINE_SCRIPT), "-o", str(onnx_path)] + (["--int8"] if int8 else []),
                       check=True, capture_output=True)
        result = subprocess.run([sys.executable, "-m", "project_api", "compile", str(onnx_path), "-o", str(mlf),
                                 "--output-format", "mlf", "--model-name", name], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    return mlf


@pytest.fixture(scope="module")
def sine_tar(tmp_path_factory):
    return sine_mlf(tmp_path_factory)


@pytest.fixture(scope="module")
def sine_int8_tar(tmp_path_factory):
    return sine_mlf(tmp_path_factory, int8=True)


@pytest.fixture(scope="module")
def template():
    return load_server(TEMPLATE_DIR / "microtvm_api_server.py")


def generate(template, mlf, project_dir, **options):
    call(template, "generate_project", mlf, None, project_dir, **options)
    return project_dir


def test_catalogue_has_the_legacy_and_avr_boards():
    names = {b.name for b in ARDUINO_BOARDS}
    legacy = {"due", "nano33ble", "portentah7", "rpipico", "spresense", "teensy40", "teensy41", "wioterminal",
              "metrom4", "pybadge", "feathers2"}
    assert legacy | {"mega2560", "mega2560_simavr", "uno"} <= names
    for board in ARDUINO_BOARDS:
        assert re.fullmatch(r"[\w.-]+:[\w.-]+:[\w.-]+(:[\w=,.-]+)?", board.fqbn), board
        if not board.is_emulated:
            assert board.usb_vid and board.usb_pid, board.name
    assert boards.get_board("mega2560_simavr").emulator == {"kind": "simavr", "mcu": "atmega2560"}


def _includes(path: Path):
    return re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(errors="replace"), re.M)


@pytest.mark.parametrize("board,project_type", list(itertools.product([b.name for b in ARDUINO_BOARDS], PROJECT_TYPES)))
def test_generated_sketch_layout(template, sine_tar, sine_int8_tar, tmp_path, board, project_type):
    # The Uno's 2 KiB of RAM holds only the int8 model's weights.
    mlf = sine_int8_tar if boards.get_board(board).ram_bytes < 4096 else sine_tar
    project = generate(template, mlf, tmp_path / "my_sketch-1", board=board, project_type=project_type)
    # Arduino: the sketch folder and its only .ino share the name.
    assert [p.name for p in project.glob("*.ino")] == ["my_sketch-1.ino"]
    src = project / "src"
    files = sorted(src.iterdir())
    assert files and all(p.is_file() and p.suffix in (".c", ".cpp", ".h") for p in files), files
    names = {p.name for p in files}
    assert {"model_glue.c", "mtp_model.h", "mtp_platform.h", "mtp_arduino_platform.cpp"} <= names
    assert ("mtp_server.c" in names) == (project_type == "host_driven")
    # Arduino compiles the sketch folder's own files and src/; model/ (the extracted MLF) is not compiled.
    assert sorted(p.name for p in project.iterdir() if p.suffix in (".c", ".cpp", ".h", ".ino", ".S")) == [
        "my_sketch-1.ino"]
    # Every quoted include resolves as laid out: beside the including file (or src/ from the .ino).
    for path in files:
        for header in _includes(path):
            assert (src / header).is_file(), f"{path.name} includes {header}, which is not beside it"
    for header in _includes(project / "my_sketch-1.ino"):
        assert (project / header).is_file(), header
    recorded = (project / "project.yaml").read_text()
    assert f"board: {board}" in recorded and f"project_type: {project_type}" in recorded
    expected_tool = "arduino-builder" if boards.get_board(board).is_emulated else "arduino-cli"
    assert f"build_tool: {expected_tool}" in recorded
    assert (project / "model.tar").is_file() and (project / "microtvm_api_server.py").is_file()


def test_avr_sources_compile_warning_free(template, sine_tar, tmp_path):
    """The C the sketch compiles (runtime, model, glue, libm additions) is clean under -Wall -Wextra -Werror
    with avr-gcc; the Arduino build itself hides warnings (-w)."""
    avr_gcc = shutil.which("avr-gcc")
    if avr_gcc is None:
        pytest.skip("avr-gcc is not installed (apt-get install gcc-avr avr-libc)")
    project = generate(template, sine_tar, tmp_path / "warn", board="mega2560", project_type="host_driven")
    for source in sorted((project / "src").glob("*.c")):
        result = subprocess.run([avr_gcc, "-mmcu=atmega2560", *AVR_CFLAGS, "-c", str(source), "-o", "/dev/null"],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{source.name}:\n{result.stderr}"


def test_sketch_name_must_be_valid(template, sine_tar, tmp_path):
    with pytest.raises(server.ServerError, match="not a valid Arduino sketch name"):
        generate(template, sine_tar, tmp_path / "has space", board="mega2560")
    assert not (tmp_path / "has space").exists()


def test_model_too_large_for_avr_ram_is_refused_with_sizes(template, sine_tar, tmp_path):
    # The float sine MLP keeps 1,284 B of weights in the Uno's 2 KiB of RAM: too much beside the runtime.
    with pytest.raises(server.ServerError) as info:
        generate(template, sine_tar, tmp_path / "uno", board="uno", project_type="host_driven")
    message = str(info.value)
    assert "does not fit the RAM of board uno" in message
    assert re.search(r"needs about [\d,]+ B", message) and "constants 1,284" in message and "2,048 B" in message
    assert not (tmp_path / "uno").exists()


def test_arduino_builder_only_for_avr(template, sine_tar, tmp_path):
    with pytest.raises(server.ServerError, match="builds AVR boards only"):
        generate(template, sine_tar, tmp_path / "due", board="due", build_tool="arduino-builder")


def test_template_refuses_build(template):
    with pytest.raises(server.ServerError, match="needs a generated project"):
        call(template, "build")


def test_nearbyintf_rounds_ties_to_even(tmp_path):
    """The template's nearbyintf (compiled for AVR only) against numpy.rint, built for the host."""
    harness = tmp_path / "harness.c"
    harness.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\nfloat nearbyintf(float x);\n"
        "int main(int argc, char **argv) { for (int i = 1; i < argc; i++) "
        "printf(\"%.9g\\n\", (double)nearbyintf(strtof(argv[i], NULL))); return 0; }\n")
    exe = tmp_path / "harness"
    subprocess.run(["gcc", "-std=gnu99", "-D__AVR__", "-fno-builtin", "-o", str(exe), str(harness),
                    str(TEMPLATE_DIR / "sketch" / "src" / "mtp_avr_libm.c"), "-lm"], check=True)
    values = np.concatenate([np.arange(-6, 6.5, 0.5), [0.49999997, -0.49999997, 2.5000002, 1e8, -8388607.5,
                                                       8388609.0, 123.456, -0.0]]).astype(np.float32)
    out = subprocess.run([str(exe)] + [repr(float(v)) for v in values], capture_output=True, text=True, check=True)
    got = np.array(out.stdout.split(), dtype=np.float32)
    np.testing.assert_array_equal(got, np.rint(values))


def test_wheel_ships_the_bridge_source():
    # simavr.py compiles the bridge from the template folder, which travels in the wheel.
    assert (TEMPLATE_DIR / "simavr_bridge" / "uart_bridge.c").is_file()
