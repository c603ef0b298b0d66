"""Project API server of the Arduino template (docs/arduino.md).

generate_project writes an Arduino sketch: the project folder is the sketch folder, its `.ino`
carries the folder's name, and every source Arduino compiles sits flat in `src/` (the device
runtime, the model's generated C, model_glue.c and the board layer), so each `#include "x.h"`
finds its header beside the file that includes it: no include rewriting, no include flags.

build runs `arduino-cli compile`, or for AVR boards Debian's `arduino-builder` (offline, option
build_tool=arduino-builder, the default for emulated boards); flash runs `arduino-cli upload`, or
for an emulated board checks that the firmware boots on simavr and keeps it as the board's flash;
open_transport opens the board's serial port, or starts simavr with its UART on a local socket.
Used both as the template (template_projects/arduino) and as a generated project's server.
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

from project_api import boards, project_gen, resources, server
from project_api.emulators import simavr
from project_api.rpc.transport import SerialTransport

PROJECT_DIR = pathlib.Path(__file__).resolve().parent
IS_TEMPLATE = project_gen.is_template(PROJECT_DIR)
PLATFORM = "arduino"
SKETCH_TEMPLATE_DIR = "sketch"  # in the template: <project_type>.ino and src/
BUILD_DIR = "build"
# An emulated board's flash: the image `flash` checked, which open_transport runs.
SIMAVR_FLASH_IMAGE = "simavr_flash.elf"
BAUD_RATE = 115200  # MTP_BAUD_RATE in src/mtp_arduino.h
# Opening a real board's port resets it and its bootloader waits ~1 s: the first session-start
# requests may go unanswered, so retry every 2 s for 10 s. AVR inference is slow: 10 s per reply.
TIMEOUTS = server.TransportTimeouts(
    session_start_retry_timeout_sec=2.0, session_start_timeout_sec=10.0, session_established_timeout_sec=10.0
)
# RAM an AVR sketch needs beyond the model: the Arduino core (Serial buffers, millis) and, for
# host_driven, the RPC runtime's two packet buffers (MTP_MAX_PACKET on AVR) and state.
AVR_RUNTIME_RAM_BYTES = {"host_driven": 1024, "example_project": 320}
# Stack the firmware needs at run time on top of its static data (kernels and the RPC server).
AVR_STACK_RESERVE_BYTES = 512

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
# Arduino's rule for sketch names (the sketch folder and its .ino share it).
SKETCH_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,62}$")
BUILD_TOOLS = ("arduino-cli", "arduino-builder")


PROJECT_OPTIONS = server.default_project_options(
    project_type={"choices": ("host_driven", "example_project")},
    board={"choices": boards.board_choices(PLATFORM), "help": "Name of the board to build for (boards/boards.yaml)."},
    verbose={"optional": ("generate_project", "build", "flash")},
    warning_as_error={"help": "Compile with -Wall -Wextra -Werror (every file Arduino compiles, the core too)."},
) + [
    server.ProjectOption(
        "build_tool", choices=BUILD_TOOLS, optional=("generate_project", "build"),
        help="arduino-cli, or arduino-builder to build AVR boards offline with Debian's Arduino core "
             "(default: arduino-builder for emulated boards, else arduino-cli)."),
    server.ProjectOption(
        "arduino_cli_cmd", default="arduino-cli", optional=("build", "flash", "open_transport"),
        help="Path of the arduino-cli executable."),
    server.ProjectOption(
        "port", optional=("flash", "open_transport"),
        help="Serial port of the board (e.g. /dev/ttyACM0); default: found with `arduino-cli board list`."),
    server.ProjectOption(
        "serial_number", optional=("flash", "open_transport"),
        help="USB serial number of the board to use when several are connected."),
]


def is_avr(board) -> bool:
    return board.cpu.startswith("atmega")


def default_build_tool(board) -> str:
    return "arduino-builder" if board.is_emulated else "arduino-cli"


# ---- generate_project -------------------------------------------------------------------------


def check_avr_ram(model, board, project_type) -> None:
    """On AVR, constants live in RAM too (unless placed in program memory, which TVM's C does not do)."""
    io_bytes = sum(t.size_bytes for t in model.inputs + model.outputs)
    runtime = AVR_RUNTIME_RAM_BYTES[project_type]
    need = model.workspace_size_bytes + io_bytes + model.constants_size_bytes + runtime + AVR_STACK_RESERVE_BYTES
    if need > board.ram_bytes:
        raise project_gen.ProjectGenerationError(
            f"model '{model.name}' does not fit the RAM of board {board.name}: it needs about {need:,} B "
            f"(arena {model.workspace_size_bytes:,} + inputs/outputs {io_bytes:,} + constants "
            f"{model.constants_size_bytes:,}, which AVR keeps in RAM, + runtime {runtime:,} + stack "
            f"{AVR_STACK_RESERVE_BYTES:,}) but the board has {board.ram_bytes:,} B; pick a smaller (or int8) model "
            f"or a board with more RAM")


def _copy_flat(files, dest: pathlib.Path, taken: dict) -> None:
    """Copy files into the flat src/ folder, refusing two files with one name."""
    for path in sorted(files):
        if path.name in taken:
            raise project_gen.ProjectGenerationError(
                f"two sources share the name {path.name} ({taken[path.name]} and {path}); the Arduino sketch keeps "
                "all sources in one src/ folder, so rename one")
        taken[path.name] = path
        shutil.copy2(path, dest / path.name)


def _arduino_sources(folder: pathlib.Path):
    return [p for p in folder.glob("*") if p.is_file() and p.suffix in (".c", ".cpp", ".h")]


def generate_sketch(template_dir, mlf_path, project_dir, options, board):
    """Lay out the sketch (see the module docstring); returns the model info."""
    sketch_name = project_dir.name
    if not SKETCH_NAME.match(sketch_name):
        raise project_gen.ProjectGenerationError(
            f"project directory name '{sketch_name}' is not a valid Arduino sketch name (letters, digits, _ - . ; "
            "starting with a letter or digit; at most 63 characters): Arduino names the sketch after its folder")
    project_type = options["project_type"]
    model = project_gen.read_mlf(mlf_path)
    project_gen.check_model_fits(model, board)
    if is_avr(board):
        check_avr_ram(model, board, project_type)
    shutil.copy2(template_dir / "microtvm_api_server.py", project_dir / "microtvm_api_server.py")
    project_gen.install_mlf(mlf_path, project_dir, model)

    src = project_dir / "src"
    src.mkdir()
    taken = {"model_glue.c": "the generated model glue"}
    sketch = template_dir / SKETCH_TEMPLATE_DIR
    _copy_flat(_arduino_sources(sketch / "src"), src, taken)
    runtime = resources.device_runtime_dir()
    _copy_flat(_arduino_sources(runtime / "include"), src, taken)
    if project_type == "host_driven":  # the standalone demo needs only the model's headers
        _copy_flat(_arduino_sources(runtime / "src"), src, taken)
    codegen = project_dir / project_gen.MLF_DIRNAME / "codegen" / "host"
    unsupported = [p.name for p in (codegen / "src").glob("*") if p.suffix not in (".c", ".h")]
    if unsupported or any((codegen / "lib").glob("*")):
        raise project_gen.ProjectGenerationError(
            f"the MLF holds files Arduino cannot compile ({', '.join(unsupported) or 'codegen/host/lib objects'}); "
            "compile the model with the C target (tvmc compile --target c)")
    _copy_flat(_arduino_sources(codegen / "src") + _arduino_sources(codegen / "include"), src, taken)
    project_gen.write_model_glue(model, src / "model_glue.c")
    shutil.copy2(sketch / f"{project_type}.ino", project_dir / f"{sketch_name}.ino")
    project_gen.extract_extra_files(options.get("extra_files_tar"), project_dir)
    project_gen.write_project_yaml(project_dir, options, model)
    return model


# ---- build ------------------------------------------------------------------------------------


def extra_flags(options) -> str:
    return " ".join(project_gen.compile_definitions(options.get("compile_definitions")))


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


def _require_tool(command, what_to_do):
    path = shutil.which(command)
    if path is None:
        raise server.ServerError(f"{command} not found: {what_to_do}")
    return path


def _run_tool(argv, verbose, what):
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as err:
        raise server.ServerError(f"cannot run {argv[0]}: {err}") from err
    if verbose or result.returncode != 0:
        sys.stderr.write(result.stdout)
    if result.returncode != 0:
        raise server.ServerError(project_gen.tool_failure(what, result.returncode, result.stdout))
    return result.stdout


def firmware_elf(project_dir: pathlib.Path) -> pathlib.Path:
    return project_dir / BUILD_DIR / f"{project_dir.name}.ino.elf"


def check_avr_firmware_ram(elf, board) -> None:
    """The built firmware's static RAM plus the stack reserve must fit the board."""
    flash, ram = simavr.avr_memory_usage(elf)
    if ram + AVR_STACK_RESERVE_BYTES > board.ram_bytes:
        raise server.ServerError(
            f"the firmware uses {ram:,} B of static RAM (.data + .bss) and needs {AVR_STACK_RESERVE_BYTES:,} B "
            f"of stack, more than the {board.ram_bytes:,} B of board {board.name}; use a smaller model")
    if flash > board.flash_bytes:
        raise server.ServerError(
            f"the firmware takes {flash:,} B of flash, more than the {board.flash_bytes:,} B of board {board.name}")


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


def find_port(options, board) -> str:
    if options.get("port"):
        return options["port"]
    cli = options.get("arduino_cli_cmd") or "arduino-cli"
    _require_tool(cli, "finding the board's port needs arduino-cli: " + ARDUINO_CLI_HELP
                  + ", or give the port with --project-option port=PORT")
    text = _run_tool([cli, "board", "list", "--format", "json"], False, "arduino-cli board list")
    return select_port(parse_board_list(text), board, options.get("serial_number"))


# ---- the handler ------------------------------------------------------------------------------


class Handler(server.TransportHandler):
    def server_info_query(self, tvm_version):
        return project_gen.server_info(PLATFORM, PROJECT_DIR, PROJECT_OPTIONS)

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        if not IS_TEMPLATE:
            raise server.ServerError(f"{PROJECT_DIR} is a generated project; generate from the arduino template")
        board = boards.get_board(options["board"], PLATFORM)
        options = dict(options, board=board.name, build_tool=options.get("build_tool") or default_build_tool(board))
        if options["build_tool"] == "arduino-builder" and not is_avr(board):
            raise server.ServerError(f"build_tool=arduino-builder builds AVR boards only; board {board.name} "
                                     f"({board.cpu}) needs arduino-cli")
        with project_gen.project_dir_removed_on_failure(project_dir) as project_dir:
            generate_sketch(PROJECT_DIR, model_library_format_path, project_dir, options, board)

    def _project(self, method, options):
        """The options merged with project.yaml, and the board, for a generated project."""
        if IS_TEMPLATE:
            raise server.ServerError(f"{method} needs a generated project; {PROJECT_DIR} is the arduino template "
                                     "(run tvmc micro create first)")
        # Generation-time options (board, project_type ...) keep project.yaml's values.
        options = project_gen.options_with_defaults(PROJECT_DIR, options)
        board = boards.get_board(options["board"], PLATFORM)
        return options, board

    def build(self, options):
        options, board = self._project("build", options)
        ino = PROJECT_DIR / f"{PROJECT_DIR.name}.ino"
        if not ino.is_file():
            found = ", ".join(p.name for p in PROJECT_DIR.glob("*.ino")) or "none"
            raise server.ServerError(f"{ino.name} is missing (found: {found}): Arduino needs the sketch folder and "
                                     "its .ino to share a name; rename the .ino after the folder")
        tool = options.get("build_tool") or default_build_tool(board)
        (PROJECT_DIR / BUILD_DIR).mkdir(exist_ok=True)
        if tool == "arduino-builder":
            if not is_avr(board):
                raise server.ServerError(f"build_tool=arduino-builder builds AVR boards only, not {board.name}")
            builder = _require_tool(ARDUINO_BUILDER, f"apt-get install --no-install-recommends {ARDUINO_BUILDER_PACKAGES}")
            for hardware in ARDUINO_BUILDER_HARDWARE:
                if not pathlib.Path(hardware).is_dir():
                    raise server.ServerError(f"{hardware} is missing: apt-get install --no-install-recommends "
                                             f"{ARDUINO_BUILDER_PACKAGES}")
            argv = arduino_builder_argv(builder, board, PROJECT_DIR, options)
        else:
            cli = options.get("arduino_cli_cmd") or "arduino-cli"
            _require_tool(cli, ARDUINO_CLI_HELP + (", or build offline with --project-option "
                                                   "build_tool=arduino-builder" if is_avr(board) else ""))
            argv = arduino_cli_compile_argv(cli, board, PROJECT_DIR, options)
        _run_tool(argv, options.get("verbose"), tool)
        elf = firmware_elf(PROJECT_DIR)
        if not elf.is_file():
            raise server.ServerError(f"{tool} finished but {elf} was not written")
        if is_avr(board):
            check_avr_firmware_ram(elf, board)

    def flash(self, options):
        options, board = self._project("flash", options)
        elf = firmware_elf(PROJECT_DIR)
        if not elf.is_file():
            raise server.ServerError(f"{elf} does not exist; build the project first (tvmc micro build)")
        if board.is_emulated:
            self._flash_simulator(board, elf)
            return
        cli = options.get("arduino_cli_cmd") or "arduino-cli"
        _require_tool(cli, ARDUINO_CLI_HELP)
        port = find_port(options, board)
        argv = [cli, "upload", "--fqbn", board.fqbn, "--input-dir", str(PROJECT_DIR / BUILD_DIR), "--port", port]
        if options.get("verbose"):
            argv.append("--verbose")
        _run_tool(argv + [str(PROJECT_DIR)], options.get("verbose"), "arduino-cli upload")

    def _flash_simulator(self, board, elf):
        """Boot the firmware for 50 ms of simulated time; keep it as the board's flash if it lives."""
        frequency = int(board.extra.get("core_clock_hz", 16000000))
        try:
            simavr.run_cycles(elf, board.emulator["mcu"], frequency, frequency // 20)
        except simavr.SimavrError as err:
            raise server.ServerError(str(err)) from err
        shutil.copy2(elf, PROJECT_DIR / SIMAVR_FLASH_IMAGE)

    def open_transport(self, options):
        options, board = self._project("open_transport", options)
        self.close_transport()
        simulator = None
        if board.is_emulated:
            image = PROJECT_DIR / SIMAVR_FLASH_IMAGE
            if not image.is_file():
                raise server.ServerError(f"board {board.name} has not been flashed; run tvmc micro flash first")
            simulator = simavr.SimavrMachine(image, board.emulator["mcu"],
                                             int(board.extra.get("core_clock_hz", 16000000)))
        else:
            port = find_port(options, board)

        def connect():  # the simulator's socket exists only once attach_transport started it
            return SerialTransport(simulator.serial_url if simulator is not None else port, BAUD_RATE,
                                   timeouts=TIMEOUTS)

        return self.attach_transport(connect, simulator)


if __name__ == "__main__":
    server.main(Handler())
