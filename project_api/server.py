"""The Project API server framework: every template's ``microtvm_api_server.py`` is written on it.

JSON-RPC 2.0 over two file descriptors (``--read-fd`` / ``--write-fd``), one JSON object per
line, protocol version 1 — the wire of TVM's microTVM Project API (docs/project-api.md), so
TVM's own client can drive our servers. Names follow the legacy ``tvm.micro.project_api.server``:
a legacy server ports by changing its import.

What the framework does so handlers need not: it validates every request and replies with the
JSON-RPC error code for what is wrong (and keeps serving after a malformed line), converts the
``options`` dict to the declared option types (tvmc sends strings), fills in defaults, drops
unknown keys and checks ``choices`` and ``required`` before a handler method runs, encodes
transport bytes as Base85, and maps the named errors onto the wire.
"""

from __future__ import annotations

import abc
import argparse
import base64
import binascii
import enum
import json
import logging
import os
import pathlib
import signal
import sys
import traceback
from typing import Any, BinaryIO, Callable, List, NamedTuple, Optional, Sequence, Tuple

from . import PROTOCOL_VERSION
from .errors import EmulatorError, IoTimeoutError, TransportClosedError, UnsupportedTVMVersionError
# Options are defined in project_api.options; re-exported here under the legacy names.
from .options import OPTION_TYPES, OptionError, Options, ProjectOption, default_project_options
from .options import resolve_options as _resolve_options
# One definition shared with the transports (seconds; 0 = wait forever).
from .rpc.transport import TransportTimeouts

__all__ = [
    "ErrorCode",
    "IoTimeoutError",
    "JSONRPCError",
    "NAMED_ERRORS",
    "OPTION_TYPES",
    "PROTOCOL_VERSION",
    "ProjectAPIHandler",
    "ProjectAPIServer",
    "ProjectOption",
    "ServerError",
    "ServerInfo",
    "TransportClosedError",
    "TransportHandler",
    "TransportTimeouts",
    "UnsupportedTVMVersionError",
    "default_project_options",
    "main",
]

_LOG = logging.getLogger(__name__)

# Errors that travel by class name: the reply's message is exactly the name (the legacy client
# rebuilds them that way) and the human-readable detail goes in data["detail"].
NAMED_ERRORS = (IoTimeoutError, TransportClosedError, UnsupportedTVMVersionError)

class ErrorCode(enum.IntEnum):
    SERVER_ERROR = -32000  # the handler failed; message says why
    PARSE_ERROR = -32700  # the line is not JSON (or not UTF-8)
    INVALID_REQUEST = -32600  # JSON, but not a JSON-RPC 2.0 request object
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602  # missing, extra or mistyped params, or bad option values
    INTERNAL_ERROR = -32603  # the handler returned something the framework cannot send


class ServerError(Exception):
    """A failure the user should read (raise it from a handler): replies SERVER_ERROR with
    ``message`` as given."""

    def __init__(self, message: str = "ServerError"):
        super().__init__(message)  # keyword `message=` too, as legacy servers wrote it


