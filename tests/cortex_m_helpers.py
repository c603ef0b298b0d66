"""Shared by tests/test_qemu.py and tests/test_cortex_m*.py: the cortex_m template's server module
and building small firmwares from the template's board layer with its own Makefile."""

import shutil
import subprocess
from pathlib import Path

import pytest

from project_api import boards, resources
from project_helpers import load_server

TEMPLATE_DIR = resources.template_dir("cortex_m")

needs_arm_tools = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm") and shutil.which("make")),
    reason="needs arm-none-eabi-gcc, make and qemu-system-arm "
           "(apt-get install --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)",
)


def load_server_module():
    """template_projects/cortex_m/microtvm_api_server.py as a module."""
    return load_server(TEMPLATE_DIR / "microtvm_api_server.py")


def build_app(board_name: str, c_source: str, dest: Path):
    """Build `c_source` (a main() on the board layer: board.h, fmt.h) for a board with -Werror;
    return (ELF path, QEMU machine name)."""
    server = load_server_module()
    board = boards.get_board(board_name, "cortex_m")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "app.c").write_text(c_source)
    server.write_board_files(board, dest / "board", warning_as_error=True)
    subprocess.run(
        ["make", "-s", "-C", str(TEMPLATE_DIR), f"BOARD_DIR={dest / 'board'}", f"BUILD_DIR={dest / 'build'}",
         f"APP_SRCS={dest / 'app.c'}"],
        check=True, stdout=subprocess.DEVNULL)
    return dest / "build" / "firmware.elf", server.qemu_machine(board)
