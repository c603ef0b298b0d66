"""The Project API client: launches a template's or a generated project's server and speaks to it.

``with client.instantiate_from_dir(project_dir) as api: api.build({...})`` — the server runs as a
child process on two pipes (docs/project-api.md); leaving the ``with`` block (or ``close()``)
ends it: EOF on its request pipe, then SIGTERM, then SIGKILL, so no server outlives its client.

Return shapes follow TVM's legacy client so code written against it keeps working:
server_info_query -> dict, open_transport -> {"timeouts": {...}}, read_transport -> {"data": bytes}.
Error replies become exceptions: the three named errors as ``project_api.errors`` classes (the
same ones transports raise), a handler failure as ``ServerError``, a protocol error as ``RPCError``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
from typing import BinaryIO, Optional, Union

from . import PROTOCOL_VERSION, resources
from .errors import IoTimeoutError, TransportClosedError, UnsupportedTVMVersionError

_LOG = logging.getLogger(__name__)

SERVER_PYTHON_FILENAME = "microtvm_api_server.py"
SERVER_LAUNCH_SCRIPT_FILENAME = "launch_microtvm_api_server.sh"

_NAMED_ERRORS = {cls.__name__: cls for cls in (IoTimeoutError, TransportClosedError, UnsupportedTVMVersionError)}
_SERVER_ERROR_CODE = -32000
# How long a server gets to exit after EOF, then after SIGTERM, before the next step.
_EXIT_GRACE_SEC = 5.0


class ProjectAPIError(Exception):
    """Base of the client's own errors."""


class ServerNotFoundError(ProjectAPIError):
    """The directory holds no microtvm_api_server.py."""


class ConnectionShutdownError(ProjectAPIError):
    """The server went away (or the client was closed) before replying."""


class MalformedReplyError(ProjectAPIError):
    """The server's reply is not a JSON-RPC 2.0 reply to our request."""


class UnsupportedProtocolVersionError(ProjectAPIError):
    """The server speaks a Project API protocol version other than ours."""


