"""Project API server of the Arduino template (docs/arduino.md).

generate_project writes an Arduino sketch (arduino_sketch.py: the project folder is the sketch
folder, every source flat in src/). build runs `arduino-cli compile`, or for AVR boards Debian's
`arduino-builder` (offline, option build_tool=arduino-builder, the default for emulated boards);
flash runs `arduino-cli upload`, or for an emulated board checks that the firmware boots on
simavr and keeps it as the board's flash; open_transport opens the board's serial port, or starts
simavr with its UART on a local socket. Used both as the template (template_projects/arduino)
and as a generated project's server.
"""

import pathlib
import shutil
import sys

from project_api import boards, server, template
from project_api.emulators import simavr
from project_api.rpc.transport import SerialTransport

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # the helper modules beside this script

import arduino_sketch  # noqa: E402
import arduino_tools  # noqa: E402
from arduino_sketch import is_avr  # noqa: E402

PLATFORM = "arduino"
# An emulated board's flash: the image `flash` checked, which open_transport runs.
SIMAVR_FLASH_IMAGE = "simavr_flash.elf"
BAUD_RATE = 115200  # MTP_BAUD_RATE in src/mtp_arduino.h
BUILD_TOOLS = ("arduino-cli", "arduino-builder")


def default_build_tool(board) -> str:
    return "arduino-builder" if board.is_emulated else "arduino-cli"


class Handler(template.TemplateHandler):
    PLATFORM = PLATFORM
    # Opening a real board's port resets it and its bootloader waits ~1 s: the first session-start
    # requests may go unanswered, so retry every 2 s for 10 s. AVR inference is slow: 10 s per reply.
    TIMEOUTS = server.TransportTimeouts(
        session_start_retry_timeout_sec=2.0, session_start_timeout_sec=10.0, session_established_timeout_sec=10.0)
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

    def check_generation_options(self, options, board):
        options = dict(options, build_tool=options.get("build_tool") or default_build_tool(board))
        if options["build_tool"] == "arduino-builder" and not is_avr(board):
            raise server.ServerError(f"build_tool=arduino-builder builds AVR boards only; board {board.name} "
                                     f"({board.cpu}) needs arduino-cli")
        return options

    def check_model(self, model, board, options):
        super().check_model(model, board, options)
        if is_avr(board):
            arduino_sketch.check_avr_ram(model, board, options["project_type"])

    def lay_out_project(self, mlf_path, project_dir, model, options):
        arduino_sketch.lay_out_sketch(self.project_dir, mlf_path, project_dir, options, model)

    def readme_values(self, project_dir, model, board, options):
        return dict(super().readme_values(project_dir, model, board, options), sketch=project_dir.name, fqbn=board.fqbn,
                    core=":".join(board.fqbn.split(":")[:2]))

    def _arduino_cli(self, options, hint=arduino_tools.ARDUINO_CLI_HELP):
        return self.require_tool(options.get("arduino_cli_cmd") or "arduino-cli", hint)

    def build(self, options):
        options = self.generated_options("build", options)
        board = self.board()
        ino = self.project_dir / f"{self.project_dir.name}.ino"
        if not ino.is_file():
            found = ", ".join(p.name for p in self.project_dir.glob("*.ino")) or "none"
            raise server.ServerError(f"{ino.name} is missing (found: {found}): Arduino needs the sketch folder and "
                                     "its .ino to share a name; rename the .ino after the folder")
        tool = options.get("build_tool") or default_build_tool(board)
        (self.project_dir / arduino_tools.BUILD_DIR).mkdir(exist_ok=True)
        if tool == "arduino-builder":
            if not is_avr(board):
                raise server.ServerError(f"build_tool=arduino-builder builds AVR boards only, not {board.name}")
            install = f"apt-get install --no-install-recommends {arduino_tools.ARDUINO_BUILDER_PACKAGES}"
            builder = self.require_tool(arduino_tools.ARDUINO_BUILDER, install)
            for hardware in arduino_tools.ARDUINO_BUILDER_HARDWARE:
                if not pathlib.Path(hardware).is_dir():
                    raise server.ServerError(f"{hardware} is missing: {install}")
            argv = arduino_tools.arduino_builder_argv(builder, board, self.project_dir, options)
        else:
            cli = self._arduino_cli(options, arduino_tools.ARDUINO_CLI_HELP + (
                ", or build offline with --project-option build_tool=arduino-builder" if is_avr(board) else ""))
            argv = arduino_tools.arduino_cli_compile_argv(cli, board, self.project_dir, options)
        self.run_tool(argv, tool, options.get("verbose"))
        elf = arduino_sketch.firmware_elf(self.project_dir)
        if not elf.is_file():
            raise server.ServerError(f"{tool} finished but {elf} was not written")
        if is_avr(board):
            arduino_sketch.check_avr_firmware_ram(elf, board)

    def flash(self, options):
        options = self.generated_options("flash", options)
        board = self.board()
        elf = self.require_built(arduino_sketch.firmware_elf(self.project_dir))
        if board.is_emulated:
            self._flash_simulator(board, elf)
            return
        cli = self._arduino_cli(options)
        argv = [cli, "upload", "--fqbn", board.fqbn, "--input-dir", str(self.project_dir / arduino_tools.BUILD_DIR),
                "--port", self._find_port(options, board)]
        self.run_tool(argv + (["--verbose"] if options.get("verbose") else []) + [str(self.project_dir)],
                      "arduino-cli upload", options.get("verbose"))

    def _flash_simulator(self, board, elf):
        """Boot the firmware for 50 ms of simulated time; keep it as the board's flash if it lives."""
        frequency = int(board.extra.get("core_clock_hz", 16000000))
        try:
            simavr.run_cycles(elf, board.emulator["mcu"], frequency, frequency // 20)
        except simavr.SimavrError as err:
            raise server.ServerError(str(err)) from err
        shutil.copy2(elf, self.project_dir / SIMAVR_FLASH_IMAGE)

    def _find_port(self, options, board) -> str:
        if options.get("port"):
            return options["port"]
        cli = self._arduino_cli(options, "finding the board's port needs arduino-cli: " + arduino_tools.ARDUINO_CLI_HELP
                                + ", or give the port with --project-option port=PORT")
        text = self.run_tool([cli, "board", "list", "--format", "json"], "arduino-cli board list")
        return arduino_tools.select_port(arduino_tools.parse_board_list(text), board, options.get("serial_number"))

    def open_transport(self, options):
        options = self.generated_options("open_transport", options)
        board = self.board()
        self.close_transport()
        simulator = None
        if board.is_emulated:
            image = self.project_dir / SIMAVR_FLASH_IMAGE
            if not image.is_file():
                raise server.ServerError(f"board {board.name} has not been flashed; run tvmc micro flash first")
            simulator = simavr.SimavrMachine(image, board.emulator["mcu"],
                                             int(board.extra.get("core_clock_hz", 16000000)))
        else:
            port = self._find_port(options, board)

        def connect():  # the simulator's socket exists only once attach_transport started it
            return SerialTransport(simulator.serial_url if simulator is not None else port, BAUD_RATE,
                                   timeouts=self.TIMEOUTS)

        return self.attach_transport(connect, simulator)


if __name__ == "__main__":
    server.main(Handler())
