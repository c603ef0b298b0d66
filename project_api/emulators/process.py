"""The life cycle every emulator shares (QEMU, simavr): one child process in its own process group,
its output captured in a temporary file, its UART on a 127.0.0.1 port, and never leaked.

``EmulatorProcess`` spawns the child, stops it (SIGTERM to the group, SIGKILL after a grace
period; idempotent) and keeps every running one in a set that is stopped at interpreter exit and
on SIGTERM. Subclasses build the command line, find the port and say what went wrong in their own
error class (a subclass of ``EmulatorError``).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile
import threading
from typing import Callable, List, Optional

from ..errors import EmulatorError  # the base of QemuError and SimavrError (process.EmulatorError stays importable)

_live: "set[EmulatorProcess]" = set()
_live_lock = threading.Lock()
_cleanup_installed = False


def running_emulators() -> List["EmulatorProcess"]:
    """Every emulator started in this process and not stopped yet."""
    with _live_lock:
        return list(_live)


def stop_all() -> None:
    for emulator in running_emulators():
        emulator.stop()


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group ``proc`` leads (start_new_session=True), if it still exists."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _on_sigterm(signum, frame):
    stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_cleanup() -> None:
    global _cleanup_installed
    if _cleanup_installed:
        return
    _cleanup_installed = True
    atexit.register(stop_all)
    # Only take SIGTERM over when nobody else handles it (the default would skip atexit).
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


class EmulatorProcess:
    """One emulator child process whose UART listens on ``serial_url`` once started."""

    error = EmulatorError  # subclasses raise their own subclass of it
    label = "the emulator"  # names the emulator in messages ("QEMU", "simavr")

    def __init__(self, start_timeout_sec: float):
        self.start_timeout_sec = start_timeout_sec
        self.port: Optional[int] = None
        self.returncode: Optional[int] = None  # the exit status once stopped
        self._proc: Optional[subprocess.Popen] = None
        self._log = None  # the child's output, in a temporary file (no pipe to keep drained)
        self._final_log = b""  # what the log held when the child stopped

    def start(self) -> str:
        """Start the emulator and wait until its UART listens; return ``serial_url``."""
        raise NotImplementedError

    def _check_not_started(self) -> None:
        if self._proc is not None:
            raise self.error(f"this {self.label} machine is already started")

    def _spawn(self, argv: List[str], stdout=None, preexec_fn: Optional[Callable[[], None]] = None) -> None:
        """Start ``argv`` in its own process group: stderr goes to the log, and stdout too unless
        ``stdout`` says otherwise (e.g. subprocess.PIPE to read a port number from it)."""
        _install_cleanup()
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log if stdout is None else stdout,
                stderr=subprocess.STDOUT if stdout is None else self._log,
                start_new_session=True,  # own process group: stop() takes everything it spawned
                preexec_fn=preexec_fn,
            )
        except OSError as err:
            self._log.close()
            self._log = None
            raise self.error(f"cannot start {argv[0]}: {err}") from err
        with _live_lock:
            _live.add(self)

    def _read_log(self) -> bytes:
        if self._log is None:
            return self._final_log
        self._log.seek(0)
        return self._log.read()

    def stop(self, grace_sec: float = 2.0) -> Optional[int]:
        """Stop the emulator (idempotent); return its exit status, None if it never ran."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                signal_group(proc, signal.SIGTERM)
                signal_group(proc, signal.SIGCONT)  # a stopped (SIGSTOP) emulator acts on SIGTERM only once continued
                try:
                    proc.wait(grace_sec)
                except subprocess.TimeoutExpired:
                    signal_group(proc, signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            self.returncode = proc.returncode
        with _live_lock:
            _live.discard(self)
        if self._log is not None:
            self._final_log = self._read_log()
            self._log.close()
            self._log = None
        return self.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def serial_url(self) -> str:
        if self.port is None:
            raise self.error(f"{self.label} is not started")
        return f"socket://127.0.0.1:{self.port}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