class JSONRPCError(Exception):
    """A protocol-level error reply (bad request, params, method ...)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ServerInfo(NamedTuple):
    platform_name: str
    is_template: bool
    model_library_format_path: Optional[pathlib.Path]  # None (or "") for a template
    project_options: List[ProjectOption]


class ProjectAPIHandler(metaclass=abc.ABCMeta):
    """What a template implements. Methods receive typed, validated arguments (see module doc)."""

    @abc.abstractmethod
    def server_info_query(self, tvm_version: str) -> ServerInfo:
        """Describe the server; raise UnsupportedTVMVersionError to refuse a client."""

    @abc.abstractmethod
    def generate_project(self, model_library_format_path: pathlib.Path, standalone_crt_dir: Optional[pathlib.Path],
                         project_dir: pathlib.Path, options: dict) -> None:
        """Create ``project_dir`` (absent or empty) from the MLF; standalone_crt_dir is unused by ours."""

    @abc.abstractmethod
    def build(self, options: dict) -> None:
        ...

    @abc.abstractmethod
    def flash(self, options: dict) -> None:
        ...

    @abc.abstractmethod
    def open_transport(self, options: dict) -> TransportTimeouts:
        ...

    @abc.abstractmethod
    def close_transport(self) -> None:
        """Idempotent: a no-op when no transport is open (the framework also calls it at exit)."""

    @abc.abstractmethod
    def read_transport(self, n: int, timeout_sec: Optional[float]) -> bytes:
        """Return 1..n bytes; raise IoTimeoutError when none arrives in time, TransportClosedError
        when the link is gone."""

    @abc.abstractmethod
    def write_transport(self, data: bytes, timeout_sec: Optional[float]) -> None:
        """Write all of ``data`` or raise."""

    def project_options(self) -> List[ProjectOption]:
        """The options the framework validates against. The default asks server_info_query;
        override it if server_info_query refuses some TVM versions."""
        return list(self.server_info_query("").project_options)


class TransportHandler(ProjectAPIHandler):
    """A ProjectAPIHandler whose transport is a ``project_api.rpc.transport.Transport``, optionally
    fed by a device process that must stop with it (an emulator: QemuMachine, SimavrMachine).

    It implements close/read/write_transport; a template's open_transport ends with
    ``return self.attach_transport(make_transport, device)``.
    """

    # Class-level defaults: subclasses need not call __init__.
    _transport = None
    _device = None

    @property
    def device(self):
        """The device process started by the open transport, or None."""
        return self._device

    def attach_transport(self, make_transport: Callable[[], Any], device=None,
                         user_errors: Tuple[type, ...] = (EmulatorError,)) -> TransportTimeouts:
        """Close what is open, start ``device`` (if any), then open ``make_transport()`` (called
        once the device runs, so it may use ``device.serial_url``) and keep both until
        close_transport. On failure, stop what was started; an error of a ``user_errors`` class
        is reported as ServerError with its message, anything else propagates."""
        self.close_transport()
        try:
            if device is not None:
                device.start()
            transport = make_transport()
            transport.open()
        except BaseException as err:
            if device is not None:
                device.stop()
            if isinstance(err, user_errors):
                raise ServerError(str(err)) from err
            raise
        self._transport, self._device = transport, device
        return transport.timeouts

    def close_transport(self) -> None:
        transport, self._transport = self._transport, None
        device, self._device = self._device, None
        try:
            if transport is not None:
                transport.close()
        finally:
            if device is not None:
                device.stop()

    def transport_closed_error(self, err: TransportClosedError) -> TransportClosedError:
        """Hook: the error to report when the link is gone (or was never opened). Override to say
        why, e.g. that the emulator exited with a status."""
        return err

    def _require_transport(self):
        if self._transport is None:
            raise TransportClosedError("the transport is not open (call open_transport first)")
        return self._transport

    def read_transport(self, n: int, timeout_sec: Optional[float]) -> bytes:
        try:
            return self._require_transport().read(n, timeout_sec)
        except TransportClosedError as err:
            raise self.transport_closed_error(err) from None

    def write_transport(self, data: bytes, timeout_sec: Optional[float]) -> None:
        try:
            self._require_transport().write(data, timeout_sec)
        except TransportClosedError as err:
            raise self.transport_closed_error(err) from None


# ---- request validation --------------------------------------------------------------------------

# Param validators return the value the handler gets, or raise JSONRPCError(INVALID_PARAMS).
def _want(kind, predicate):
    def check(method, name, value):
        if not predicate(value):
            raise JSONRPCError(
                ErrorCode.INVALID_PARAMS, f"method {method}: parameter '{name}' must be {kind}, got {value!r:.80}"
            )
        return value

    return check


_is_str = _want("a string", lambda v: isinstance(v, str))
_is_options = _want("an object (the options dict)", lambda v: isinstance(v, dict))
# Bounds that keep values inside what select(), os.read() and a bytes buffer take: a larger
# timeout is "forever" (null says that), a larger n than one read can return is no request.
MAX_TIMEOUT_SEC = 1e7
MAX_READ_N = 2**31 - 1
# read_transport returns 1..n bytes, so the framework may ask the handler for fewer: this many at
# most, so a client's large n never makes a transport allocate a buffer of that size.
READ_TRANSPORT_CHUNK = 1 << 20

_is_timeout = _want(
    f"a number of seconds 0..{MAX_TIMEOUT_SEC:g} or null (wait forever)",
    lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= MAX_TIMEOUT_SEC),
)
_is_count = _want(f"an integer 1..{MAX_READ_N} (an integer >= 1 that one read can return)",
                  lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_READ_N)


def _is_path(method, name, value):
    return pathlib.Path(_is_str(method, name, value))


def _is_optional_path(method, name, value):
    return None if value is None else _is_path(method, name, value)


def _is_base85(method, name, value):
    try:
        return base64.b85decode(_is_str(method, name, value))
    except (ValueError, binascii.Error) as err:
        raise JSONRPCError(ErrorCode.INVALID_PARAMS, f"method {method}: parameter '{name}' is not Base85: {err}")


# method -> {param: validator}, in the order the handler takes them.
METHOD_PARAMS = {
    "server_info_query": {"tvm_version": _is_str},
    "generate_project": {
        "model_library_format_path": _is_path,
        "standalone_crt_dir": _is_optional_path,
        "project_dir": _is_path,
        "options": _is_options,
    },
    "build": {"options": _is_options},
    "flash": {"options": _is_options},
    "open_transport": {"options": _is_options},
    "close_transport": {},
    "read_transport": {"n": _is_count, "timeout_sec": _is_timeout},
    "write_transport": {"data": _is_base85, "timeout_sec": _is_timeout},
}


def resolve_options(method: str, declared: Sequence[ProjectOption], given: dict) -> Options:
    """options.resolve_options, its OptionError as the INVALID_PARAMS reply."""
    try:
        return _resolve_options(method, declared, given)
    except OptionError as err:
        raise JSONRPCError(ErrorCode.INVALID_PARAMS, str(err)) from None


# ---- the server ----------------------------------------------------------------------------------


class ProjectAPIServer:
    """Serves one request at a time, one reply per request line, until EOF."""

    def __init__(self, read_file: BinaryIO, write_file: BinaryIO, handler: ProjectAPIHandler):
        self._read_file = read_file
        self._write_file = write_file
        self._handler = handler

    def serve_forever(self) -> None:
        try:
            while self.serve_one_request():
                pass
        except BrokenPipeError:
            _LOG.info("client closed the reply pipe; stopping")
        finally:
            # The client is gone: stop whatever open_transport started (a device process, QEMU).
            try:
                self._handler.close_transport()
            except Exception:  # pylint: disable=broad-except
                _LOG.exception("close_transport at exit failed")

    def serve_one_request(self) -> bool:
        """Read one line and reply to it; False at EOF."""
        line = self._read_file.readline()
        if not line:
            return False
        if not line.strip():
            return True  # blank lines are not requests; nothing to answer
        _LOG.debug("request <- %s", line.rstrip())
        request_id = None
        try:
            request = self._parse(line)
            request_id = self._request_id(request)
            self._validate(request)
            result = self._dispatch(request)
        except JSONRPCError as err:
            self._write_error(request_id, err.code, err.message)
        except NAMED_ERRORS as err:
            self._write_error(request_id, ErrorCode.SERVER_ERROR, type(err).__name__, err)
        except ServerError as err:
            self._write_error(request_id, ErrorCode.SERVER_ERROR, str(err) or "ServerError", err)
        except Exception as err:  # pylint: disable=broad-except
            # The reply carries the traceback (data.traceback); on stderr it is for --debug only,
            # so a user reads the client's one line, not 30 lines of a server's insides.
            _LOG.debug("handler failed", exc_info=True)
            message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            self._write_error(request_id, ErrorCode.SERVER_ERROR, message, err)
        else:
            self._write({"jsonrpc": "2.0", "id": request_id, "result": result})
        return True

    @staticmethod
    def _parse(line: bytes) -> Any:
        try:
            return json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise JSONRPCError(ErrorCode.PARSE_ERROR, f"request is not a UTF-8 JSON line: {err}")
        except RecursionError:
            raise JSONRPCError(ErrorCode.PARSE_ERROR, "request is nested too deeply to parse "
                                                      "(no Project API request nests more than a few levels)") from None

    @staticmethod
    def _request_id(request: Any):
        """The id to echo: the request's, when it has a usable one (so clients can match the
        error reply), else null."""
        if not isinstance(request, dict):
            raise JSONRPCError(ErrorCode.INVALID_REQUEST, f"request must be a JSON object, got {type(request).__name__}")
        request_id = request.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
            raise JSONRPCError(ErrorCode.INVALID_REQUEST, f"request 'id' must be a string, integer or null, got {request_id!r}")
        return request_id

    @staticmethod
    def _validate(request: dict) -> None:
        if request.get("jsonrpc") != "2.0":
            raise JSONRPCError(ErrorCode.INVALID_REQUEST, f"request 'jsonrpc' must be \"2.0\", got {request.get('jsonrpc')!r}")
        if not isinstance(request.get("method"), str):
            raise JSONRPCError(ErrorCode.INVALID_REQUEST, f"request 'method' must be a string, got {request.get('method')!r}")
        if not isinstance(request.get("params", {}), dict):
            raise JSONRPCError(ErrorCode.INVALID_REQUEST, "request 'params' must be an object (params by name)")

    def _dispatch(self, request: dict) -> Any:
        method = request["method"]
        if method not in METHOD_PARAMS:
            raise JSONRPCError(
                ErrorCode.METHOD_NOT_FOUND, f"no method '{method}'; methods: {', '.join(METHOD_PARAMS)}"
            )
        validators = METHOD_PARAMS[method]
        given = request.get("params", {})
        missing = [name for name in validators if name not in given]
        if missing:
            raise JSONRPCError(ErrorCode.INVALID_PARAMS, f"method {method}: missing parameter(s) {', '.join(missing)}")
        extra = sorted(set(given) - set(validators))
        if extra:
            raise JSONRPCError(ErrorCode.INVALID_PARAMS, f"method {method}: unexpected parameter(s) {', '.join(extra)}")
        args = {name: check(method, name, given[name]) for name, check in validators.items()}
        if "options" in args:
            args["options"] = resolve_options(method, self._handler.project_options(), args["options"])
        return getattr(self, f"_call_{method}")(**args)

    # One adapter per method: calls the handler and checks what it returned.

    def _call_server_info_query(self, tvm_version):
        info = self._handler.server_info_query(tvm_version)
        if not isinstance(info, ServerInfo):
            raise JSONRPCError(ErrorCode.INTERNAL_ERROR, f"server_info_query returned {type(info).__name__}, not ServerInfo")
        mlf_path = info.model_library_format_path
        return {
            "platform_name": info.platform_name,
            "is_template": bool(info.is_template),
            "model_library_format_path": "" if mlf_path is None else str(mlf_path),
            "project_options": [o.to_json() for o in info.project_options],
            "protocol_version": PROTOCOL_VERSION,
        }

    def _call_generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        self._handler.generate_project(model_library_format_path, standalone_crt_dir, project_dir, options)

    def _call_build(self, options):
        self._handler.build(options)

    def _call_flash(self, options):
        self._handler.flash(options)

    def _call_open_transport(self, options):
        timeouts = self._handler.open_transport(options)
        if not isinstance(timeouts, TransportTimeouts):
            raise JSONRPCError(ErrorCode.INTERNAL_ERROR, f"open_transport returned {type(timeouts).__name__}, not TransportTimeouts")
        return {"timeouts": timeouts._asdict()}

    def _call_close_transport(self):
        self._handler.close_transport()

    def _call_read_transport(self, n, timeout_sec):
        data = self._handler.read_transport(min(n, READ_TRANSPORT_CHUNK), timeout_sec)
        if not isinstance(data, (bytes, bytearray)):
            raise JSONRPCError(ErrorCode.INTERNAL_ERROR, f"read_transport returned {type(data).__name__}, not bytes")
        if not 1 <= len(data) <= n:
            raise JSONRPCError(ErrorCode.INTERNAL_ERROR, f"read_transport returned {len(data)} bytes; want 1..{n}")
        return {"data": base64.b85encode(bytes(data)).decode("ascii")}

    def _call_write_transport(self, data, timeout_sec):
        self._handler.write_transport(data, timeout_sec)

    # ---- replies ----

    def _write_error(self, request_id, code, message, exc: Optional[BaseException] = None):
        error = {"code": int(code), "message": message, "data": None}
        if exc is not None:
            error["data"] = {"traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                             "detail": str(exc)}
        self._write({"jsonrpc": "2.0", "id": request_id, "error": error})

    def _write(self, reply: dict) -> None:
        line = json.dumps(reply)
        _LOG.debug("reply -> %s", line)
        self._write_file.write(line.encode("utf-8") + b"\n")
        self._write_file.flush()


def main(handler: ProjectAPIHandler, argv: Optional[List[str]] = None) -> None:
    """Entry point of a template's microtvm_api_server.py: serve on the given fds until EOF."""
    parser = argparse.ArgumentParser(description="microtvm-projects Project API server")
    parser.add_argument("--read-fd", type=int, required=True, help="fd to read requests from")
    parser.add_argument("--write-fd", type=int, required=True, help="fd to write replies to")
    parser.add_argument("--debug", action="store_true", help="log every request and reply to stderr")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

    # SIGTERM (the client's teardown) unwinds normally so serve_forever closes the transport.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C reaches the whole foreground process group, this server too; it belongs to the
    # client, which then closes this server (EOF or SIGTERM). Ignored here, it is ignored by what
    # the handler starts as well (a host device program), so nothing dies mid-reply. Our client
    # starts servers with SIGINT blocked (a Ctrl-C during start-up stays pending): ignoring it
    # discards one pending, then it can be unblocked.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    with os.fdopen(args.read_fd, "rb") as read_file, os.fdopen(args.write_fd, "wb", buffering=0) as write_file:
        ProjectAPIServer(read_file, write_file, handler).serve_forever()
