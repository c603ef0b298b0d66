"""Run AVR firmware on simavr with its UART0 on a 127.0.0.1 TCP socket, and never leak a simulator.

The ``simavr`` command cannot feed the UART, so a small bridge written against libsimavr
(``template_projects/arduino/simavr_bridge/uart_bridge.c``) does it; it is compiled on demand with
the host gcc and cached by the hash of its source. A ``SimavrMachine`` runs one firmware: the
bridge listens on a free port and starts simulating only when the host connects to
``serial_url`` (pyserial ``socket://``), so no byte printed at boot is lost. It stops with
``stop()`` / the ``with`` block, when the host hangs up, at interpreter exit, on SIGTERM, and
(Linux) when the process that started it dies (the bridge asks the kernel for SIGTERM on parent
death). The process life cycle is ``process.EmulatorProcess``'s, shared with QEMU.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional, Tuple

from .. import resources
from .process import EmulatorError, EmulatorProcess, signal_group

BRIDGE_SOURCE_RELPATH = Path("simavr_bridge") / "uart_bridge.c"
# Debian package names, for the error messages.
INSTALL_HINT = "apt-get install --no-install-recommends gcc simavr libsimavr-dev"
EXIT_CRASHED = 3  # the bridge's exit status when the firmware crashed

_build_lock = threading.Lock()


class SimavrError(EmulatorError):
    """simavr or the bridge is missing, failed to start, or the firmware crashed; the message says which."""


def bridge_source() -> Path:
    return resources.template_dir("arduino") / BRIDGE_SOURCE_RELPATH


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "microtvm-projects"


def bridge_executable() -> Path:
    """The compiled bridge, built now if this version of its source has not been built yet."""
    source = bridge_source()
    if not source.is_file():
        raise SimavrError(f"the simavr bridge source {source} is missing; reinstall microtvm-projects")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = _cache_dir() / f"mtp_simavr_bridge-{digest}"
    with _build_lock:
        if target.is_file():
            return target
        gcc = shutil.which("gcc")
        if gcc is None:
            raise SimavrError(f"the simavr bridge is compiled with the host gcc, which is missing: {INSTALL_HINT}")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename: parallel builders never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".")
        os.close(fd)
        try:
            result = subprocess.run(
                [gcc, "-std=gnu99", "-O2", "-Wall", "-Wextra", "-o", tmp, str(source), "-lsimavr", "-lsimavrparts"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if result.returncode != 0:
                if "simavr/" in result.stdout or "-lsimavr" in result.stdout:
                    raise SimavrError(f"libsimavr (headers and library) is missing: {INSTALL_HINT}")
                raise SimavrError(f"cannot compile the simavr bridge {source}: {result.stdout.strip()[-400:]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


class SimavrMachine(EmulatorProcess):
    """One simulated AVR running ``firmware`` (an ELF), its UART0 on ``serial_url``."""

    error = SimavrError
    label = "simavr"

    def __init__(self, firmware: os.PathLike, mcu: str, frequency_hz: int, start_timeout_sec: float = 10.0):
        super().__init__(start_timeout_sec)
        self.firmware = Path(firmware)
        self.mcu = mcu
        self.frequency_hz = int(frequency_hz)
        self.cycles: Optional[int] = None  # simulated cycles, known once stopped

    def start(self) -> str:
        self._check_not_started()
        if not self.firmware.is_file():
            raise SimavrError(f"firmware {self.firmware} does not exist: build the project first")
        argv = [str(bridge_executable()), "-m", self.mcu, "-f", str(self.frequency_hz), str(self.firmware)]
        # The bridge prints "port N" on stdout once it listens; its stderr is the log.
        self._spawn(argv, stdout=subprocess.PIPE)
        try:
            self.port = self._read_port()
        except BaseException:
            self.stop()
            raise
        return self.serial_url

    def _read_port(self) -> int:
        ready, _, _ = select.select([self._proc.stdout], [], [], self.start_timeout_sec)
        line = self._proc.stdout.readline() if ready else b""
        match = re.match(rb"port (\d+)", line)
        if match:
            return int(match.group(1))
        if not ready and self._proc.poll() is None:
            raise SimavrError(f"simavr ({self.mcu}) did not open its UART socket within {self.start_timeout_sec} s")
        self._proc.wait()
        raise SimavrError(f"simavr ({self.mcu}) failed to start {self.firmware}: {self.log().strip() or 'no output'}")

    def log(self) -> str:
        """What the bridge and libsimavr printed (errors, "cycles N")."""
        return self._read_log().decode("utf-8", "replace")

    def stop(self, grace_sec: float = 2.0) -> Optional[int]:
        """Stop the simulator (idempotent); return the bridge's exit status, None if it never ran."""
        returncode = super().stop(grace_sec)
        match = re.search(r"^cycles (\d+)$", self.log(), re.M)
        self.cycles = int(match.group(1)) if match else None
        return returncode


def run_cycles(firmware: os.PathLike, mcu: str, frequency_hz: int, cycles: int,
               timeout_sec: float = 60.0) -> Tuple[bytes, int]:
    """Run ``firmware`` headless for ``cycles`` cycles; return (UART output, cycles simulated).
    Raises SimavrError when it crashes, does not load, or takes longer than timeout_sec."""
    firmware = Path(firmware)
    if not firmware.is_file():
        raise SimavrError(f"firmware {firmware} does not exist: build the project first")
    with tempfile.TemporaryDirectory(prefix="mtp_simavr_") as tmp:
        out = Path(tmp) / "uart.bin"
        argv = [str(bridge_executable()), "-m", mcu, "-f", str(int(frequency_hz)), "-r", str(int(cycles)),
                "-o", str(out), str(firmware)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout_sec)
        except subprocess.TimeoutExpired:
            raise SimavrError(f"simavr ({mcu}) did not simulate {cycles} cycles of {firmware} within {timeout_sec} s") from None
        finally:
            if proc.poll() is None:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
        text = log.decode("utf-8", "replace")
        if proc.returncode == EXIT_CRASHED:
            raise SimavrError(f"the firmware {firmware.name} crashed on simavr ({mcu}): {text.strip()[-300:]}")
        if proc.returncode != 0:
            raise SimavrError(f"simavr ({mcu}) could not run {firmware}: {text.strip()[-300:] or 'no output'}")
        match = re.search(r"^cycles (\d+)$", text, re.M)
        return (out.read_bytes() if out.exists() else b""), int(match.group(1)) if match else 0


def avr_memory_usage(elf: os.PathLike) -> Tuple[int, int]:
    """(flash, static RAM) bytes of an AVR ELF, counted as Arduino does: flash = .text + .data
    (+ .bootloader), RAM = .data + .bss + .noinit."""
    data = Path(elf).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise SimavrError(f"{elf} is not a 32-bit little-endian ELF file (an AVR firmware)")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    sections = [struct.unpack_from("<IIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = sections[shstrndx][4]

    def name(entry):
        start = names_offset + entry[0]
        return data[start:data.index(b"\0", start)].decode("ascii", "replace")

    sizes = {name(s): s[5] for s in sections}
    flash = sizes.get(".text", 0) + sizes.get(".data", 0) + sizes.get(".bootloader", 0)
    ram = sizes.get(".data", 0) + sizes.get(".bss", 0) + sizes.get(".noinit", 0)
    return flash, ram
