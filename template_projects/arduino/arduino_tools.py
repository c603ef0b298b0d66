"""The command lines of arduino-cli and Debian's offline arduino-builder, and the board's port
as `arduino-cli board list` reports it."""

import json

from project_api import server
from project_api.options import compile_definitions

BUILD_DIR = "build"
ARDUINO_BUILDER = "arduino-builder"
ARDUINO_BUILDER_HARDWARE = ("/usr/share/arduino-builder", "/usr/share/arduino/hardware")
ARDUINO_BUILDER_TOOLS = "/usr/bin"
ARDUINO_BUILDER_PACKAGES = "gcc-avr avr-libc arduino-builder arduino-core-avr"
# Debian 12's AVR core uses DECIMAL_DIG in WString.cpp, which gcc-avr 5.4's float.h defines only for C99.
DEBIAN_CORE_WORKAROUND = "-DDECIMAL_DIG=__DECIMAL_DIG__"
# warning_as_error: the warning level "all" of every Arduino platform, made fatal. It applies to
# every file Arduino compiles, the core too; Debian's AVR core has unused parameters (new.cpp).
WERROR_FLAGS = "-Wall -Wextra -Werror"
DEBIAN_CORE_WARNINGS = "-Wno-error=unused-parameter"
ARDUINO_CLI_HELP = (
    "install arduino-cli (https://arduino.github.io/arduino-cli/; it is not packaged in Debian or PyPI) and "
    "the board's core (arduino-cli core install PACKAGE:ARCH), or give its path with "
    "--project-option arduino_cli_cmd=PATH"
)


def extra_flags(options) -> str:
    return " ".join(compile_definitions(options.get("compile_definitions")))


def arduino_cli_compile_argv(cli, board, project_dir, options):
    flags = extra_flags(options)
    argv = [cli, "compile", "--fqbn", board.fqbn, "--build-path", str(project_dir / BUILD_DIR),
            "--build-property", f"compiler.c.extra_flags={flags}",
            "--build-property", f"compiler.cpp.extra_flags={flags}"]
    if options.get("warning_as_error"):
        argv += ["--warnings", "all", "--build-property", f"compiler.warning_flags.all={WERROR_FLAGS}"]
    if options.get("verbose"):
        argv.append("--verbose")
    return argv + [str(project_dir)]


def arduino_builder_argv(builder, board, project_dir, options):
    flags = extra_flags(options)
    argv = [builder, "-compile"]
    for hardware in ARDUINO_BUILDER_HARDWARE:
        argv += ["-hardware", hardware]
    argv += ["-tools", ARDUINO_BUILDER_TOOLS, "-fqbn", board.fqbn, "-build-path", str(project_dir / BUILD_DIR),
             "-prefs", f"compiler.c.extra_flags={flags}".rstrip(),
             "-prefs", f"compiler.cpp.extra_flags={DEBIAN_CORE_WORKAROUND} {flags}".rstrip()]
    if options.get("warning_as_error"):
        argv += ["-warnings", "all", "-prefs", f"compiler.warning_flags.all={WERROR_FLAGS} {DEBIAN_CORE_WARNINGS}"]
    if options.get("verbose"):
        argv.append("-verbose")
    return argv + [str(project_dir / f"{project_dir.name}.ino")]


# ---- ports ------------------------------------------------------------------------------------


def _hex_id(value):
    if not value:
        return None
    try:
        return f"{int(str(value), 16):04x}"
    except ValueError:
        return None


def parse_board_list(text: str):
    """`arduino-cli board list --format json` (0.x: a list; 1.x: {"detected_ports": [...]}) as a list of
    {address, vid, pid, serial_number, fqbns}."""
    try:
        data = json.loads(text or "[]")
    except ValueError as err:
        raise server.ServerError(f"cannot parse the output of `arduino-cli board list --format json`: {err}") from err
    entries = data.get("detected_ports", []) if isinstance(data, dict) else data
    ports = []
    for entry in entries or []:
        port = entry.get("port", entry)
        properties = port.get("properties") or {}
        boards_seen = entry.get("matching_boards") or entry.get("boards") or []
        ports.append({
            "address": port.get("address"),
            "vid": _hex_id(properties.get("vid")),
            "pid": _hex_id(properties.get("pid")),
            "serial_number": properties.get("serialNumber") or port.get("serial_number") or entry.get("serial_number"),
            "fqbns": [b.get("fqbn") or b.get("FQBN") for b in boards_seen if b.get("fqbn") or b.get("FQBN")],
        })
    return [p for p in ports if p["address"]]


def _fqbn_base(fqbn):
    return ":".join((fqbn or "").split(":")[:3])  # drop board options (":cpu=atmega2560")


def select_port(ports, board, serial_number=None) -> str:
    """The one detected port that is this board, or a ServerError saying what was seen."""
    seen = "; ".join(f"{p['address']} (USB {p['vid']}:{p['pid']}, serial {p['serial_number']}, "
                     f"{', '.join(p['fqbns']) or 'unknown board'})" for p in ports) or "nothing"
    if serial_number:
        matches = [p for p in ports if p["serial_number"] == serial_number]
        wanted = f"serial number {serial_number}"
    else:
        matches = [p for p in ports if _fqbn_base(board.fqbn) in map(_fqbn_base, p["fqbns"])
                   or (board.usb_vid and (p["vid"], p["pid"]) == (board.usb_vid, board.usb_pid))]
        wanted = f"board {board.name} (FQBN {board.fqbn}, USB id {board.usb_vid}:{board.usb_pid})"
    if not matches:
        raise server.ServerError(f"no connected board matches {wanted}; arduino-cli board list sees: {seen}. "
                                 "Connect the board, or give --project-option port=PORT")
    if len(matches) > 1:
        raise server.ServerError(
            f"{len(matches)} connected boards match {wanted}: {', '.join(p['address'] for p in matches)}; "
            "choose one with --project-option port=PORT or serial_number=SERIAL")
    return matches[0]["address"]
