"""``TrackerRunner``: the tuner's ``Runner`` (project_api.tune.runner) on the boards of a farm.

    tvmc tune model.tflite --tuning-records r.jsonl --rpc-tracker 127.0.0.1:9190 --rpc-key mps2_an386

A ``MeasureJob`` is one candidate image (several candidates of one kernel behind a selector).
The runner builds the image once, here, with the board's template through the Project API (the
build cache is ``work_dir/images/<image_hash>``, as the LocalRunner's), and spreads the job's
candidates over every free board under the key (``BoardPool``): each board is sent the built
project once (``mtp.farm.load``; a board that already holds the image is sent nothing), measures
its timing baseline (selector -1) once per image, and then one candidate after another; a free
board takes a candidate of the image it runs, else of an image nobody has started, else helps the
image with most candidates left (``run_many``: images in parallel, one flash each). With
``build="board"`` the boards build from the MLF themselves (hosts without a toolchain here).

The figures follow the LocalRunner exactly: per candidate, the minimum over ``repeat`` of the
mean of ``number`` runs on the device's timer, minus the baseline; every candidate's outputs must
equal candidate 0's (the untuned kernel), checked here once all are in, so it does not matter
which board ran candidate 0. A link that dies on a board (a hung or reset device) re-flashes that
board and retries the candidate once, as the LocalRunner does; a board that vanishes (its server
or host is gone) is marked lost and its candidate is measured on another board, which changes no
figure: records are the same as a run where nothing failed (``attempts`` counts tries on the
board that measured). ``run_many(jobs)`` spreads the candidates of several images at once.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import pathlib
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..tune.runner import BASELINE_SELECTOR, SELECTOR_INPUT, MeasureJob, MeasureResult, Runner, build_image
from . import FarmError
from .address import Address, parse_address
from .board import pack_arrays, pack_project, unpack_arrays
from .pool import BoardPool, RemoteBoard

_LOG = logging.getLogger("project_api.farm")


@dataclasses.dataclass
class Measurement:
    """What the runner saw for one candidate (beyond the record): who measured it, the outputs."""

    signature: str
    index: int
    knobs: dict
    cycles: Optional[float]
    error: Optional[str]
    output_digest: Optional[str]  # sha256 of the outputs' bytes, in output order
    measured_on: Optional[str]  # board@server


def figure(reply: dict) -> float:
    """LocalRunner._figure on a board's reply: cycles when the timer counts them, else whole
    nanoseconds (QEMU -icount shift=0: instructions)."""
    if reply.get("cycles") is not None:
        return float(min(reply["cycles"]))
    return float(round(min(reply["results"]) * 1e9))


def _outputs(reply: dict, names: Optional[List[str]]) -> List[np.ndarray]:
    """The outputs the job compares (``check_outputs``; all when None), in that order."""
    arrays = unpack_arrays(base64.b64decode(reply["outputs"]))
    return [arrays[name] for name in (names or list(arrays))]


def _digest(outputs: List[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in outputs:
        digest.update(str(array.dtype).encode() + str(array.shape).encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class _ImageFailed(Exception):
    """The image cannot be loaded on this board for a reason another board would share (it does
    not build, does not fit): the candidate fails, no board is blamed."""


class TrackerRunner(Runner):
    def __init__(self, tracker, key: str, work_dir: pathlib.Path, *, project_options: Optional[dict] = None,
                 platform: Optional[str] = None, template_dir: Optional[pathlib.Path] = None,
                 timeout: float = 30.0, build: str = "client", max_boards: Optional[int] = None,
                 acquire_timeout_sec: float = 30.0, log: Optional[Callable[[str], None]] = None,
                 on_measure: Optional[Callable[["TrackerRunner", RemoteBoard, MeasureJob, int], None]] = None):
        super().__init__()
        if build not in ("client", "board"):
            raise FarmError(f"build={build!r}: 'client' (build here, send the image) or 'board' (send the MLF)")
        self.tracker = tracker if isinstance(tracker, Address) else parse_address(tracker)
        self.key = key
        self.work_dir = pathlib.Path(work_dir)
        self.options = dict(project_options or {})
        self.template_dir = template_dir
        self.timeout = timeout
        self.build = build
        self.history: List[Measurement] = []
        # Wall time of loads (send + flash + session start) and measurements so far: when one
        # more board should join an image (choose() in run_many).
        self._durations: Dict[str, List[float]] = {"load": [], "measure": []}
        # Called on the board's worker thread before each candidate's measurement (as the
        # LocalRunner's on_measure: tests kill a board at a chosen moment).
        self.on_measure = on_measure
        # A call covers a flash and, with build="board", a build: generous, but bounded.
        self.pool = BoardPool(self.tracker, key, max_boards=max_boards, acquire_timeout_sec=acquire_timeout_sec,
                              call_timeout_sec=max(300.0, 10 * timeout), log=log)
        first = self.pool.acquire()
        kinds = sorted({b.board for b in first})
        if len(kinds) > 1:
            self.pool.close()
            raise FarmError(f"key {key!r} serves different boards ({', '.join(kinds)}): one key must be one board "
                            "type, or the figures mix boards")
        self.board = kinds[0]
        self.platform = platform or first[0].platform
        self.options["board"] = self.board
        self._look_up_board(self.platform)

    @property
    def boards_used(self) -> List[str]:
        return [b.name for b in self.pool.boards]

    # -- images ------------------------------------------------------------------------------
    def _built_project(self, job: MeasureJob) -> pathlib.Path:
        """The job's image built here once (cached by content hash, like the LocalRunner's)."""
        project = self.work_dir / "images" / job.image_hash
        if build_image(job, project, self.platform, self.template_dir, self.options):
            self.stats.builds += 1
        return project

    def _payload(self, job: MeasureJob, cache: Dict[str, Tuple[str, bytes]]) -> Tuple[str, bytes]:
        if job.image_hash not in cache:
            if self.build == "board":
                cache[job.image_hash] = ("mlf", pathlib.Path(job.mlf_path).read_bytes())
            else:
                cache[job.image_hash] = ("project", pack_project(self._built_project(job)))
        return cache[job.image_hash]

    def _mean(self, what: str) -> float:
        """Mean wall time of a load or a measurement; before any: a load counts as 5 measurements."""
        durations = self._durations[what][-50:]
        if durations:
            return sum(durations) / len(durations)
        return 5.0 if what == "load" else 1.0

    def _load(self, board: RemoteBoard, job: MeasureJob, payloads) -> None:
        if board.loaded == job.image_hash:
            return
        started = time.monotonic()
        board.loaded = None
        if int(board.call("mtp.farm.has_image", job.image_hash)):
            kind, payload = "", b""
        else:
            kind, payload = payloads[job.image_hash]
        reply = json.loads(board.call("mtp.farm.load", job.image_hash, kind, bytearray(payload),
                                      json.dumps(self.options)))
        if reply.get("error"):
            if reply.get("link_lost"):
                raise _LinkLost(reply["error"])
            raise _ImageFailed(reply["error"])
        board.loaded = job.image_hash
        board.state.pop(("baseline", job.image_hash), None)
        self._durations["load"].append(time.monotonic() - started)
        with self.pool._lock:
            self.stats.flashes += 1

    def _measure(self, board: RemoteBoard, job: MeasureJob, selector: int) -> dict:
        inputs = {SELECTOR_INPUT: np.array([selector], np.int32), **job.inputs}
        started = time.monotonic()
        reply = json.loads(board.call("mtp.farm.measure", bytearray(pack_arrays(inputs)), job.number, job.repeat))
        self._durations["measure"].append(time.monotonic() - started)
        if reply.get("error"):
            if reply.get("link_lost"):
                board.loaded = None
                raise _LinkLost(reply["error"])
            raise _CandidateFailed(reply["error"])
        return reply

    def _candidate(self, board: RemoteBoard, job: MeasureJob, index: int, payloads) -> dict:
        """Measure candidate ``index`` on ``board``: {"cycles", "outputs", "error", "attempts"}.
        A dead link is retried once after a re-flash; BoardLost goes up to the pool."""
        error = None
        for attempts in (1, 2):
            try:
                self._load(board, job, payloads)
                baseline = board.state.get(("baseline", job.image_hash))
                if baseline is None:
                    baseline = figure(self._measure(board, job, BASELINE_SELECTOR))
                    board.state[("baseline", job.image_hash)] = baseline
                if self.on_measure is not None:
                    self.on_measure(self, board, job, index)
                reply = self._measure(board, job, index)
                self._note_timer(reply.get("cycles") is not None)
                return {"cycles": figure(reply) - baseline,
                        "outputs": _outputs(reply, getattr(job, "check_outputs", None)), "error": None,
                        "attempts": attempts, "board": board.name}
            except _LinkLost as lost:
                error = f"board lost during the measurement ({lost})"
                _LOG.info("%s candidate %d on %s: %s; re-flashing", job.signature, index, board.name, error)
            except (_ImageFailed, _CandidateFailed) as failed:
                return {"cycles": None, "outputs": None, "error": str(failed), "attempts": attempts,
                        "board": board.name}
        return {"cycles": None, "outputs": None, "error": error, "attempts": 2, "board": board.name}

    # -- the Runner interface ------------------------------------------------------------------
    def run(self, job: MeasureJob) -> List[MeasureResult]:
        return self.run_many([job])[0]

    def run_many(self, jobs: Sequence[MeasureJob]) -> List[List[MeasureResult]]:
        """Every candidate of every job, spread over the boards; results per job, in order."""
        payloads: Dict[str, Tuple[str, bytes]] = {}
        tasks, failed_jobs = [], {}
        for job_index, job in enumerate(jobs):
            try:
                self._payload(job, payloads)  # built once, before any board waits for it
            except Exception as err:  # a build or generation failure: no board would do better
                failed_jobs[job_index] = " ".join(f"{type(err).__name__}: {err}".split())
                continue
            tasks += [(job_index, index) for index in range(len(job.candidates))]

        def work(board, task):
            job_index, index = task
            return self._candidate(board, jobs[job_index], index, payloads)

        claimed: Dict[str, set] = {}  # image hash -> the boards (names) that took one of its candidates

        def choose(board, pending):
            """Fewest flashes: a candidate of the image the board runs; else of an image no board
            has taken yet; else help the image with the most candidates left, when that ends it
            sooner despite one more load (else None: the board waits)."""
            image = lambda i: jobs[tasks[i][0]].image_hash  # noqa: E731
            live = {b.name for b in self.pool.live}
            for names in claimed.values():  # a lost board helps nobody
                names &= live
            own = [i for i in pending if image(i) == board.loaded]
            if own:
                chosen = own[0]
            else:
                fresh = [i for i in pending if not claimed.get(image(i))]
                if fresh:
                    chosen = fresh[0]
                else:
                    left: Dict[str, int] = {}
                    for i in pending:
                        left[image(i)] = left.get(image(i), 0) + 1
                    busiest = max(left, key=lambda h: (left[h], -min(i for i in pending if image(i) == h)))
                    # With h boards on it the image ends in left*M/h; one more board that first
                    # loads it (L) ends it sooner exactly when left*M > h*L.
                    helpers = max(len(claimed[busiest]), 1)
                    if left[busiest] * self._mean("measure") <= helpers * self._mean("load"):
                        return None
                    chosen = next(i for i in pending if image(i) == busiest)
            claimed.setdefault(image(chosen), set()).add(board.name)
            return chosen

        def give_up(task, reason):
            return {"cycles": None, "outputs": None, "error": f"not measured: {reason}", "attempts": 0, "board": None}

        measured = dict(zip(tasks, self.pool.run(tasks, work, give_up, choose)))
        all_results = []
        for job_index, job in enumerate(jobs):
            reference = measured.get((job_index, 0), {}).get("outputs")
            results = []
            for index, knobs in enumerate(job.candidates):
                entry = dict(measured.get((job_index, index)) or
                             {"cycles": None, "outputs": None, "attempts": 1, "board": None,
                              "error": failed_jobs.get(job_index, "not measured")})
                outputs = entry["outputs"]
                if entry["error"] is None and index > 0 and reference is None:  # as the LocalRunner
                    entry["error"] = "not checked: the untuned kernel (the reference) failed in this image"
                if (entry["error"] is None and index > 0 and reference is not None
                        and any(not np.array_equal(a, b) for a, b in zip(outputs, reference))):
                    entry["error"], entry["cycles"] = "output differs from the untuned kernel's", None
                self.stats.measurements += 1
                if entry["error"] is not None:
                    self.stats.failures += 1
                    entry["cycles"] = None
                results.append(MeasureResult(job.signature, dict(knobs), entry["cycles"], self.unit, self.board,
                                             entry["error"], max(entry["attempts"], 1)))
                self.history.append(Measurement(job.signature, index, dict(knobs), entry["cycles"], entry["error"],
                                                _digest(outputs) if outputs is not None else None, entry["board"]))
            all_results.append(results)
        return all_results

    def close(self) -> None:
        self.pool.close()


class _LinkLost(Exception):
    """The device link on a board died (the board server is fine): re-flash and retry."""


class _CandidateFailed(Exception):
    """The device answered with an error for this candidate."""


def tracker_runner(args, work_dir: pathlib.Path) -> TrackerRunner:
    """``runner_for``'s farm branch: the TrackerRunner of a ``tvmc tune --rpc-tracker ... --rpc-key ...``."""
    from ..cli import TVMCError

    if not getattr(args, "rpc_key", None):
        raise TVMCError("--rpc-tracker needs --rpc-key KEY (the board type the farm's boards registered under)")
    options = dict(getattr(args, "project_options", None) or {})
    try:
        runner = TrackerRunner(args.rpc_tracker, args.rpc_key, work_dir, project_options=options,
                               platform=getattr(args, "platform", None),
                               template_dir=getattr(args, "template_dir", None), timeout=args.timeout,
                               log=lambda text: print(text, flush=True, file=sys.stderr))
    except FarmError as err:
        raise TVMCError(str(err)) from None
    if options.get("board") not in (None, runner.board):
        runner.close()
        raise TVMCError(f"--project-option board={options['board']} but the boards under key {args.rpc_key!r} "
                        f"are {runner.board}")
    args.platform = args.platform or runner.platform
    return runner
