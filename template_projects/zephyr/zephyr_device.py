"""Reaching a built Zephyr image: the serial port of a real board (by serial number or USB
VID:PID) at the console's baud rate from the build's devicetree, or QEMU with the console UART
on a 127.0.0.1 TCP socket (project_api.emulators.qemu: no console/monitor mixing, nothing leaks)."""

from __future__ import annotations

import pathlib
import re
from typing import List, Optional, Sequence

from project_api import boards, server
from project_api.emulators.qemu import QemuMachine

DEFAULT_BAUD_RATE = 115200  # Zephyr's UART default when the devicetree gives no current-speed
ZEPHYR_ELF = pathlib.Path("zephyr") / "zephyr.elf"
ZEPHYR_DTS = pathlib.Path("zephyr") / "zephyr.dts"
KCONFIG_FILE = pathlib.Path("zephyr") / ".config"


# ---- devicetree: the console's baud rate ---------------------------------------------------------

_CHOSEN_CONSOLE = re.compile(r"\bchosen\s*\{[^}]*?zephyr,console\s*=\s*&\s*([A-Za-z_][\w]*)\s*;", re.DOTALL)
_CURRENT_SPEED = re.compile(r"current-speed\s*=\s*<\s*(0x[0-9a-fA-F]+|\d+)\s*>\s*;")


def _node_body(dts: str, label: str) -> Optional[str]:
    """The text of the node labelled ``label`` up to its first child or its end (its own properties)."""
    match = re.search(rf"(?:^|[\s;{{}}]){re.escape(label)}\s*:\s*[^{{;]*\{{", dts)
    if match is None:
        return None
    depth, start = 1, match.end()
    for i in range(start, len(dts)):
        if dts[i] == "{":
            return dts[start:i]  # properties come before child nodes in the generated dts
        if dts[i] == "}":
            depth -= 1
            if depth == 0:
                return dts[start:i]
    return dts[start:]


def console_baud_rate(dts: str) -> int:
    """current-speed of the chosen zephyr,console node in a build's zephyr.dts."""
    chosen = _CHOSEN_CONSOLE.search(dts)
    if chosen is None:
        raise server.ServerError("the build's devicetree chooses no zephyr,console UART: the RPC needs one")
    body = _node_body(dts, chosen.group(1))
    if body is None:
        raise server.ServerError(f"the build's devicetree has no node labelled '{chosen.group(1)}' (zephyr,console)")
    speed = _CURRENT_SPEED.search(body)
    return int(speed.group(1), 0) if speed else DEFAULT_BAUD_RATE


# ---- real boards: the serial port ------------------------------------------------------------


def _describe(port) -> str:
    ids = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None else "no USB id"
    return f"{port.device} ({ids}, serial {port.serial_number or '?'})"


def find_serial_port(board: boards.Board, serial_number: Optional[str], ports: Sequence) -> str:
    """The device path of the board's console among pyserial ``list_ports.comports()`` entries.

    With serial_number, the port(s) of that probe; else those with the board's USB VID:PID, which
    must belong to one probe. A probe with several ports (an nRF J-Link's VCOMs) gives the one at
    the board's ``serial_port_index`` in boards.yaml (in USB interface order; default 0): the one
    its Zephyr console is wired to."""
    if serial_number:
        matches = [p for p in ports if p.serial_number == serial_number]
        wanted = f"serial number {serial_number}"
    else:
        if not board.usb_vid or not board.usb_pid:
            raise server.ServerError(
                f"board {board.name} has no USB VID:PID in boards/boards.yaml; give the serial_number option")
        vid, pid = int(board.usb_vid, 16), int(board.usb_pid, 16)
        matches = [p for p in ports if p.vid == vid and p.pid == pid]
        wanted = f"USB id {board.usb_vid}:{board.usb_pid}"
    if not matches:
        seen = "; ".join(_describe(p) for p in ports) or "none"
        raise server.ServerError(
            f"no serial port with {wanted} for board {board.name}: connect the board (ports seen: {seen})")
    probes = sorted({p.serial_number for p in matches if p.serial_number} or {None}, key=str)
    if len(probes) > 1:
        raise server.ServerError(
            f"{len(probes)} boards with {wanted} are connected ({', '.join(map(str, probes))}); choose one "
            "with the serial_number option")
    in_interface_order = sorted(matches, key=lambda p: (p.location or "", p.device))
    index = int(board.extra.get("serial_port_index", 0))
    if index >= len(in_interface_order):
        raise server.ServerError(
            f"board {board.name}'s console is its probe's port #{index}, but the probe shows only "
            f"{len(in_interface_order)}: {', '.join(_describe(p) for p in in_interface_order)}")
    return in_interface_order[index].device


# ---- QEMU boards ----------------------------------------------------------------------------


def _kconfig_int(kconfig: str, name: str) -> Optional[int]:
    match = re.search(rf"^CONFIG_{name}=(0x[0-9a-fA-F]+|\d+)$", kconfig, re.MULTILINE)
    return int(match.group(1), 0) if match else None


class ZephyrQemu(QemuMachine):
    """QemuMachine for a Zephyr QEMU board: the catalogue's binary, machine and arguments; the
    console UART (the first serial port) on the socket, the monitor off, no reboot."""

    def __init__(self, board: boards.Board, build_dir: pathlib.Path, gdbserver_port: Optional[int] = None):
        emulator = board.emulator or {}
        if emulator.get("kind") != "qemu":
            raise server.ServerError(f"board {board.name} is not emulated by QEMU")
        build_dir = pathlib.Path(build_dir)
        super().__init__(emulator["machine"], build_dir / ZEPHYR_ELF, icount=False)
        self.binary = emulator.get("binary", "qemu-system-arm")
        self.board_args = [str(a) for a in emulator.get("args", ())]
        if emulator.get("memory_from_config"):
            self.board_args += ["-m", str(self._memory_mb(build_dir))]
        self.gdbserver_port = gdbserver_port

    @staticmethod
    def _memory_mb(build_dir: pathlib.Path) -> int:
        """RAM for boards whose image is loaded into RAM (qemu_x86): CONFIG_SRAM_SIZE (KiB), as
        Zephyr's own run target sizes it."""
        config = build_dir / KCONFIG_FILE
        kib = _kconfig_int(config.read_text(encoding="utf-8"), "SRAM_SIZE") if config.is_file() else None
        if kib is None:
            raise server.ServerError(f"{config} gives no CONFIG_SRAM_SIZE; rebuild the project")
        return max(1, -(-kib // 1024))

    def argv(self, port: int) -> List[str]:
        argv = [self.binary, "-M", self.machine, "-display", "none", "-monitor", "none", "-no-reboot",
                "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on", *self.board_args,
                "-kernel", str(self.kernel)]
        if self.gdbserver_port:
            # The guest waits for the debugger's `continue` (gdb: target remote :PORT).
            argv += ["-gdb", f"tcp:127.0.0.1:{self.gdbserver_port}", "-S"]
        return argv + self.extra_args
