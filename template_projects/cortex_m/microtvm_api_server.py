"""Project API server of the bare-metal Cortex-M template (no RTOS), for boards run on QEMU.

generate_project lays out a project that builds with plain `make` (arm-none-eabi-gcc + newlib-nano):
board/config.mk and board/memory.ld come from boards/boards.yaml. build runs make and checks the
image against the board's memory; flash does nothing (the board is emulated); open_transport starts
qemu-system-arm with the UART on a local TCP socket and connects to it with pyserial.

Project types: host_driven (the RPC server of the device runtime) and standalone (inputs embedded
at generation, outputs and timings printed on the UART, exit status through semihosting).
Used as a template (from template_projects/cortex_m) and as a generated project's server.
"""

import pathlib
import re
from typing import List, Optional, Sequence

from project_api import boards, project_gen, server, standalone, template, tool_run
from project_api.emulators.qemu import QemuError, QemuMachine
from project_api.options import compile_definitions
from project_api.rpc.transport import SerialTransport

PLATFORM = "cortex_m"
BOARD_DIR = "board"  # config.mk + memory.ld, written at generation
FIRMWARE = "build/firmware.elf"
STANDALONE_INPUTS_C = "src/standalone_inputs.c"
# The sources of each project type; a project keeps only its own type's.
PROJECT_TYPE_SOURCES = {"host_driven": ("src/main_host_driven.c", "src/platform.c", "device_runtime/src"),
                        "standalone": ("src/main_standalone.c", "src/standalone_inputs.h")}
FLASH_ORIGIN = 0x00000000  # every Cortex-M board in the catalogue: code at 0, SRAM at 0x20000000
RAM_ORIGIN = 0x20000000
ARM_TOOLS_PACKAGES = "apt-get install --no-install-recommends make gcc-arm-none-eabi libnewlib-arm-none-eabi"

PROJECT_OPTIONS = server.default_project_options(
    board={"choices": boards.board_choices(PLATFORM)},
    project_type={"choices": ("host_driven", "standalone")},
    verbose={"optional": ("generate_project", "build")},
) + [
    server.ProjectOption(
        "standalone_inputs", type="str", optional=("generate_project",),
        help="standalone: a .npz of the model inputs (by input name) embedded in the image; zeros when absent."),
    server.ProjectOption(
        "standalone_runs", type="int", default=1, optional=("generate_project",),
        help="standalone: after the first inference, time this many more back to back (instructions per "
             "inference = their ticks minus the first run's, over runs - 1)."),
    server.ProjectOption(
        "stack_size_bytes", type="int", default=8192, optional=("generate_project",),
        help="Main stack size reserved at the bottom of RAM."),
]


# ---- board files ----------------------------------------------------------------------------


def cpu_flags(board: boards.Board) -> List[str]:
    flags = [f"-mcpu={board.cpu}", "-mthumb"]
    if board.fpu:
        mfpu = board.extra.get("mfpu")
        if not mfpu:
            raise server.ServerError(f"board {board.name} has an FPU but no 'mfpu' in boards/boards.yaml")
        return flags + ["-mfloat-abi=hard", f"-mfpu={mfpu}"]
    return flags + ["-mfloat-abi=soft"]


def qemu_machine(board: boards.Board) -> str:
    emulator = board.emulator or {}
    if emulator.get("kind") != "qemu":
        raise server.ServerError(f"board {board.name} is not emulated by QEMU; the cortex_m template runs only on QEMU boards")
    return emulator["machine"]


def write_board_files(board: boards.Board, board_dir: pathlib.Path, *, project_type: str = "host_driven",
                      stack_size_bytes: int = 8192, standalone_runs: int = 1, warning_as_error: bool = False,
                      define_flags: Sequence[str] = ()) -> None:
    """board/config.mk (make variables) and board/memory.ld (linker regions) of one board."""
    board_dir = pathlib.Path(board_dir)
    board_dir.mkdir(parents=True, exist_ok=True)
    (board_dir / "config.mk").write_text(
        f"# Written at project generation from boards/boards.yaml (board {board.name}) and the project options.\n"
        f"BOARD = {board.name}\n"
        f"PROJECT_TYPE = {project_type}\n"
        f"CPU_FLAGS = {' '.join(cpu_flags(board))}\n"
        f"UART = {board.extra['uart']}\n"
        f"CORE_CLOCK_HZ = {int(board.extra['core_clock_hz'])}\n"
        f"QEMU_MACHINE = {qemu_machine(board)}\n"
        f"STACK_SIZE = {stack_size_bytes}\n"
        f"STANDALONE_RUNS = {standalone_runs}\n"
        f"WERROR = {'-Werror' if warning_as_error else ''}\n"
        f"EXTRA_CFLAGS = {' '.join(define_flags)}\n",
        encoding="utf-8")
    (board_dir / "memory.ld").write_text(
        f"/* Written at project generation from boards/boards.yaml (board {board.name}). */\n"
        "MEMORY\n{\n"
        f"  FLASH (rx) : ORIGIN = 0x{FLASH_ORIGIN:08x}, LENGTH = {board.flash_bytes}\n"
        f"  RAM (rwx)  : ORIGIN = 0x{RAM_ORIGIN:08x}, LENGTH = {board.ram_bytes}\n"
        "}\n",
        encoding="utf-8")


