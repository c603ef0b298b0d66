"""The measuring interface of the tuner: a ``MeasureJob`` in, one ``MeasureResult`` per candidate out.

A job is one firmware image: the MLF of a *candidate image* (``image.py``) that holds several
candidates of one kernel and runs the one named by its ``selector`` input. A runner turns the MLF
into a project with a template's Project API server, builds and flashes it (once per image
content: ``MeasureJob.image_hash`` keys a cache), opens a session, and per candidate

  1. writes the selector and the layer's input, runs once and reads the output: every candidate
     must give exactly the output of candidate 0 (the untuned kernel), else it fails;
  2. times ``number`` runs ``repeat`` times with the device's own timer (``Session.time_evaluate``)
     and subtracts the timing of selector -1 (no candidate: the dispatch and the timer's own cost).

A board that hangs or resets shows as a timeout or a closed link: the runner re-flashes (closes the
transport, which stops an emulator, flashes, opens it again) and retries the candidate once; a
second failure is recorded as the candidate's failure and the job goes on with the next one.

Figures: ``cycles`` when the board's timer counts cycles; on a QEMU board the emulator runs with
``-icount shift=0`` (one instruction per nanosecond of virtual time), so seconds x 1e9 is an exact
instruction count (``unit`` says which). The board farm (issue 13) implements ``Runner`` with the
same job and result types; ``runner_for(args)`` picks the runner for a ``tvmc tune`` command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import pathlib
import shutil
from typing import Callable, Dict, List, Optional

import numpy as np

_LOG = logging.getLogger(__name__)

MIN_BATCH_SEC = 0.002  # shortest timed batch on a wall-clock timer
MAX_NUMBER = 100000
SELECTOR_INPUT = "tune_selector"  # the candidate image's int32[1] input naming the candidate to run
BASELINE_SELECTOR = -1  # runs no candidate: what is left is the dispatch, the timer and the run command


@dataclasses.dataclass
class MeasureJob:
    """One candidate image to measure.

    signature   the kernel's signature (``space.KernelTask.signature``): what the records are keyed by
    candidates  the knobs of each candidate, in selector order; candidates[0] is the untuned kernel
    mlf_path    the candidate image's Model Library Format archive
    image_hash  content hash of everything that makes the firmware (MLF bytes, template, options):
                an image with a known hash is never rebuilt nor re-flashed
    inputs      input tensors by name besides the selector (set by the runner); none for a candidate
                image, which makes its layer's inputs on the device
    number, repeat   as time_evaluate's: each figure is the minimum over ``repeat`` means of ``number`` runs
    """

    signature: str
    candidates: List[dict]
    mlf_path: pathlib.Path
    image_hash: str
    inputs: Dict[str, np.ndarray]
    number: int = 1
    repeat: int = 1
    # The outputs compared with candidate 0's (None: all); a candidate image checks its checksum.
    check_outputs: Optional[List[str]] = None


@dataclasses.dataclass
class MeasureResult:
    """One candidate's measurement. ``cycles`` is None exactly when ``error`` says why."""

    signature: str
    knobs: dict
    cycles: Optional[float]
    unit: str  # "instructions" (QEMU, -icount), "cycles" (a cycle counter), "ns" (any other timer)
    board: str
    error: Optional[str] = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass
class RunnerStats:
    builds: int = 0
    flashes: int = 0
    measurements: int = 0
    failures: int = 0


