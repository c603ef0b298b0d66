"""The board server: one board registered with TVM's RPC tracker under a key, serving
flash-and-measure requests for it.

    python -m project_api.farm serve --tracker HOST:PORT --key KEY --board BOARD
                                     [--port /dev/ttyACM0 | --serial-number SN] [--rpc-port N]

It is TVM's own RPC server (``tvm.rpc.Server``, registered with the tracker as AutoTVM's were) with
the functions below registered in it. The tracker hands a client a session to a free board; the
client calls, in the session's own process (TVM forks one per session):

  ``mtp.farm.info()``                          JSON: board, platform, key, this server's address
  ``mtp.farm.has_image(hash)``                 1 when a built image with this content hash is cached here
  ``mtp.farm.load(hash, kind, payload, opts)``  flash the image and open a device session on it;
        kind "project": ``payload`` is a built project (.tar.gz) the client built;
        kind "mlf": ``payload`` is a Model Library Format archive, generated and built here;
        kind "": the image must be cached here (has_image)
  ``mtp.farm.measure(inputs_npz, number, repeat)``  set the inputs, run once, read the outputs,
        then ``Session.time_evaluate(number, repeat)``; JSON with the outputs by name (an .npz,
        base64) and the timings

Everything about the board goes through the Project API of its template (generate_project, build,
flash, open_transport) and ``project_api.session.Session``, exactly as ``tvmc micro`` and
``tvmc run --device micro`` do. A failing candidate is an answer (``error``), never an exception:
``link_lost`` says the device link died (the image is closed; loading it again re-flashes), the
board server itself dying shows to the client as a broken RPC session.

Built images are cached in ``--work-dir`` by content hash, across sessions: a client that asks for
an image the board already holds sends nothing and nothing is rebuilt.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import logging
import os
import pathlib
import shutil
import signal
import sys
import tarfile
import tempfile
import time
from typing import Dict, Optional

import numpy as np

from . import FarmError
from .address import parse_address
from ..tune.runner import close_board

_LOG = logging.getLogger("project_api.farm.board")

BUILT_STAMP = ".farm-built"  # written once an image's project is complete (generated and built)
TRACKER_LOST_SEC = 60.0  # TVM's server gives up reconnecting to a lost tracker after 60 s; so do we


@dataclasses.dataclass
class BoardConfig:
    """What one board server serves (picklable: it travels to TVM's server worker)."""

    board: str
    platform: str
    key: str
    host: str
    rpc_port: int
    work_dir: str
    project_options: Dict[str, object] = dataclasses.field(default_factory=dict)
    template_dir: Optional[str] = None
    run_timeout_sec: float = 30.0


def _link_errors():
    from ..client import ProjectAPIError
    from ..emulators.process import EmulatorError
    from ..errors import IoTimeoutError, SessionError, TransportClosedError

    return (IoTimeoutError, TransportClosedError, SessionError, ProjectAPIError, EmulatorError, OSError)


def pack_arrays(arrays: Dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def unpack_arrays(data: bytes) -> Dict[str, np.ndarray]:
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _extract(archive: bytes, dest: pathlib.Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
        try:
            tar.extractall(dest, filter="data")  # no absolute paths, links out or devices
        except TypeError:  # Python without extraction filters
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in pathlib.PurePath(member.name).parts:
                    raise FarmError(f"refusing the project archive: member {member.name!r} leaves the project")
            tar.extractall(dest)


def pack_project(project_dir: pathlib.Path) -> bytes:
    """A built project as the .tar.gz ``load(kind="project")`` takes (object files left out)."""
    buffer = io.BytesIO()
    project_dir = pathlib.Path(project_dir)
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(project_dir.rglob("*")):
            if path.is_file() and path.suffix not in (".o", ".d"):
                tar.add(path, arcname=str(path.relative_to(project_dir)), recursive=False)
    return buffer.getvalue()


class BoardService:
    """The board's state inside one TVM RPC session process: the loaded image and its session."""

    def __init__(self, config: BoardConfig):
        self.config = config
        self._api = None  # the loaded project's Project API client
        self._session = None
        self._loaded: Optional[str] = None

    # -- images ----------------------------------------------------------------------------
    def _images(self) -> pathlib.Path:
        path = pathlib.Path(self.config.work_dir) / "images"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def has_image(self, image_hash: str) -> bool:
        return (self._images() / _safe_name(image_hash) / BUILT_STAMP).is_file()

    def options(self, client_options: dict) -> dict:
        """The client's project options, with this board's own (board, port or serial) on top."""
        options = dict(client_options)
        options.update(self.config.project_options)
        options["board"] = self.config.board
        return options

    def _prepare(self, image_hash: str, kind: str, payload: bytes, options: dict) -> tuple:
        """The built project of ``image_hash`` (from the cache, the client's build, or built here);
        returns (project dir, what was done)."""
        from .. import client

        project = self._images() / _safe_name(image_hash)
        if (project / BUILT_STAMP).is_file():
            return project, "cached"
        if kind not in ("project", "mlf"):
            raise FarmError(f"image {image_hash} is not on board {self.config.board}: send it (kind 'project' or 'mlf')")
        # Built under a temporary parent, in a folder of the final name (Arduino names the sketch
        # after its folder), then moved into place: a killed session leaves no half image.
        scratch = pathlib.Path(tempfile.mkdtemp(prefix=".staging-", dir=self._images()))
        staging = scratch / project.name
        try:
            if kind == "project":
                staging.mkdir()
                _extract(payload, staging)
                done = "received"
            else:
                mlf = scratch / "model.tar"
                mlf.write_bytes(payload)
                if self.config.template_dir:
                    template = client.instantiate_from_dir(self.config.template_dir)
                else:
                    template = client.instantiate_from_template(self.config.platform)
                with template as api:
                    api.generate_project(mlf, None, staging, options)
                with client.instantiate_from_dir(staging) as api:
                    api.build(options)
                done = "built"
            (staging / BUILT_STAMP).write_text(image_hash)
            if project.exists():  # a half-written one from a session that was killed
                shutil.rmtree(project, ignore_errors=True)
            os.replace(staging, project)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return project, done

    def load(self, image_hash: str, kind: str, payload: bytes, client_options: dict) -> dict:
        from .. import client
        from ..rpc.transport import ProjectAPITransport
        from ..session import Session

        options = self.options(client_options)
        start = time.monotonic()
        try:
            project, done = self._prepare(image_hash, kind, payload, options)
        except Exception as err:
            return {"error": _one_line(err), "link_lost": False}
        prepared = time.monotonic()
        self.close()
        try:
            self._api = client.instantiate_from_dir(project)
            self._api.flash(options)
            session = Session(ProjectAPITransport(self._api, options), run_timeout_sec=self.config.run_timeout_sec)
            session.open()
        except _link_errors() as err:
            self.close()
            return {"error": _one_line(err), "link_lost": True}
        self._session = session
        self._loaded = image_hash
        info = session.get_info()
        _LOG.info("image %s %s and flashed on %s", image_hash, done, self.config.board)
        return {"image": image_hash, "done": done, "prepare_sec": prepared - start,
                "flash_sec": time.monotonic() - prepared,
                "inputs": [t.name for t in info.inputs], "outputs": [t.name for t in info.outputs]}

    def close(self) -> None:
        session, self._session = self._session, None
        api, self._api = self._api, None
        self._loaded = None
        close_board(session, api)

    # -- measuring ---------------------------------------------------------------------------
    def measure(self, inputs: Dict[str, np.ndarray], number: int, repeat: int) -> dict:
        if self._session is None:
            return {"error": "no image is loaded on this board: call mtp.farm.load first", "link_lost": True}
        session = self._session
        try:
            for name, value in inputs.items():
                session.set_input(name, value)
            session.run()
            outputs = {t.name: session.get_output(t.name) for t in session.get_info().outputs}
            timing = session.time_evaluate(number, repeat)
        except _link_errors() as err:
            from ..errors import DeviceError

            if isinstance(err, DeviceError):  # the device answered: the link is fine
                return {"error": _one_line(err), "link_lost": False}
            self.close()  # the next load re-flashes
            return {"error": _one_line(err), "link_lost": True}
        except Exception as err:
            return {"error": _one_line(err), "link_lost": False}
        return {"outputs": base64.b64encode(pack_arrays(outputs)).decode("ascii"),
                "results": list(timing.results), "cycles": None if timing.cycles is None else list(timing.cycles),
                "number": timing.number}

    def info(self) -> dict:
        return {"board": self.config.board, "platform": self.config.platform, "key": self.config.key,
                "server": f"{self.config.host}:{self.config.rpc_port}", "pid": os.getpid(),
                "loaded": self._loaded}


def _safe_name(image_hash: str) -> str:
    name = "".join(c for c in str(image_hash) if c.isalnum() or c in "-_.")
    if not name or name.startswith("."):
        raise FarmError(f"bad image hash {image_hash!r}: letters, digits, '-', '_' and '.' only")
    return name


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# ---- the functions TVM's RPC server serves ----------------------------------------------------


def register_functions(config: dict) -> None:
    """TVM's ``server_init_callback``: runs in the RPC server's worker before it forks sessions,
    so every session process has these functions and a fresh ``BoardService`` of its own."""
    import tvm_ffi

    service = BoardService(BoardConfig(**config))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s farm board %(message)s", stream=sys.stderr)

    def load(image_hash, kind, payload, options_json):
        return json.dumps(service.load(str(image_hash), str(kind), bytes(payload), json.loads(str(options_json))))

    def measure(inputs_npz, number, repeat):
        return json.dumps(service.measure(unpack_arrays(bytes(inputs_npz)), int(number), int(repeat)))

    tvm_ffi.register_global_func("mtp.farm.info", lambda: json.dumps(service.info()), override=True)
    tvm_ffi.register_global_func("mtp.farm.has_image", lambda h: int(service.has_image(str(h))), override=True)
    tvm_ffi.register_global_func("mtp.farm.load", load, override=True)
    tvm_ffi.register_global_func("mtp.farm.measure", measure, override=True)


# ---- python -m project_api.farm serve ----------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracker", required=True, metavar="HOST:PORT", help="the RPC tracker to register with")
    parser.add_argument("--key", required=True, help="the key clients ask the tracker for (e.g. the board type)")
    parser.add_argument("--board", required=True, help="the board's name in boards/boards.yaml (e.g. mps2_an386)")
    parser.add_argument("--platform", help="the template (default: the board's platform)")
    parser.add_argument("--template-dir", help="a template directory instead of the named one")
    attach = parser.add_mutually_exclusive_group()
    attach.add_argument("--port", dest="serial_port", metavar="DEVICE",
                        help="the board's serial port (the template's `port` option), e.g. /dev/ttyACM0")
    attach.add_argument("--serial-number", help="the board's USB serial number (the template's `serial_number` option)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address this server listens on and reports to the tracker (default 127.0.0.1; "
                             "on a farm host: its address on the farm's network)")
    parser.add_argument("--rpc-port", type=int, default=9090, help="the port this server listens on (default 9090)")
    parser.add_argument("--work-dir", help="built images cache (default: a temporary directory removed at exit)")
    parser.add_argument("--run-timeout", type=float, default=30.0,
                        help="seconds a run may take on the board before the link counts as lost (default 30)")
    parser.add_argument("--wait-tracker", type=float, default=0.0, metavar="SEC",
                        help="wait up to SEC seconds for the tracker to answer (default 0: it must be up)")
    parser.add_argument("--project-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a project option this board always gets (repeatable)")


def _default_signals() -> None:
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    except ValueError:  # not the child's main thread (not with TVM's fork): nothing to undo
        pass


def serve(args) -> int:
    """Register the board and serve until SIGTERM/SIGINT, or until the tracker is gone for 60 s."""
    from .. import boards
    from .processes import stop_descendants, tracker_answers

    tracker = parse_address(args.tracker, "--tracker")
    try:
        board = boards.get_board(args.board, args.platform)
    except boards.UnknownBoardError as err:
        raise FarmError(str(err).strip("'\"")) from None
    if args.serial_port and not board.is_emulated and not os.path.exists(args.serial_port):
        raise FarmError(f"--port {args.serial_port}: no such device; is board {board.name} plugged in?")
    from tvm.rpc import server as rpc_server  # imported before the tracker is waited for: both take seconds

    deadline = time.monotonic() + max(args.wait_tracker, 0.0)
    while not tracker_answers(tracker):
        if time.monotonic() >= deadline:
            raise FarmError(f"cannot reach an RPC tracker at {tracker}: start it first "
                            f"(python -m project_api.farm tracker --host {tracker.host} --port {tracker.port})")
        time.sleep(0.2)
    options = {}
    for item in args.project_option:
        name, sep, value = item.partition("=")
        if not sep:
            raise FarmError(f"--project-option {item!r}: give NAME=VALUE")
        options[name] = value
    if args.serial_port:
        options["port"] = args.serial_port
    if args.serial_number:
        options["serial_number"] = args.serial_number
    own_work_dir = args.work_dir is None
    work_dir = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix=f"farm-{board.name}-"))
    config = BoardConfig(board=board.name, platform=board.platform, key=args.key, host=args.host,
                         rpc_port=args.rpc_port, work_dir=str(work_dir), project_options=options,
                         template_dir=args.template_dir, run_timeout_sec=args.run_timeout)

    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A session process (forked by TVM's listen thread) must die on SIGTERM, not set our flag.
    os.register_at_fork(after_in_child=_default_signals)
    try:
        # TVM's RPC server in this process: what ``tvm.rpc.Server`` runs in the worker process
        # it spawns (one TVM import and one process fewer per board); it forks a process per session.
        register_functions(dataclasses.asdict(config))
        server = rpc_server.PopenRPCServerState(args.host, args.rpc_port, args.rpc_port + 1,
                                                tracker_addr=(tracker.host, tracker.port), key=args.key,
                                                silent=True)
        print(f"farm: board {board.name} ({board.platform}) serves key {args.key!r} on {args.host}:{server.port}, "
              f"registered with the tracker at {tracker}", file=sys.stderr, flush=True)
        lost_since = None
        while not stopping:
            time.sleep(1.0)
            if not server.thread.is_alive():
                raise FarmError(f"TVM's RPC server thread stopped (the tracker at {tracker} refused it?)")
            if tracker_answers(tracker):
                lost_since = None
            elif lost_since is None:
                lost_since = time.monotonic()
            elif time.monotonic() - lost_since > TRACKER_LOST_SEC:
                raise FarmError(f"the RPC tracker at {tracker} is gone for {TRACKER_LOST_SEC:.0f} s: stopping")
    except ValueError as err:  # TVM: cannot bind
        raise FarmError(f"cannot listen on {args.host}:{args.rpc_port}: {err}") from None
    finally:
        # TVM's session processes, their Project API servers and emulators.
        stop_descendants()
        if own_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(f"farm: board {board.name} stopped", file=sys.stderr, flush=True)
    return 0
