"""The sine MLP (float and int8) on the emulated Arduino Mega 2560: `tvmc compile`, `tvmc micro
create/build/flash` (offline arduino-builder with Debian's AVR core), `tvmc run --device micro` on
simavr, outputs equal to the host-native run of the same archive. Plus the standalone example
sketch on an emulated Uno, and no simulator left behind."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import fixture_path
from project_api import boards, client, server
from project_api.compiler.native import NativeModel, run_native
from project_api.rpc.transport import ProjectAPITransport
from project_api.session import Session
from project_helpers import load_server
from test_arduino_template import TEMPLATE_DIR, call, sine_mlf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("arduino-builder") and shutil.which("avr-gcc")
             and os.path.isdir("/usr/share/arduino/hardware/arduino/avr")
             and os.path.exists("/usr/include/simavr/sim_avr.h")),
        reason="needs apt-get install gcc-avr avr-libc arduino-builder arduino-core-avr simavr libsimavr-dev"),
]


def tvmc(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "project_api", *map(str, args)], capture_output=True, text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, f"tvmc {' '.join(map(str, args))}:\n{result.stderr}"
    return result


def processes_mentioning(text: str):
    """PIDs of live processes whose command line contains text (a simulator of this test's project)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (proc / "stat").read_text().split()[2]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(int(proc.name))
    return found


def make_project(tmp_path_factory, name, mlf, board, project_type="host_driven"):
    project = tmp_path_factory.mktemp("arduino_e2e") / name
    tvmc("micro", "create", project, mlf, "arduino", "--project-option", f"board={board}",
         f"project_type={project_type}")
    tvmc("micro", "build", project, "arduino")
    tvmc("micro", "flash", project, "arduino")
    return project


@pytest.fixture(scope="module", params=[False, True], ids=["float", "int8"])
def mega_project(request, tmp_path_factory):
    mlf = sine_mlf(tmp_path_factory, int8=request.param)
    return make_project(tmp_path_factory, f"sine_{request.param and 'int8' or 'float'}", mlf, "mega2560_simavr"), mlf


def test_tvmc_run_equals_native(mega_project, tmp_path):
    project, mlf = mega_project
    x = np.array([[1.2345]], np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    result = tvmc("run", "--device", "micro", project, "--inputs", tmp_path / "in.npz", "--outputs",
                  tmp_path / "out.npz", "--print-time", "--repeat", "2", "--number", "3")
    (device_y,) = np.load(tmp_path / "out.npz").values()
    (native_y,) = run_native(mlf, {"x": x})
    np.testing.assert_array_equal(device_y, native_y)
    assert abs(float(device_y.ravel()[0]) - np.sin(1.2345)) < 0.1  # and it is the sine model
    assert re.search(r"cycles per run: mean \d+", result.stdout), result.stdout  # Timer1 counts cycles
    assert processes_mentioning(str(project)) == []  # the simulator stopped with the run


def test_many_inputs_equal_native(mega_project):
    project, mlf = mega_project
    xs = np.linspace(-1.0, 7.5, 24, dtype=np.float32)
    with NativeModel(mlf) as native, client.instantiate_from_dir(project) as api:
        with Session(ProjectAPITransport(api)) as sess:
            info = sess.get_info()
            assert info.device.timer_is_cycles and info.device.timer_hz == 16000000
            assert info.device.max_packet <= 256  # the small AVR packet size
            for x in xs:
                sess.set_input("x", np.array([[x]], np.float32))
                sess.run()
                np.testing.assert_array_equal(sess.get_output(0), native.run({"x": np.array([[x]], np.float32)})[0])
    assert processes_mentioning(str(project)) == []


def test_built_firmware_ram_is_checked(mega_project):
    project, _ = mega_project
    proj = load_server(project / "microtvm_api_server.py")
    elf = proj.arduino_sketch.firmware_elf(project)
    board = boards.get_board("mega2560_simavr")
    proj.arduino_sketch.check_avr_firmware_ram(elf, board)  # fits the real Mega
    with pytest.raises(server.ServerError, match=r"uses [\d,]+ B of static RAM .* more than the 1,500 B"):
        proj.arduino_sketch.check_avr_firmware_ram(elf, dataclasses.replace(board, ram_bytes=1500))


def test_open_transport_needs_flash(tmp_path_factory):
    mlf = sine_mlf(tmp_path_factory, int8=True)
    project = tmp_path_factory.mktemp("noflash") / "noflash"
    tvmc("micro", "create", project, mlf, "arduino", "--project-option", "board=mega2560_simavr")
    result = tvmc("run", "--device", "micro", project, check=False)
    assert result.returncode == 1 and "has not been flashed; run tvmc micro flash first" in result.stderr


def test_example_project_on_emulated_uno(tmp_path_factory):
    """The standalone sketch prints the int8 model's output for an all-ones input; it equals the host run."""
    mlf = sine_mlf(tmp_path_factory, int8=True)
    project = make_project(tmp_path_factory, "uno_demo", mlf, "uno_simavr", "example_project")
    text = b""
    with client.instantiate_from_dir(project) as api:
        api.open_transport({})
        try:
            while b"done" not in text:
                text += api.read_transport(4096, 20.0)["data"]
        finally:
            api.close_transport()
    text = text.decode()
    assert re.search(r"model sine_int8: status 0, \d+ cycles", text), text
    hex_bytes = re.search(r"hex y: ([0-9a-f]+)", text).group(1)
    (native_y,) = run_native(mlf, {"x": np.ones((1, 1), np.float32)})
    assert bytes.fromhex(hex_bytes) == native_y.tobytes()
    assert processes_mentioning(str(project)) == []


def test_micro_speech_too_large_for_the_mega(tmp_path_factory):
    """A real int8 keyword model: 16,752 B of weights that AVR would keep in its 8 KiB of RAM."""
    model = fixture_path("models", "tflm_micro_speech_quantized.tflite")
    out = tmp_path_factory.mktemp("micro_speech")
    tvmc("compile", model, "-o", out / "ms.tar", "--output-format", "mlf")
    result = tvmc("micro", "create", out / "proj", out / "ms.tar", "arduino", "--project-option",
                  "board=mega2560_simavr", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"does not fit the RAM of board mega2560_simavr: it needs about [\d,]+ B \(arena [\d,]+ "
                     r"\+ inputs/outputs [\d,]+ \+ constants [\d,]+, which AVR keeps in RAM", result.stderr)
    assert "the board has 8,192 B" in result.stderr and not (out / "proj").exists()


def test_too_large_for_uno_through_tvmc(tmp_path_factory):
    mlf = sine_mlf(tmp_path_factory)
    project = tmp_path_factory.mktemp("toolarge") / "toolarge"
    result = tvmc("micro", "create", project, mlf, "arduino", "--project-option", "board=uno", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not fit the RAM of board uno: it needs about 2,956 B" in result.stderr
    assert not project.exists()


def test_warning_as_error_build_is_clean(tmp_path_factory, capfd):
    """Every file of the sketch (runtime, int8 kernels, glue, board layer, .ino) builds under
    -Wall -Wextra -Werror with the real offline toolchain."""
    mlf = sine_mlf(tmp_path_factory, int8=True)
    project = tmp_path_factory.mktemp("werror") / "werror"
    template = load_server(TEMPLATE_DIR / "microtvm_api_server.py")
    call(template, "generate_project", mlf, None, project, board="mega2560", build_tool="arduino-builder",
         warning_as_error=True)
    call(load_server(project / "microtvm_api_server.py"), "build", verbose=True)
    log = capfd.readouterr().err
    compiled = [line for line in log.splitlines() if "/sketch/src/" in line and " -c " in line and " -E " not in line]
    assert len(compiled) >= 8, log[-2000:]
    assert all("-Wall -Wextra -Werror" in line and " -w " not in line for line in compiled)
