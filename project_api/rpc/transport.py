"""Byte streams to a device (contract 7 in docs/architecture.md).

A transport moves raw bytes; framing, sessions and commands live above it (framing.py,
session.py, commands.py). ``read`` returns as soon as at least one byte is there, so callers ask
for large chunks and never pay a system call (or a Project API round trip) per byte.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from typing import NamedTuple, Optional, Sequence

from ..errors import IoTimeoutError, TransportClosedError


class TransportTimeouts(NamedTuple):
    """The three legacy microTVM session timeouts, in seconds (0 = wait forever)."""

    session_start_retry_timeout_sec: float
    session_start_timeout_sec: float
    session_established_timeout_sec: float


# What a transport reports when its creator did not say: resend the session-start request every
# second, give up on the handshake after 10 s, and on any reply after 10 s.
DEFAULT_TIMEOUTS = TransportTimeouts(1.0, 10.0, 10.0)


def _deadline(timeout_sec: Optional[float]) -> Optional[float]:
    return None if timeout_sec is None else time.monotonic() + max(0.0, timeout_sec)


def _time_left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Transport:
    """A byte stream to a device. ``read``/``write`` raise IoTimeoutError or TransportClosedError."""

    timeouts: TransportTimeouts = DEFAULT_TIMEOUTS

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def read(self, n: int, timeout_sec: Optional[float]) -> bytes:
        """1..n bytes, waiting at most timeout_sec (None = forever) for the first one."""
        raise NotImplementedError

    def write(self, data: bytes, timeout_sec: Optional[float]) -> None:
        """Write all of data within timeout_sec (None = forever)."""
        raise NotImplementedError

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


class SubprocessTransport(Transport):
    """The stdin/stdout of a child process: the host board's device program.

    The program runs in a process group of its own, and close() stops the whole group: whatever
    the program started dies with it, even when the program itself exits at EOF."""

    STOP_GRACE_SEC = 2.0

    def __init__(self, argv: Sequence[str], cwd=None, timeouts: TransportTimeouts = DEFAULT_TIMEOUTS,
                 stderr=None):
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.timeouts = timeouts
        self._stderr = stderr
        self.process: Optional[subprocess.Popen] = None

    def open(self) -> None:
        if self.process is not None:
            return
        try:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, bufsize=0, start_new_session=True)
        except OSError as err:
            raise TransportClosedError(f"cannot start device program {self.argv[0]}: {err}") from err
        os.set_blocking(self.process.stdout.fileno(), False)
        os.set_blocking(self.process.stdin.fileno(), False)

    def _require_open(self) -> subprocess.Popen:
        if self.process is None:
            raise TransportClosedError("transport is not open")
        return self.process

    def read(self, n: int, timeout_sec: Optional[float]) -> bytes:
        fd = self._require_open().stdout.fileno()
        deadline = _deadline(timeout_sec)
        while True:
            try:
                data = os.read(fd, n)
            except BlockingIOError:
                data = None
            if data is not None:
                if not data:
                    raise TransportClosedError(f"device program {self.argv[0]} closed its output "
                                               f"(exit status {self.process.poll()})")
                return data
            ready, _, _ = select.select([fd], [], [], _time_left(deadline))
            if not ready:
                raise IoTimeoutError(f"no byte from the device within {timeout_sec} s")

    def write(self, data: bytes, timeout_sec: Optional[float]) -> None:
        fd = self._require_open().stdin.fileno()
        view = memoryview(data)
        deadline = _deadline(timeout_sec)
        while view:
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError) as err:
                raise TransportClosedError(f"device program {self.argv[0]} closed its input "
                                           f"(exit status {self.process.poll()})") from err
            _, ready, _ = select.select([], [fd], [], _time_left(deadline))
            if not ready:
                raise IoTimeoutError(f"device did not accept bytes within {timeout_sec} s")

    def close(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        # Closed stdin is EOF for the device program: it returns from mtp_rpc_server_run(). A
        # stopped one (SIGSTOP, a debugger let go) reads it only once continued.
        _signal_group(process.pid, signal.SIGCONT)
        try:
            process.wait(timeout=self.STOP_GRACE_SEC)
        except subprocess.TimeoutExpired:
            pass
        # Then the group: the program if it did not exit, and anything it left behind (a helper
        # it forked outlives it otherwise). The group id stays reserved while a member lives.
        _stop_group(process, self.STOP_GRACE_SEC)
        process.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its credentials: the group is there
        pass
    return True


def _stop_group(leader: subprocess.Popen, grace_sec: float) -> None:
    """SIGTERM to the process group ``leader`` leads, SIGKILL to what is left after ``grace_sec``
    (an orphan's zombie counts until its reaper comes; SIGKILL cannot be refused, so no wait)."""
    if not _signal_group(leader.pid, signal.SIGTERM):
        return
    _signal_group(leader.pid, signal.SIGCONT)  # a stopped member acts on SIGTERM only once continued
    deadline = time.monotonic() + grace_sec
    while time.monotonic() < deadline:
        leader.poll()  # reap the leader: its zombie would keep the group alive
        if not _signal_group(leader.pid, 0):
            return
        time.sleep(0.01)
    _signal_group(leader.pid, signal.SIGKILL)


class SerialTransport(Transport):
    """A pyserial port: a device path (/dev/ttyACM0, COM3) or a URL (socket://, rfc2217://, loop://)."""

    def __init__(self, port_or_url: str, baudrate: int = 115200,
                 timeouts: TransportTimeouts = DEFAULT_TIMEOUTS):
        self.port_or_url = port_or_url
        self.baudrate = baudrate
        self.timeouts = timeouts
        self._serial = None

    def open(self) -> None:
        if self._serial is not None:
            return
        import serial

        try:
            self._serial = serial.serial_for_url(self.port_or_url, baudrate=self.baudrate, timeout=0)
        except (serial.SerialException, ValueError, OSError) as err:
            raise TransportClosedError(f"cannot open serial port {self.port_or_url}: {err}") from err

    def _require_open(self):
        if self._serial is None:
            raise TransportClosedError(f"serial port {self.port_or_url} is not open")
        return self._serial

    def _set_timeout(self, attribute: str, value: Optional[float]) -> None:
        # Setting a pyserial timeout reconfigures a real port; skip it when it is unchanged.
        if getattr(self._serial, attribute) != value:
            setattr(self._serial, attribute, value)

    def read(self, n: int, timeout_sec: Optional[float]) -> bytes:
        import serial

        port = self._require_open()
        try:
            # The timeout rests at 0 (take what has arrived) and changes only when there is
            # nothing yet: setting it re-configures a real port (tcgetattr and pages of Python).
            self._set_timeout("timeout", 0)
            data = port.read(n)
            if data:
                return data
            self._set_timeout("timeout", timeout_sec)
            first = port.read(1)
            if not first:
                raise IoTimeoutError(f"no byte from {self.port_or_url} within {timeout_sec} s")
            if n == 1:
                return first
            self._set_timeout("timeout", 0)
            return first + port.read(n - 1)  # whatever else has already arrived
        except serial.SerialException as err:
            raise TransportClosedError(f"serial port {self.port_or_url} closed: {err}") from err

    def write(self, data: bytes, timeout_sec: Optional[float]) -> None:
        import serial

        port = self._require_open()
        try:
            self._set_timeout("write_timeout", timeout_sec)
            port.write(data)
        except serial.SerialTimeoutException as err:
            raise IoTimeoutError(f"{self.port_or_url} did not accept bytes within {timeout_sec} s") from err
        except serial.SerialException as err:
            raise TransportClosedError(f"serial port {self.port_or_url} closed: {err}") from err

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()


class ProjectAPITransport(Transport):
    """The device link of a Project API server (open/read/write/close_transport).

    Reads ask the server for a large chunk and keep the surplus, so one JSON-RPC call carries
    everything the device has sent so far, not one byte."""

    READ_CHUNK = 65536

    def __init__(self, client, options: Optional[dict] = None):
        self.client = client
        self.options = dict(options or {})
        self.timeouts = DEFAULT_TIMEOUTS
        self._pending = b""
        self._is_open = False

    def open(self) -> None:
        if self._is_open:
            return
        # The client returns the legacy shapes: {"timeouts": {...}} and {"data": bytes}.
        reply = self.client.open_transport(self.options)
        self.timeouts = TransportTimeouts(**reply["timeouts"])
        self._is_open = True

    def read(self, n: int, timeout_sec: Optional[float]) -> bytes:
        if not self._is_open:
            raise TransportClosedError("Project API transport is not open")
        if not self._pending:
            self._pending = self.client.read_transport(max(n, self.READ_CHUNK), timeout_sec)["data"]
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def write(self, data: bytes, timeout_sec: Optional[float]) -> None:
        if not self._is_open:
            raise TransportClosedError("Project API transport is not open")
        self.client.write_transport(data, timeout_sec)

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._pending = b""
            self.client.close_transport()
