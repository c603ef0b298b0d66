"""The farm's own child processes — the RPC tracker and board servers — with the emulators' life
cycle (``project_api.emulators.process``): own process group, output in a temporary file, SIGTERM
then SIGKILL to the group, stopped at interpreter exit and on SIGTERM, never leaked.

Why the group matters: TVM's tracker and RPC server each run their loop in a ``PopenWorker``
child, and the RPC server forks one more child per session; all of them stay in the group of the
process we start, so one ``killpg`` takes them all. The emulator a board server runs sits in its
own session (the Project API server starts it) but dies with the Project API server
(PR_SET_PDEATHSIG), which is in the group.

``descendants(pid)`` walks /proc so that a board server started by hand from a shell (in the
shell's group) can still stop what it started when it is told to stop.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

from ..emulators.process import EmulatorError, EmulatorProcess, signal_group
from ..emulators.qemu import _die_with_parent
from . import FarmError
from .address import Address

# TVM's tracker handshake (tvm.rpc.base.RPC_TRACKER_MAGIC), checked without importing TVM.
_TRACKER_MAGIC = 0x2F271


class FarmProcessError(EmulatorError, FarmError):
    """A tracker or board server failed to start or stopped; the message says which and why."""


def _children_map() -> Dict[int, List[int]]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> List[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere), parents before children."""
    if not os.path.isdir("/proc"):
        return []
    children = _children_map()
    found, todo = [], [pid]
    while todo and len(found) < 10000:  # bounded: a process tree is never that large here
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def stop_descendants(grace_sec: float = 3.0) -> None:
    """SIGTERM everything this process started (so each stops what it started), then SIGKILL what is
    left after ``grace_sec``. The list is taken first: a child's children would otherwise be
    reparented away from us once the child dies."""
    pids = descendants(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_sec
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return False


_environ_lock = threading.Lock()


def _child_pythonpath() -> str:
    """The children import this checkout's project_api (not another installed copy)."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)


def tracker_answers(address: Address, timeout_sec: float = 2.0) -> bool:
    """True when a TVM RPC tracker answers its handshake at ``address``."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_sec) as sock:
            sock.sendall(struct.pack("<i", _TRACKER_MAGIC))
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            return struct.unpack("<i", reply)[0] == _TRACKER_MAGIC
    except OSError:
        return False


class FarmProcess(EmulatorProcess):
    """A Python child of the farm (``argv`` after ``python``), stopped with its whole group."""

    error = FarmProcessError

    def __init__(self, argv: Sequence[str], start_timeout_sec: float):
        super().__init__(start_timeout_sec)
        self.argv = [sys.executable, *argv]

    def _spawn_python(self) -> None:
        main_thread = threading.current_thread() is threading.main_thread()
        # EmulatorProcess._spawn passes the parent's environment: this checkout goes on the
        # child's PYTHONPATH for the moment of the spawn (under a lock: boards start in parallel).
        with _environ_lock:
            saved = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = _child_pythonpath()
            try:
                self._spawn(self.argv, preexec_fn=_die_with_parent if main_thread else None)
            finally:
                if saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved

    def output(self) -> str:
        return self._read_log().decode("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL the whole group at once, as when the host loses power (tests use it)."""
        if self._proc is not None:
            signal_group(self._proc, signal.SIGKILL)
            self._proc.wait()
        self.stop()

    def _wait_until(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout_sec
        while time.monotonic() < deadline:
            if ready():
                return
            if self._proc.poll() is not None:
                log = self.output().strip().splitlines()
                self.stop()
                raise self.error(f"{self.label} exited with status {self.returncode} before {what}: "
                                 f"{log[-1] if log else 'no output'}")
            time.sleep(0.1)
        log = self.output().strip().splitlines()
        self.stop()
        raise self.error(f"{self.label} did not {what} within {self.start_timeout_sec:.0f} s: "
                         f"{log[-1] if log else 'no output'}")


class TrackerProcess(FarmProcess):
    """``python -m tvm.exec.rpc_tracker`` on one address (127.0.0.1 unless told otherwise)."""

    label = "the RPC tracker"

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None, start_timeout_sec: float = 60.0):
        super().__init__([], start_timeout_sec)
        self.host = host
        self.requested_port = port

    @property
    def address(self) -> Address:
        if self.port is None:
            raise self.error("the RPC tracker is not started")
        return Address(self.host, self.port)

    def launch(self) -> Address:
        """Spawn the tracker on a free port and return its address without waiting for it to
        answer (board servers can start importing TVM meanwhile); ``wait_ready()`` waits."""
        from ..emulators.qemu import free_local_port

        self._check_not_started()
        try:
            import tornado  # noqa: F401  (TVM's tracker needs it; the wheel does not depend on it)
        except ImportError:
            raise self.error("TVM's RPC tracker needs tornado: pip install tornado") from None
        port = self.requested_port or free_local_port()
        self.argv = [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", self.host,
                     "--port", str(port), "--port-end", str(port + 1)]
        self._spawn_python()
        self.port = port
        return self.address

    def wait_ready(self) -> str:
        self._wait_until(lambda: tracker_answers(self.address, 1.0), f"answered on {self.address}")
        return str(self.address)

    def start(self) -> str:
        self.launch()
        return self.wait_ready()


class BoardServerProcess(FarmProcess):
    """``python -m project_api.farm serve ...``: one board registered with the tracker under ``key``.
    Started means: the tracker lists this server's address under the key."""

    label = "the board server"

    def __init__(self, tracker: Address, key: str, board: str, *, host: str = "127.0.0.1",
                 port: Optional[int] = None, extra_args: Sequence[str] = (), start_timeout_sec: float = 90.0):
        super().__init__([], start_timeout_sec)
        self.tracker = tracker
        self.key = key
        self.board = board
        self.host = host
        self.requested_port = port
        self.extra_args = list(extra_args)

    def launch(self) -> None:
        """Spawn the server without waiting for it to register (``wait_registered``)."""
        from ..emulators.qemu import free_local_port

        self._check_not_started()
        port = self.requested_port or free_local_port()
        self.argv = [sys.executable, "-m", "project_api.farm", "serve", "--tracker", str(self.tracker),
                     "--key", self.key, "--board", self.board, "--host", self.host, "--rpc-port", str(port),
                     "--wait-tracker", str(self.start_timeout_sec), *self.extra_args]
        self._spawn_python()
        self.port = port

    def wait_registered(self) -> str:
        from .tracker import registered_servers

        def registered():
            try:
                return (self.host, self.port) in registered_servers(self.tracker, self.key)
            except FarmError:
                return False

        self._wait_until(registered, f"registered with the tracker at {self.tracker} under key {self.key!r}")
        return f"{self.host}:{self.port}"

    def start(self) -> str:
        self.launch()
        return self.wait_registered()

    def stop(self, grace_sec: float = 8.0):
        """SIGTERM, then SIGKILL after ``grace_sec``: the server needs a few seconds to stop its
        sessions, their Project API servers and emulators (it gives them 3 s) before it exits."""
        return super().stop(grace_sec)

    @property
    def serial_url(self) -> str:  # the base class's name for "where it listens"
        return f"{self.host}:{self.port}"
