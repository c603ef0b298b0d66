"""Start and stop QEMU machines whose UART is a TCP socket on 127.0.0.1, and never leak one
(the cortex_m template's boards; the Zephyr template subclasses it for its QEMU boards).

A ``QemuMachine`` runs one firmware image. QEMU listens on a free local port with ``wait=on``,
so the guest does not run until the host connects to ``serial_url`` (pyserial ``socket://``):
no output is lost. Every machine is stopped by ``stop()`` / the ``with`` block, and as a last
resort at interpreter exit, on SIGTERM, and (Linux) when the process that started it dies.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .process import EmulatorError, EmulatorProcess

QEMU = "qemu-system-arm"
# What QEMU prints on stderr once its server socket listens (server=on,wait=on).
_LISTENING = b"waiting for connection"
_PORT_RETRIES = 5  # a free port can be taken by someone else before QEMU binds it
_DEBIAN_PACKAGE = {"qemu-system-i386": "qemu-system-x86", "qemu-system-x86_64": "qemu-system-x86",
                   "qemu-system-riscv32": "qemu-system-misc"}


class QemuError(EmulatorError):
    """QEMU is missing, failed to start, or did not stop in time; the message says which."""


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: atexit and the signal handler remain
        pass


class QemuMachine(EmulatorProcess):
    """One emulated board running ``kernel`` (an ELF), its UART on ``serial_url``.

    ``icount=True`` runs with ``-icount shift=0``: one instruction is one nanosecond of virtual
    time, so SysTick measures instructions deterministically. Semihosting is always enabled
    (firmware exits through SYS_EXIT_EXTENDED with its status).
    """

    error = QemuError
    label = "QEMU"

    def __init__(
        self,
        machine: str,
        kernel: os.PathLike,
        *,
        icount: bool = True,
        extra_args: Sequence[str] = (),
        start_timeout_sec: float = 10.0,
    ):
        super().__init__(start_timeout_sec)
        self.binary = QEMU  # subclasses for other architectures set e.g. qemu-system-i386
        self.machine = machine
        self.kernel = Path(kernel)
        self.icount = icount
        self.extra_args = list(extra_args)

    # --- life cycle -------------------------------------------------------------------------
    def argv(self, port: int) -> List[str]:
        argv = [self.binary, "-M", self.machine, "-display", "none", "-monitor", "none", "-no-reboot",
                "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
                "-semihosting-config", "enable=on,target=native", "-kernel", str(self.kernel)]
        if self.icount:
            argv += ["-icount", "shift=0"]
        return argv + self.extra_args

    def start(self) -> str:
        """Start QEMU and wait until it listens; return ``serial_url``. The guest starts running
        when the first client connects."""
        self._check_not_started()
        if shutil.which(self.binary) is None:
            package = _DEBIAN_PACKAGE.get(self.binary, self.binary)
            raise QemuError(f"{self.binary} not found: install it (Debian: apt-get install {package})")
        if not self.kernel.is_file():
            raise QemuError(f"firmware image {self.kernel} does not exist: build the project first")
        last_error = ""
        for _ in range(_PORT_RETRIES):
            port = free_local_port()
            self._launch(port)
            try:
                if self._wait_listening():
                    self.port = port
                    return self.serial_url
            except BaseException:
                self.stop()
                raise
            last_error = self.output()
            self.stop()
            if "in use" not in last_error:
                break
        raise QemuError(f"QEMU ({self.machine}) failed to start: {last_error.strip() or 'no output'}")

    def _launch(self, port: int) -> None:
        # PDEATHSIG fires when the *thread* that forked exits; only the main thread lives as long
        # as the process, elsewhere the other safety nets must do.
        main_thread = threading.current_thread() is threading.main_thread()
        self._spawn(self.argv(port), preexec_fn=_die_with_parent if main_thread else None)

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + self.start_timeout_sec
        while time.monotonic() < deadline:
            if _LISTENING in self._read_log():
                return True
            if self._proc.poll() is not None:
                return False
            time.sleep(0.01)
        raise QemuError(
            f"QEMU ({self.machine}) did not open its UART socket within {self.start_timeout_sec} s: "
            f"{self.output().strip() or 'no output'}"
        )

    def output(self) -> str:
        """What QEMU printed (errors, semihosting console output)."""
        return self._read_log().decode("utf-8", "replace")

    def wait(self, timeout_sec: Optional[float]) -> int:
        """Wait for the guest to stop QEMU (semihosting exit); return QEMU's exit status."""
        if self._proc is None:
            raise QemuError("this QEMU machine was never started")
        try:
            return self._proc.wait(timeout_sec)
        except subprocess.TimeoutExpired:
            raise QemuError(f"the firmware on QEMU ({self.machine}) did not exit within {timeout_sec} s") from None


def run_to_exit(machine: str, kernel: os.PathLike, timeout_sec: float = 60.0,
                *, icount: bool = True) -> Tuple[int, bytes]:
    """Run a firmware that ends with a semihosting exit; return (exit status, all UART output)."""
    with QemuMachine(machine, kernel, icount=icount) as qemu:
        deadline = time.monotonic() + timeout_sec
        received = bytearray()
        # A plain socket, not pyserial: pyserial's read() drops the bytes it has already
        # gathered when the peer closes, and QEMU closes right after the guest's last byte.
        with socket.create_connection(("127.0.0.1", qemu.port), timeout=5.0) as link:
            link.settimeout(0.2)
            while True:
                try:
                    chunk = link.recv(65536)
                except socket.timeout:
                    chunk = None
                except ConnectionError:
                    break
                if chunk == b"":
                    break  # QEMU exited
                if chunk:
                    received += chunk
                if time.monotonic() > deadline:
                    raise QemuError(
                        f"the firmware on QEMU ({machine}) did not exit within {timeout_sec} s; "
                        f"UART output so far: {bytes(received[-200:])!r}"
                    )
        return qemu.wait(5.0), bytes(received)
