"""The arduino template's use of arduino-cli: the exact command lines of compile and upload, how
the port is found (port option, serial number, `board list` by FQBN or VID:PID), and the errors
when a tool is missing or the board is ambiguous. No arduino-cli exists here, so a recording
stand-in (a real executable on disk) answers; it checks what we run, not Arduino's build."""

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

from project_api import server
from project_helpers import load_server
from test_arduino_template import TEMPLATE_DIR, call, sine_mlf

MEGA_PORT = {"address": "/dev/ttyACM0", "label": "/dev/ttyACM0", "protocol": "serial",
             "protocol_label": "Serial Port (USB)",
             "properties": {"pid": "0x0042", "serialNumber": "75830303934351F0A1C1", "vid": "0x2341"},
             "hardware_id": "75830303934351F0A1C1"}
NANO_PORT = {"address": "/dev/ttyACM1", "label": "/dev/ttyACM1", "protocol": "serial",
             "protocol_label": "Serial Port (USB)",
             "properties": {"pid": "0x805A", "serialNumber": "8A1B2C3D", "vid": "0x2341"}}
# arduino-cli >= 1.0 wraps the list in {"detected_ports": ...}; older releases print the bare list.
BOARD_LIST_V1 = {"detected_ports": [
    {"matching_boards": [{"name": "Arduino Mega or Mega 2560", "fqbn": "arduino:avr:mega"}], "port": MEGA_PORT},
    {"matching_boards": [{"name": "Arduino Nano 33 BLE", "fqbn": "arduino:mbed_nano:nano33ble"}], "port": NANO_PORT},
    {"port": {"address": "/dev/ttyS0", "label": "/dev/ttyS0", "protocol": "serial",
              "protocol_label": "Serial Port"}},
]}
BOARD_LIST_V0_UNIDENTIFIED = [  # a clone the core does not recognise: only its USB id tells
    {"port": dict(MEGA_PORT, address="/dev/ttyUSB0")},
]
TWO_MEGAS = {"detected_ports": [
    {"matching_boards": [{"name": "Arduino Mega", "fqbn": "arduino:avr:mega"}], "port": MEGA_PORT},
    {"matching_boards": [{"name": "Arduino Mega", "fqbn": "arduino:avr:mega"}],
     "port": dict(MEGA_PORT, address="/dev/ttyACM2", properties=dict(MEGA_PORT["properties"], serialNumber="OTHER"))},
]}


@pytest.fixture
def fake_cli(tmp_path):
    """An `arduino-cli` that logs its argv (one JSON list per line), answers `board list` with
    $FAKE_BOARD_LIST and writes the .elf a compile would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "arduino-cli"
    log = tmp_path / "calls.jsonl"
    cli.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, pathlib, sys
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps(sys.argv) + "\\n")
        args = sys.argv[1:]
        if args[:2] == ["board", "list"]:
            print(os.environ.get("FAKE_BOARD_LIST", "[]"))
        elif args[0] == "compile":
            build = pathlib.Path(args[args.index("--build-path") + 1])
            build.mkdir(parents=True, exist_ok=True)
            (build / (pathlib.Path(args[-1]).name + ".ino.elf")).write_bytes(b"")
        """))
    cli.chmod(0o755)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return types.SimpleNamespace(path=str(cli), calls=calls)


@pytest.fixture(scope="module")
def sine_tar(tmp_path_factory):
    return sine_mlf(tmp_path_factory)


def project(tmp_path, sine_tar, board, **options):
    template = load_server(TEMPLATE_DIR / "microtvm_api_server.py")
    project_dir = tmp_path / f"{board}_sketch"
    call(template, "generate_project", sine_tar, None, project_dir, board=board, **options)
    return project_dir, load_server(project_dir / "microtvm_api_server.py")


def test_compile_command_line(tmp_path, sine_tar, fake_cli):
    project_dir, proj = project(tmp_path, sine_tar, "nano33ble", compile_definitions="A=1 B")
    call(proj, "build", arduino_cli_cmd=fake_cli.path)
    assert fake_cli.calls() == [[
        fake_cli.path, "compile", "--fqbn", "arduino:mbed_nano:nano33ble", "--build-path", str(project_dir / "build"),
        "--build-property", "compiler.c.extra_flags=-DA=1 -DB",
        "--build-property", "compiler.cpp.extra_flags=-DA=1 -DB",
        str(project_dir)]]


def test_compile_command_line_verbose_werror(tmp_path, sine_tar, fake_cli):
    project_dir, proj = project(tmp_path, sine_tar, "teensy41", warning_as_error=True)
    call(proj, "build", arduino_cli_cmd=fake_cli.path, verbose=True)
    assert fake_cli.calls() == [[
        fake_cli.path, "compile", "--fqbn", "teensy:avr:teensy41", "--build-path", str(project_dir / "build"),
        "--build-property", "compiler.c.extra_flags=", "--build-property", "compiler.cpp.extra_flags=",
        "--warnings", "all", "--build-property", "compiler.warning_flags.all=-Wall -Wextra -Werror", "--verbose",
        str(project_dir)]]