class Runner:
    """What the tuner needs from a place that measures: ``run(job)`` returns one result per
    candidate of the job, in order, and never raises for a failing candidate or board (a result
    with ``error`` instead). ``board`` names the board type the figures are for."""

    board: str = ""

    def __init__(self) -> None:
        self.stats = RunnerStats()
        self._board = None  # the catalogue entry of ``board`` (None: a template without catalogue boards)
        self._timer_unit: Optional[str] = None

    def _look_up_board(self, platform: str) -> None:
        from .. import boards

        try:
            self._board = boards.get_board(self.board, platform)
        except Exception:  # a template without catalogue boards: time in its timer's unit
            self._board = None

    @property
    def unit(self) -> str:
        """What the figures count: known once a board has reported its timer."""
        if self._timer_unit is not None:
            return self._timer_unit
        return "instructions" if self._is_qemu else "cycles"

    @property
    def _is_qemu(self) -> bool:
        emulator = (self._board.emulator or {}) if self._board is not None else {}
        return emulator.get("kind") == "qemu"

    def _note_timer(self, counts_cycles: bool) -> None:
        # QEMU -icount shift=0: one instruction per nanosecond; another wall-clock timer: nanoseconds.
        self._timer_unit = "cycles" if counts_cycles else ("instructions" if self._is_qemu else "ns")

    def run(self, job: MeasureJob) -> List[MeasureResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Stops whatever the runner started (sessions, emulators, servers)."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_hash(path: pathlib.Path, *extra: str) -> str:
    digest = hashlib.sha256(pathlib.Path(path).read_bytes())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest()[:20]


class _BoardLost(Exception):
    """The session with the board ended (timeout, closed link, reset): re-flash and retry."""


class LocalRunner(Runner):
    """Measures on a board attached to this machine (or emulated here) through the Project API
    server of any template: generate_project, build, flash, open_transport, then a ``Session``.

    ``project_options`` go to every Project API call (board=..., and template options); ``timeout``
    bounds each run on the device (seconds, on top of the transport's own session timeouts).
    ``work_dir/images/<image_hash>`` holds each image's project (the build cache across runs).
    ``on_measure(runner, job, index)`` is called before each candidate's measurement (tests use it
    to kill the board at a chosen moment)."""

    def __init__(self, template: str, project_options: dict, work_dir: pathlib.Path, timeout: float = 30.0,
                 template_dir: Optional[pathlib.Path] = None,
                 on_measure: Optional[Callable[["LocalRunner", MeasureJob, int], None]] = None):
        super().__init__()
        self.template = template
        self.template_dir = template_dir
        self.options = dict(project_options)
        self.board = str(self.options.get("board", template))
        self._look_up_board(template)
        self.work_dir = pathlib.Path(work_dir)
        self.timeout = timeout
        self.on_measure = on_measure
        self._api = None  # the generated project's server while an image is loaded
        self._session = None
        self._loaded_hash: Optional[str] = None
        self._inputs_sent = False
        self._broken_images: Dict[str, str] = {}  # image hash -> why it could not be built or loaded

    # -- figures ---------------------------------------------------------------------------
    def _figure(self, timing) -> float:
        self._note_timer(timing.cycles is not None)
        if timing.cycles is not None:
            return float(min(timing.cycles))
        return float(round(min(timing.results) * 1e9))

    # -- image life cycle ------------------------------------------------------------------
    @property
    def session(self):
        return self._session

    @property
    def server_process(self):
        """The generated project's server process (its children are the board's emulator)."""
        return self._api.process if self._api is not None else None

    def _project_dir(self, job: MeasureJob) -> pathlib.Path:
        return self.work_dir / "images" / job.image_hash

    def _build(self, job: MeasureJob) -> pathlib.Path:
        project = self._project_dir(job)
        if build_image(job, project, self.template, self.template_dir, self.options):
            self.stats.builds += 1
        return project

    def _flash_and_open(self, project: pathlib.Path) -> None:
        from .. import client
        from ..rpc.transport import ProjectAPITransport
        from ..session import Session

        self._close_image()
        self._api = client.instantiate_from_dir(project)
        self._api.flash(self.options)
        self.stats.flashes += 1
        session = Session(ProjectAPITransport(self._api, self.options), run_timeout_sec=self.timeout)
        session.open()
        self._session = session

    def _close_image(self) -> None:
        session, self._session = self._session, None
        api, self._api = self._api, None
        self._loaded_hash = None
        self._inputs_sent = False
        close_board(session, api)

    def _load(self, job: MeasureJob) -> None:
        if self._loaded_hash == job.image_hash and self._session is not None:
            return  # the board already runs this image: no flash
        project = self._build(job)
        self._flash_and_open(project)
        self._loaded_hash = job.image_hash

    def close(self) -> None:
        self._close_image()

    # -- measuring -------------------------------------------------------------------------
    def _timed(self, job: MeasureJob, selector: int):
        from ..errors import IoTimeoutError, SessionError, TransportClosedError
        from ..client import ProjectAPIError

        try:
            session = self._session
            session.set_input(SELECTOR_INPUT, np.array([selector], np.int32))
            if not self._inputs_sent:
                # Kernels write only their output: the layer's inputs stay on the device for
                # every candidate of the image (a slow link moves them once per flash).
                for name, value in job.inputs.items():
                    session.set_input(name, value)
                self._inputs_sent = True
            session.run()
            names = job.check_outputs or [t.name for t in session.get_info().outputs]
            outputs = [session.get_output(name) for name in names]
            timing = session.time_evaluate(job.number, job.repeat)
            if timing.cycles is None and not self._is_qemu:
                # A wall-clock timer (the host board, a board without a cycle counter): batches of
                # at least MIN_BATCH_SEC and at least three of them, as AutoTVM's min_repeat_ms.
                per_run = max(min(timing.results), 1e-9)
                number = max(job.number, min(MAX_NUMBER, math.ceil(MIN_BATCH_SEC / per_run)))
                timing = session.time_evaluate(number, max(job.repeat, 3))
            return outputs, self._figure(timing)
        except (IoTimeoutError, TransportClosedError, SessionError, ProjectAPIError, OSError) as err:
            raise _BoardLost(f"{type(err).__name__}: {err}") from None

    def _measure_once(self, job: MeasureJob, index: int, reference, baseline: float):
        outputs, figure = self._timed(job, index)
        if reference is not None and any(not np.array_equal(a, b) for a, b in zip(outputs, reference)):
            return None, outputs, "output differs from the untuned kernel's"
        return figure - baseline, outputs, None

    def run(self, job: MeasureJob) -> List[MeasureResult]:
        results: List[MeasureResult] = []
        reference = None
        baseline = None
        for index, knobs in enumerate(job.candidates):
            error, cycles, attempts = None, None, 1
            if job.image_hash in self._broken_images:
                error = self._broken_images[job.image_hash]  # built once, failed: not rebuilt per candidate
            elif index > 0 and reference is None:
                error = "not checked: the untuned kernel (the reference) failed in this image"
            for attempts in ((1, 2) if error is None else ()):
                try:
                    if self._session is None or self._loaded_hash != job.image_hash:
                        self._load(job)
                    if baseline is None:
                        _, baseline = self._timed(job, BASELINE_SELECTOR)
                    if self.on_measure is not None:
                        self.on_measure(self, job, index)
                    cycles, outputs, error = self._measure_once(job, index, reference, baseline)
                    if index == 0 and error is None:
                        reference = outputs
                    break
                except _BoardLost as lost:
                    error = f"board lost during the measurement ({lost})"
                    _LOG.info("%s candidate %d: %s; re-flashing", job.signature, index, error)
                    self._close_image()  # stops the emulator; the next attempt re-flashes
                except Exception as err:  # a build or generation failure: no retry helps
                    error = f"{type(err).__name__}: {err}"
                    self._broken_images[job.image_hash] = error
                    self._close_image()
                    break
            self.stats.measurements += 1
            if error is not None:
                self.stats.failures += 1
                cycles = None
            results.append(MeasureResult(job.signature, dict(knobs), cycles, self.unit, self.board, error, attempts))
        return results


def runner_for(args, work_dir: pathlib.Path) -> Runner:
    """The runner of a ``tvmc tune`` command line: the board farm's when ``--rpc-tracker`` is given
    (its module, issue 13, provides ``tracker_runner(args, work_dir)``), else a LocalRunner."""
    from ..cli import TVMCError

    if getattr(args, "rpc_tracker", None):
        try:
            from . import farm  # noqa: F401  (the board farm's TrackerRunner; not in every build)
        except ImportError:
            raise TVMCError("board farm: not available in this build (--rpc-tracker/--rpc-key need the "
                            "farm module, issue 13); drop them to tune on a local board") from None
        return farm.tracker_runner(args, work_dir)
    options = dict(getattr(args, "project_options", None) or {})
    return LocalRunner(args.platform, options, work_dir, timeout=args.timeout,
                       template_dir=getattr(args, "template_dir", None))


__all__ = ["MeasureJob", "MeasureResult", "Runner", "RunnerStats", "LocalRunner", "runner_for", "file_hash",
           "SELECTOR_INPUT", "BASELINE_SELECTOR"]


def build_image(job: MeasureJob, project: pathlib.Path, platform: str, template_dir: Optional[pathlib.Path],
                options: dict) -> bool:
    """Generate and build the job's image into ``project`` unless a finished build of the same
    content is there (the content hash names the folder). True when it built."""
    from .. import client

    firmware_stamp = project / ".tune-built"
    if firmware_stamp.is_file():
        return False  # same content: never rebuilt
    if project.exists():
        shutil.rmtree(project)  # an interrupted generation or build
    project.parent.mkdir(parents=True, exist_ok=True)
    template = client.instantiate_from_dir(template_dir) if template_dir is not None \
        else client.instantiate_from_template(platform)
    with template as api:
        api.generate_project(job.mlf_path, None, project, options)
    with client.instantiate_from_dir(project) as api:
        api.build(options)
    firmware_stamp.write_text(job.image_hash)
    return True


def close_board(session, api) -> None:
    """Close a board's session, then stop its project's server even when the session cannot close."""
    try:
        if session is not None:
            session.close()
    except Exception as err:  # the board may be gone already; the server must still stop
        _LOG.debug("closing the session: %s", err)
    finally:
        if api is not None:
            api.close()