class RPCError(ProjectAPIError):
    """An error reply: ``code`` (JSON-RPC), ``message`` (the server's words), ``data``."""

    def __init__(self, method: str, code: int, message: str, data=None):
        super().__init__(f"{method}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data

    @property
    def server_traceback(self) -> Optional[str]:
        return self.data.get("traceback") if isinstance(self.data, dict) else None


class ServerError(RPCError):
    """The handler failed (code -32000): ``message`` says why."""


def error_from_reply(method: str, error: dict) -> Exception:
    """The exception an error reply stands for."""
    code, message, data = error.get("code"), str(error.get("message", "")), error.get("data")
    if code == _SERVER_ERROR_CODE:
        named = _NAMED_ERRORS.get(message)
        if named is not None:
            detail = data.get("detail") if isinstance(data, dict) else None
            return named(detail or f"{method}: {message}")
        return ServerError(method, code, message, data)
    return RPCError(method, code, message, data)


class ProjectAPIClient:
    """Speaks the protocol over a pair of byte streams; owns ``process`` if given."""

    def __init__(self, read_file: BinaryIO, write_file: BinaryIO, process: Optional[subprocess.Popen] = None):
        self._read_file = read_file
        self._write_file = write_file
        self._process = process
        self._next_id = 1

    # ---- lifetime ----

    @property
    def is_shutdown(self) -> bool:
        return self._write_file.closed

    @property
    def process(self) -> Optional[subprocess.Popen]:
        return self._process

    def close(self, exit_grace_sec: Optional[float] = None) -> None:
        """Close the pipes and make sure the server process is gone (idempotent). The server gets
        ``exit_grace_sec`` (default _EXIT_GRACE_SEC) to exit at EOF before SIGTERM; both make it
        close its transport."""
        if exit_grace_sec is None:
            exit_grace_sec = _EXIT_GRACE_SEC
        for f in (self._write_file, self._read_file):
            try:
                f.close()
            except OSError:
                pass
        proc, self._process = self._process, None
        if proc is None:
            return
        try:
            proc.wait(timeout=exit_grace_sec)  # EOF makes a healthy server close its transport and exit
        except subprocess.TimeoutExpired:
            if exit_grace_sec:
                _LOG.warning("Project API server pid %d did not exit at EOF; terminating it", proc.pid)
            proc.terminate()
            try:
                proc.wait(timeout=_EXIT_GRACE_SEC)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    shutdown = close  # the legacy client's name

    def __enter__(self) -> "ProjectAPIClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # A client dropped without close() must still not leave its server running.
        if getattr(self, "_process", None) is not None:
            try:
                self.close()
            except Exception:  # pylint: disable=broad-except  (interpreter shutdown)
                pass

    # ---- the protocol ----

    def _request(self, method: str, params: dict):
        if self.is_shutdown:
            raise ConnectionShutdownError(f"{method}: the Project API connection is closed")
        request_id = self._next_id
        self._next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id})
        _LOG.debug("request -> %s", line)
        try:
            self._write_file.write(line.encode("utf-8") + b"\n")
            self._write_file.flush()
            reply_line = self._read_file.readline()
        except (BrokenPipeError, ConnectionResetError):
            reply_line = b""
        except BaseException:
            # Interrupted mid-request (Ctrl-C): the reply would arrive out of step with the next
            # request, so this connection is over. Stop the server now rather than after the
            # request it is busy with; SIGTERM makes it close its transport on the way out.
            self.close(exit_grace_sec=0)
            raise
        if not reply_line:
            raise ConnectionShutdownError(f"{method}: the Project API server exited without replying{self._exit_note()}")
        _LOG.debug("reply <- %s", reply_line.rstrip())
        try:
            reply = json.loads(reply_line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise MalformedReplyError(f"{method}: the server's reply is not JSON ({err}): {reply_line[:200]!r}")
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
            raise MalformedReplyError(f"{method}: not a JSON-RPC 2.0 reply: {reply_line[:200]!r}")
        if reply.get("id") != request_id:
            raise MalformedReplyError(f"{method}: reply id {reply.get('id')!r} does not match request id {request_id}")
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {"message": str(reply["error"])}
            raise error_from_reply(method, error)
        if "result" not in reply:
            raise MalformedReplyError(f"{method}: the reply has neither 'result' nor 'error'")
        return reply["result"]

    def _exit_note(self) -> str:
        if self._process is None:
            return ""
        try:
            code = self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return ""
        return f" (exit status {code}; its log is on stderr)"

    def server_info_query(self, tvm_version: str = "") -> dict:
        reply = self._request("server_info_query", {"tvm_version": tvm_version})
        if reply.get("protocol_version") != PROTOCOL_VERSION:
            raise UnsupportedProtocolVersionError(
                f"the Project API server speaks protocol version {reply.get('protocol_version')!r}; "
                f"this client speaks {PROTOCOL_VERSION}"
            )
        return reply

    def generate_project(self, model_library_format_path, standalone_crt_dir=None, project_dir=None,
                         options: Optional[dict] = None):
        if project_dir is None:
            raise TypeError("generate_project needs project_dir")
        # The server runs in its template's directory: relative paths mean the caller's cwd.
        return self._request("generate_project", {
            "model_library_format_path": os.path.abspath(model_library_format_path),
            "standalone_crt_dir": None if standalone_crt_dir is None else os.path.abspath(standalone_crt_dir),
            "project_dir": os.path.abspath(project_dir),
            "options": dict(options or {}),
        })

    def build(self, options: Optional[dict] = None):
        return self._request("build", {"options": dict(options or {})})

    def flash(self, options: Optional[dict] = None):
        return self._request("flash", {"options": dict(options or {})})

    def open_transport(self, options: Optional[dict] = None) -> dict:
        return self._request("open_transport", {"options": dict(options or {})})

    def close_transport(self):
        if self.is_shutdown:
            return None  # the server closed its transport when the connection ended
        return self._request("close_transport", {})

    def read_transport(self, n: int, timeout_sec: Optional[float]) -> dict:
        reply = self._request("read_transport", {"n": n, "timeout_sec": timeout_sec})
        return {"data": base64.b85decode(reply["data"])}

    def write_transport(self, data: bytes, timeout_sec: Optional[float]):
        return self._request("write_transport", {"data": base64.b85encode(bytes(data)).decode("ascii"),
                                                 "timeout_sec": timeout_sec})


def server_command(project_dir: Union[str, pathlib.Path]) -> list:
    """argv that starts the server of a template or project directory (before the fd flags)."""
    project_dir = pathlib.Path(project_dir)
    python_script = project_dir / SERVER_PYTHON_FILENAME
    launch_script = project_dir / SERVER_LAUNCH_SCRIPT_FILENAME
    if not python_script.is_file():
        raise ServerNotFoundError(
            f"{project_dir} has no {SERVER_PYTHON_FILENAME}: it is neither a template nor a generated project"
        )
    if launch_script.is_file():
        return [str(launch_script), str(python_script)]
    return [sys.executable, str(python_script)]


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread, so a server starts with it blocked (the mask is inherited):
    a Ctrl-C during its start-up stays pending until server.main ignores it, instead of killing it
    with a traceback. Here a Ctrl-C in the meantime is delayed, not lost."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def instantiate_from_dir(project_dir: Union[str, pathlib.Path], debug: bool = False) -> ProjectAPIClient:
    """Start the server in ``project_dir`` (cwd = that dir) and return a client that owns it."""
    project_dir = pathlib.Path(project_dir).resolve()
    argv = server_command(project_dir)
    server_read_fd, client_write_fd = os.pipe()
    client_read_fd, server_write_fd = os.pipe()
    argv += ["--read-fd", str(server_read_fd), "--write-fd", str(server_write_fd)] + (["--debug"] if debug else [])
    # The server imports project_api: make it find this very package even in an uninstalled checkout.
    env = dict(os.environ)
    package_root = str(pathlib.Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        with _sigint_blocked():
            process = subprocess.Popen(argv, cwd=project_dir, pass_fds=(server_read_fd, server_write_fd),
                                       stdin=subprocess.DEVNULL, env=env)
    except BaseException:
        for fd in (server_read_fd, client_write_fd, client_read_fd, server_write_fd):
            os.close(fd)
        raise
    os.close(server_read_fd)
    os.close(server_write_fd)
    return ProjectAPIClient(os.fdopen(client_read_fd, "rb"), os.fdopen(client_write_fd, "wb", buffering=0), process)


def instantiate_from_template(platform: str, template_dir: Optional[Union[str, pathlib.Path]] = None,
                              debug: bool = False) -> ProjectAPIClient:
    """Start a template's server: a named platform (``host``...) or an explicit template dir."""
    directory = pathlib.Path(template_dir) if template_dir is not None else resources.template_dir(platform)
    return instantiate_from_dir(directory, debug=debug)