def _built(project_dir):
    (project_dir / "build").mkdir(exist_ok=True)
    (project_dir / "build" / f"{project_dir.name}.ino.elf").write_bytes(b"")


def test_upload_with_port_option(tmp_path, sine_tar, fake_cli):
    project_dir, proj = project(tmp_path, sine_tar, "mega2560")
    _built(project_dir)
    call(proj, "flash", arduino_cli_cmd=fake_cli.path, port="/dev/ttyUSB7")
    assert fake_cli.calls() == [[fake_cli.path, "upload", "--fqbn", "arduino:avr:mega:cpu=atmega2560",
                                 "--input-dir", str(project_dir / "build"), "--port", "/dev/ttyUSB7",
                                 str(project_dir)]]


@pytest.mark.parametrize("board,listing,expected", [
    ("mega2560", BOARD_LIST_V1, "/dev/ttyACM0"),  # by FQBN, board options ignored
    ("nano33ble", BOARD_LIST_V1, "/dev/ttyACM1"),
    ("mega2560", BOARD_LIST_V0_UNIDENTIFIED, "/dev/ttyUSB0"),  # by VID:PID
])
def test_upload_finds_the_port(tmp_path, sine_tar, fake_cli, monkeypatch, board, listing, expected):
    monkeypatch.setenv("FAKE_BOARD_LIST", json.dumps(listing))
    project_dir, proj = project(tmp_path, sine_tar, board)
    _built(project_dir)
    call(proj, "flash", arduino_cli_cmd=fake_cli.path)
    list_call, upload_call = fake_cli.calls()
    assert list_call == [fake_cli.path, "board", "list", "--format", "json"]
    assert upload_call[upload_call.index("--port") + 1] == expected


def test_serial_number_picks_one_of_two_boards(tmp_path, sine_tar, fake_cli, monkeypatch):
    monkeypatch.setenv("FAKE_BOARD_LIST", json.dumps(TWO_MEGAS))
    project_dir, proj = project(tmp_path, sine_tar, "mega2560")
    _built(project_dir)
    with pytest.raises(server.ServerError) as info:
        call(proj, "flash", arduino_cli_cmd=fake_cli.path)
    assert "2 connected boards match board mega2560" in str(info.value)
    assert "/dev/ttyACM0, /dev/ttyACM2" in str(info.value) and "serial_number=" in str(info.value)
    call(proj, "flash", arduino_cli_cmd=fake_cli.path, serial_number="OTHER")
    assert fake_cli.calls()[-1][fake_cli.calls()[-1].index("--port") + 1] == "/dev/ttyACM2"


def test_no_matching_board_says_what_is_connected(tmp_path, sine_tar, fake_cli, monkeypatch):
    monkeypatch.setenv("FAKE_BOARD_LIST", json.dumps(BOARD_LIST_V1))
    project_dir, proj = project(tmp_path, sine_tar, "due")
    _built(project_dir)
    with pytest.raises(server.ServerError) as info:
        call(proj, "flash", arduino_cli_cmd=fake_cli.path)
    message = str(info.value)
    assert message.startswith("no connected board matches board due (FQBN arduino:sam:arduino_due_x_dbg")
    assert "/dev/ttyACM0 (USB 2341:0042" in message and "port=PORT" in message
    with pytest.raises(server.ServerError, match="serial number NOPE"):
        call(proj, "open_transport", arduino_cli_cmd=fake_cli.path, serial_number="NOPE")


def test_missing_arduino_cli(tmp_path, sine_tar):
    project_dir, proj = project(tmp_path, sine_tar, "mega2560")
    missing = str(tmp_path / "nowhere" / "arduino-cli")
    with pytest.raises(server.ServerError) as info:
        call(proj, "build", arduino_cli_cmd=missing, build_tool="arduino-cli")
    message = str(info.value)
    assert message.startswith(f"{missing} not found: install arduino-cli (https://arduino.github.io/arduino-cli/")
    assert "build_tool=arduino-builder" in message  # the offline way for AVR boards
    _built(project_dir)
    with pytest.raises(server.ServerError, match="not found: install arduino-cli"):
        call(proj, "flash", arduino_cli_cmd=missing)
    with pytest.raises(server.ServerError, match="finding the board's port needs arduino-cli"):
        call(proj, "open_transport", arduino_cli_cmd=missing)


def test_missing_arduino_builder(tmp_path, sine_tar, monkeypatch):
    project_dir, proj = project(tmp_path, sine_tar, "mega2560_simavr")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(server.ServerError) as info:
        call(proj, "build")
    assert str(info.value) == ("arduino-builder not found: apt-get install --no-install-recommends "
                               "gcc-avr avr-libc arduino-builder arduino-core-avr")


def test_missing_arduino_cli_through_tvmc(tmp_path, sine_tar):
    """The whole way: tvmc micro build prints one line naming the tool and what to install."""
    project_dir, _ = project(tmp_path, sine_tar, "nano33ble")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))
    result = subprocess.run([sys.executable, "-m", "project_api", "micro", "build", str(project_dir), "arduino"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvmc: error: ") and "Traceback" not in result.stderr
    assert "arduino-cli not found: install arduino-cli" in lines[0]