# ---- build ------------------------------------------------------------------------------------

_REGION_USAGE = re.compile(r"^\s*(FLASH|RAM):\s+(\d+)\s*(B|KB|MB|GB)\s+(\d+)\s*(B|KB|MB|GB)", re.MULTILINE)
_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def _fit_error(board_name: str, make_output: str) -> Optional[str]:
    """A one-line 'does not fit' message from ld's --print-memory-usage table, if a region overflowed."""
    if "overflowed by" not in make_output:
        return None
    parts = []
    for region, used, used_unit, size, size_unit in _REGION_USAGE.findall(make_output):
        used_b, size_b = int(used) * _UNITS[used_unit], int(size) * _UNITS[size_unit]
        verdict = "too big" if used_b > size_b else "fits"
        parts.append(f"{region} {used_b:,} B of {size_b:,} B ({verdict})")
    if not parts:
        parts = [m.group(0) for m in re.finditer(r"region `\w+' overflowed by \d+ bytes", make_output)]
    return (f"the firmware does not fit board {board_name}: " + "; ".join(parts)
            + ". Pick a board with more memory, a smaller model, or a smaller stack_size_bytes")


class Handler(template.TemplateHandler):
    PLATFORM = PLATFORM
    PROJECT_OPTIONS = PROJECT_OPTIONS

    def check_generation_options(self, options, board):
        if options["standalone_runs"] < 1:
            raise server.ServerError(f"standalone_runs must be at least 1, not {options['standalone_runs']}")
        if options["stack_size_bytes"] < 512 or options["stack_size_bytes"] % 8:
            raise server.ServerError(
                f"stack_size_bytes must be a multiple of 8 and at least 512, not {options['stack_size_bytes']}")
        return options

    def write_build_files(self, project_dir, model, board, options):
        project_type = options["project_type"]
        write_board_files(board, project_dir / BOARD_DIR, project_type=project_type,
                          stack_size_bytes=options["stack_size_bytes"], standalone_runs=options["standalone_runs"],
                          warning_as_error=options["warning_as_error"],
                          define_flags=compile_definitions(options["compile_definitions"]))
        if project_type == "standalone":
            (project_dir / STANDALONE_INPUTS_C).write_text(
                standalone.inputs_source(model, options.get("standalone_inputs")), encoding="utf-8")
        other_uarts = [f"src/{p.name}" for p in (project_dir / "src").glob("uart_*.c") if p.stem != f"uart_{board.extra['uart']}"]
        project_gen.remove_unbuilt(project_dir, other_uarts + [source for other_type, sources in PROJECT_TYPE_SOURCES.items()
                                                              if other_type != project_type for source in sources])

    def readme_values(self, project_dir, model, board, options):
        return dict(super().readme_values(project_dir, model, board, options), qemu_machine=qemu_machine(board),
                    run=("`make run` starts the image on QEMU; it runs the model, prints the outputs as values "
                         "(decoded by microtvm-projects' `python3 -m project_api.standalone`, when installed), the "
                         "time per inference and the stack used, and exits with the model's status"
                         if options["project_type"] == "standalone" else
                         "the image serves the host-driven RPC on its UART: `tvmc run --device micro .` starts "
                         "QEMU, sets the inputs, runs the model and prints the outputs as values"))

    def build(self, options):
        options = self.generated_options("build", options)
        for tool in ("make", "arm-none-eabi-gcc"):
            self.require_tool(tool, f"build needs `{tool}`: {ARM_TOOLS_PACKAGES}")
        board = self.board()
        self.run_tool(template.make_argv(self.project_dir), "make", options.get("verbose"),
                      explain=lambda what, status, output: _fit_error(board.name, output)
                      or tool_run.failure_line(what, status, output))

    def flash(self, options):
        # Nothing to program: QEMU loads the ELF when the transport opens.
        self.require_project("flash")
        self.require_built(FIRMWARE)

    def open_transport(self, options):
        options = self.generated_options("open_transport", options)
        if options["project_type"] != "host_driven":
            raise server.ServerError(
                "this is a standalone project: it runs without a host session; start it with `make run` "
                "in the project (it prints its outputs and exits)")
        qemu = QemuMachine(qemu_machine(self.board()), self.require_built(FIRMWARE))
        return self.attach_transport(lambda: SerialTransport(qemu.serial_url, timeouts=self.TIMEOUTS), qemu)

    def transport_closed_error(self, err):
        """The link went away: say why when QEMU exited (exit status 2 = a fault in the firmware)."""
        qemu = self.device
        if qemu is not None:
            try:
                status = qemu.wait(2.0)  # the socket closes a moment before the process ends
            except QemuError:
                status = None
            if status is not None:
                reason = {2: " (the firmware faulted: a bad memory access or stack overflow)"}.get(status, "")
                return server.TransportClosedError(f"QEMU exited with status {status}{reason}")
        return server.TransportClosedError("the UART link to QEMU closed")


if __name__ == "__main__":
    server.main(Handler())
