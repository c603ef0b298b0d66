"""Project API server of the bare-metal Cortex-M template (no RTOS), for boards run on QEMU.

generate_project lays out a project that builds with plain `make` (arm-none-eabi-gcc + newlib-nano):
board/config.mk and board/memory.ld come from boards/boards.yaml. build runs make and checks the
image against the board's memory; flash does nothing (the board is emulated); open_transport starts
qemu-system-arm with the UART on a local TCP socket and connects to it with pyserial.

Project types: host_driven (the RPC server of the device runtime) and standalone (inputs embedded
at generation, outputs and timings printed on the UART, exit status through semihosting).
Used as a template (from template_projects/cortex_m) and as a generated project's server.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from project_api import boards, project_gen, server
from project_api.emulators.qemu import QemuError, QemuMachine
from project_api.rpc.transport import SerialTransport

PROJECT_DIR = pathlib.Path(__file__).resolve().parent
IS_TEMPLATE = project_gen.is_template(PROJECT_DIR)
PLATFORM = "cortex_m"
BOARD_DIR = "board"  # config.mk + memory.ld, written at generation
FIRMWARE = pathlib.Path("build") / "firmware.elf"
STANDALONE_INPUTS_C = "src/standalone_inputs.c"
FLASH_ORIGIN = 0x00000000  # every Cortex-M board in the catalogue: code at 0, SRAM at 0x20000000
RAM_ORIGIN = 0x20000000
# The firmware answers within milliseconds once QEMU runs it; starting QEMU is in open_transport.
TIMEOUTS = server.TransportTimeouts(
    session_start_retry_timeout_sec=1.0, session_start_timeout_sec=10.0, session_established_timeout_sec=10.0
)


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


def read_config_mk(project_dir: pathlib.Path) -> Dict[str, str]:
    path = pathlib.Path(project_dir) / BOARD_DIR / "config.mk"
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# ---- standalone inputs ----------------------------------------------------------------------


def _c_bytes(data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return ",\n  ".join(rows)


def standalone_inputs_source(model: project_gen.ModelInfo, npz_path: Optional[str]) -> str:
    """src/standalone_inputs.c: the inputs of a standalone image, checked against the model."""
    arrays = {}
    if npz_path:
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as err:
            raise project_gen.ProjectGenerationError(f"cannot read standalone_inputs {npz_path} as .npz: {err}") from err
        unknown = set(arrays) - {t.name for t in model.inputs}
        if unknown:
            raise project_gen.ProjectGenerationError(
                f"standalone_inputs {npz_path} has arrays {sorted(unknown)} that are not inputs of model "
                f"'{model.name}' (inputs: {[t.name for t in model.inputs]})")
    lines = ["/* Generated at project generation from the standalone_inputs option: do not edit. */",
             "#include <stdint.h>", "", '#include "standalone_inputs.h"', ""]
    pointers = []
    for i, tensor in enumerate(model.inputs):
        if tensor.name not in arrays:
            pointers.append("0")  # the zero-initialised input buffer
            continue
        given = arrays[tensor.name]
        value = given.astype(tensor.dtype)
        if value.size != int(np.prod(tensor.shape)) or not np.array_equal(value, given):
            raise project_gen.ProjectGenerationError(
                f"standalone_inputs: '{tensor.name}' is {given.dtype}{list(given.shape)} but the model wants "
                f"{tensor.dtype}{list(tensor.shape)}; convert it (same element count, values exact in {tensor.dtype})")
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
        lines += [f"/* {tensor.name} */", f"static const uint8_t input{i}[{len(data)}] = {{\n  {_c_bytes(data)}\n}};"]
        pointers.append(f"input{i}")
    lines += ["", f"const uint8_t *const mtp_standalone_inputs[{max(len(pointers), 1)}] = "
                  f"{{{', '.join(pointers) or '0'}}};", ""]
    return "\n".join(lines)


def parse_standalone_output(text: str, model: project_gen.ModelInfo) -> dict:
    """Decode what a standalone image printed: {"outputs": [ndarray], "ticks": {runs: ticks},
    "tick_hz", "stack_bytes", "status"}. Raises ValueError when the output is incomplete."""
    result = {"outputs": [None] * len(model.outputs), "ticks": {}}
    lines = text.splitlines()
    if "end" not in (line.strip() for line in lines):
        raise ValueError(f"the standalone image stopped before printing 'end'; it printed: {text[-300:]!r}")
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "output" and len(fields) == 3:
            index = int(fields[1], 16)
            tensor = model.outputs[index]
            raw = bytes.fromhex(fields[2])
            result["outputs"][index] = np.frombuffer(raw, dtype=np.dtype(tensor.dtype).newbyteorder("<")) \
                .astype(tensor.dtype).reshape(tensor.shape)
        elif fields[0] == "ticks" and len(fields) == 3:
            result["ticks"][int(fields[1], 16)] = int(fields[2], 16)
        elif fields[0] in ("tick_hz", "stack", "status") and len(fields) == 2:
            key = {"stack": "stack_bytes"}.get(fields[0], fields[0])
            result[key] = int(fields[1], 16)
    if any(o is None for o in result["outputs"]) or "status" not in result:
        raise ValueError(f"the standalone image's output lacks outputs or status: {text[-300:]!r}")
    return result


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


class Handler(server.TransportHandler):
    def server_info_query(self, tvm_version):
        return project_gen.server_info(PLATFORM, PROJECT_DIR, PROJECT_OPTIONS)

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        board = boards.get_board(options["board"], PLATFORM)
        if options["standalone_runs"] < 1:
            raise server.ServerError(f"standalone_runs must be at least 1, not {options['standalone_runs']}")
        if options["stack_size_bytes"] < 512 or options["stack_size_bytes"] % 8:
            raise server.ServerError(
                f"stack_size_bytes must be a multiple of 8 and at least 512, not {options['stack_size_bytes']}")
        options = dict(options, board=board.name)
        project_dir = pathlib.Path(project_dir)
        model = project_gen.read_mlf(model_library_format_path)
        inputs_c = None
        if options["project_type"] == "standalone":  # checked before anything is written
            inputs_c = standalone_inputs_source(model, options.get("standalone_inputs"))
        project_gen.generate_common(PROJECT_DIR, model_library_format_path, project_dir, options, board, model)
        write_board_files(board, project_dir / BOARD_DIR, project_type=options["project_type"],
                          stack_size_bytes=options["stack_size_bytes"], standalone_runs=options["standalone_runs"],
                          warning_as_error=options["warning_as_error"],
                          define_flags=project_gen.compile_definitions(options["compile_definitions"]))
        if inputs_c is not None:
            (project_dir / STANDALONE_INPUTS_C).write_text(inputs_c, encoding="utf-8")

    def _require_project(self, method):
        if IS_TEMPLATE:
            raise server.ServerError(f"{method} needs a generated project; {PROJECT_DIR} is the cortex_m template "
                                     "(run tvmc micro create first)")

    def _board(self) -> boards.Board:
        return boards.get_board(read_config_mk(PROJECT_DIR)["BOARD"], PLATFORM)

    def build(self, options):
        self._require_project("build")
        for tool in ("make", "arm-none-eabi-gcc"):
            if shutil.which(tool) is None:
                raise server.ServerError(
                    f"build needs `{tool}`: apt-get install --no-install-recommends make gcc-arm-none-eabi libnewlib-arm-none-eabi")
        argv = ["make", "-C", str(PROJECT_DIR), f"-j{os.cpu_count() or 1}"]
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if options.get("verbose") or result.returncode != 0:
            sys.stderr.write(result.stdout)
        if result.returncode != 0:
            raise server.ServerError(_fit_error(self._board().name, result.stdout)
                                     or project_gen.tool_failure("make", result.returncode, result.stdout))

    def flash(self, options):
        # Nothing to program: QEMU loads the ELF when the transport opens.
        self._require_project("flash")
        self._firmware()

    def _firmware(self) -> pathlib.Path:
        firmware = PROJECT_DIR / FIRMWARE
        if not firmware.is_file():
            raise server.ServerError(f"{firmware} does not exist; build the project first (tvmc micro build)")
        return firmware

    def open_transport(self, options):
        self._require_project("open_transport")
        config = read_config_mk(PROJECT_DIR)
        if config.get("PROJECT_TYPE") != "host_driven":
            raise server.ServerError(
                "this is a standalone project: it runs without a host session; start it with `make run` "
                "in the project (it prints its outputs and exits)")
        firmware = self._firmware()
        qemu = QemuMachine(config["QEMU_MACHINE"], firmware)
        return self.attach_transport(lambda: SerialTransport(qemu.serial_url, timeouts=TIMEOUTS), qemu)

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
