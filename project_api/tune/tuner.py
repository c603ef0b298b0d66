"""The search: which candidates to measure, in which images, until the trials run out.

Cost model: ridge regression (numpy least squares) of log(cycles / the untuned kernel's cycles) on
``space.features`` (one-hot knobs crossed with the kernel kind, and the knobs crossed with the
kernel's size, channels and shape), refitted after every image. It ranks the unmeasured candidates
of every task, so what one kernel showed (say, widened inputs pay on pointwise layers, O2 does not
on depthwise ones) orders the candidates of the next, and a small ``--trials`` budget is spent on
the likely winners first. Why not XGBoost: the spaces are small (2 to 8 candidates per kernel,
a few dozen per model) and the features categorical; a boosted-tree ranker needs hundreds of
measurements before it beats a linear model, adds a 200 MB dependency, and is not deterministic
across versions; ridge regression is exact, instant and needs nothing beyond numpy.

Each task's untuned candidate is measured first (it is the exactness reference and the baseline
of the ratios); then tasks are visited by weight (layers x MACs) in rounds, each round one
candidate image per task with its best-ranked unmeasured candidates (up to ``per_image``).
``early_stopping`` ends a task after that many measured candidates without a new best.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from . import space as space_mod
from .image import CHECKSUM_NAME, candidate_image
from .records import Records, compiler_version, knobs_key
from .runner import MeasureJob, Runner
from .space import KernelTask


class CostModel:
    """Ridge regression of log(cycles / untuned cycles) on candidate features."""

    def __init__(self, ridge: float = 0.1):
        self.ridge = ridge
        self.rows: List[List[float]] = []
        self.targets: List[float] = []
        self.weights: Optional[np.ndarray] = None

    def add(self, row: List[float], ratio: float) -> None:
        self.rows.append(row)
        self.targets.append(math.log(max(ratio, 1e-6)))

    def fit(self) -> None:
        if not self.rows:
            return
        x = np.asarray(self.rows, np.float64)
        y = np.asarray(self.targets, np.float64)
        a = x.T @ x + self.ridge * np.eye(x.shape[1])
        self.weights = np.linalg.solve(a, x.T @ y)

    def predict(self, row: List[float]) -> float:
        """Predicted log ratio (negative: faster than untuned); 0 before any fit."""
        if self.weights is None:
            return 0.0
        return float(np.asarray(row) @ self.weights)


@dataclasses.dataclass
class TaskState:
    task: KernelTask
    measured: Dict[str, Optional[float]] = dataclasses.field(default_factory=dict)  # knobs key -> cycles
    since_best: int = 0
    done: bool = False

    @property
    def default_cycles(self) -> Optional[float]:
        return self.measured.get(knobs_key(self.task.default))

    @property
    def best(self):
        ok = [(c, k) for k, c in self.measured.items() if c is not None]
        return min(ok) if ok else (None, None)

    def unmeasured(self) -> List[dict]:
        return [k for k in self.task.candidates if knobs_key(k) not in self.measured]

    @property
    def weight(self) -> float:
        return self.task.layers * space_mod._macs(self.task.kind, self.task.params)


@dataclasses.dataclass
class TuneSummary:
    tasks: int
    measurements: int
    failures: int
    builds: int
    flashes: int
    untuned: float  # estimated per-inference figure of the tuned kernels, untuned knobs (sum over layers)
    tuned: float
    wall_sec: float
    unit: str


class Progress:
    """One status line on stderr: trials, best so far (the model's kernels, summed), time left."""

    def __init__(self, total: int, stream=None):
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.done = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, done: int, untuned: float, tuned: float, unit: str) -> None:
        self.done = done
        elapsed = time.monotonic() - self.start
        left = elapsed / done * (self.total - done) if done else 0.0
        filled = int(20 * min(done, self.total) / self.total)
        gain = f" ({tuned / untuned:.3f}x untuned)" if untuned else ""
        line = (f"[{'#' * filled}{'.' * (20 - filled)}] trials {done}/{self.total}  best {tuned:,.0f} {unit}"
                f"{gain}  elapsed {elapsed:.0f}s  left ~{left:.0f}s")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)


class Tuner:
    def __init__(self, model_path: Path, runner: Runner, records: Records, template: str, work_dir: Path,
                 trials: int = 1000, early_stopping: Optional[int] = None, number: int = 1, repeat: int = 1,
                 per_image: int = 8, progress: bool = True, log: Callable[[str], None] = None):
        self.model_path = Path(model_path)
        self.runner = runner
        self.records = records
        self.compiler = compiler_version(template)
        self.work_dir = Path(work_dir)
        self.trials = trials
        self.early_stopping = early_stopping
        self.number, self.repeat = number, repeat
        self.per_image = max(per_image, 2)
        self.show_progress = progress
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.model = CostModel()
        self.unit = getattr(runner, "unit", "cycles")

    def _estimate(self, states: List[TaskState]):
        untuned = tuned = 0.0
        for state in states:
            default = state.default_cycles
            if default is None:
                continue
            untuned += default * state.task.layers
            tuned += state.best[0] * state.task.layers
        return untuned, tuned

    def _learn(self, state: TaskState, knobs: dict, cycles: Optional[float]) -> None:
        default = state.default_cycles
        if cycles is not None and default:
            self.model.add(space_mod.features(state.task, knobs), cycles / default)

    def learn_records(self, entries) -> int:
        """Trains the cost model on records of other models or boards (``tvmc tune --prior-records``):
        per signature, each successful record's ratio to that signature's untuned record. Returns
        how many records it learned from."""
        from ..compiler import qnn_choices

        by_signature: Dict[str, Dict[str, float]] = {}
        for entry in entries:
            if entry.get("error") is None and entry.get("cycles"):
                key = (entry["signature"], entry["board"])
                by_signature.setdefault(key, {})[knobs_key(entry["knobs"])] = float(entry["cycles"])
        learned = 0
        for (signature, _), measured in by_signature.items():
            kind, _, text = signature.partition(":")
            try:
                params = json.loads(text)
                default = measured.get(knobs_key(qnn_choices.default_knobs(kind, params)))
            except (ValueError, KeyError, TypeError):
                continue  # a signature of another compiler version
            if not default:
                continue
            task = KernelTask(signature, kind, params, -1, 1, [])
            for key, cycles in measured.items():
                self.model.add(space_mod.features(task, json.loads(key)), cycles / default)
                learned += 1
        self.model.fit()
        return learned

    def _ranked(self, state: TaskState) -> List[dict]:
        left = state.unmeasured()
        order = {knobs_key(k): i for i, k in enumerate(state.task.candidates)}
        return sorted(left, key=lambda k: (self.model.predict(space_mod.features(state.task, k)), order[knobs_key(k)]))

    def _measure(self, state: TaskState, batch: List[dict]) -> int:
        """One image: the untuned kernel (reference) first, then ``batch``; records what is new."""
        task = state.task
        knob_sets = [task.default] + [k for k in batch if knobs_key(k) != knobs_key(task.default)]
        lowered, content = candidate_image(self.model_path, task, knob_sets)
        from ..compiler.mlf import export_mlf

        image_dir = self.work_dir / "mlf"
        mlf = export_mlf(lowered, image_dir / f"{content}.tar", export_datetime="1970-01-01 00:00:00")
        job = MeasureJob(task.signature, knob_sets, mlf, content, {}, self.number, self.repeat,
                         check_outputs=[CHECKSUM_NAME])
        results = self.runner.run(job)
        if len(knob_sets) > 2 and all(r.error is not None and "does not fit" in r.error for r in results):
            # The flash does not hold them all: the same candidates in two smaller images.
            half = (len(batch) + 1) // 2
            self.log(f"tvmc tune: {len(knob_sets)} candidates do not fit one image; splitting")
            return self._measure(state, batch[:half]) + self._measure(state, batch[half:])
        new = 0
        best_before = state.best[0]
        for knobs, result in zip(knob_sets, results):
            key = knobs_key(knobs)
            if key in state.measured:
                continue  # the reference, measured (and recorded) before
            self.records.append(result, task.kind, self.compiler, self.model_path.name)
            state.measured[key] = result.cycles
            new += 1
            if result.error is not None:
                self.log(f"tvmc tune: {task.kind} candidate {key} failed: {result.error}")
        for knobs, result in zip(knob_sets, results):
            if knobs_key(knobs) != knobs_key(task.default) or best_before is None:
                self._learn(state, knobs, result.cycles)
        if best_before is not None and (state.best[0] is None or state.best[0] >= best_before):
            state.since_best += new  # nothing new beat the best so far
        else:
            state.since_best = 0
        self.model.fit()
        return new

    def tune(self) -> TuneSummary:
        start = time.monotonic()
        tasks = space_mod.model_tasks(self.model_path)
        known = self.records.measured(self.runner.board, self.compiler)
        states = []
        for task in tasks:
            state = TaskState(task)
            for knobs in task.candidates:
                entry = known.get((task.signature, knobs_key(knobs)))
                if entry is not None:
                    state.measured[knobs_key(knobs)] = entry["cycles"]
            states.append(state)
        for state in states:  # what earlier runs measured teaches the model too
            for knobs in state.task.candidates:
                cycles = state.measured.get(knobs_key(knobs))
                if cycles is not None:
                    self._learn(state, knobs, cycles)
        self.model.fit()
        # --trials counts the records of earlier runs too: the same command resumes an interrupted
        # session up to the same total, and once it is complete measures nothing.
        recorded = sum(len(s.measured) for s in states)
        pending = sum(len(s.unmeasured()) for s in states)
        budget = max(0, min(self.trials - recorded, pending))
        progress = Progress(budget) if self.show_progress else None
        used = 0
        states.sort(key=lambda s: -s.weight)
        try:
            while used < budget:
                active = [s for s in states if not s.done and s.unmeasured()]
                if not active:
                    break
                for state in active:
                    if used >= budget:
                        break
                    if self.early_stopping is not None and state.since_best >= self.early_stopping:
                        state.done = True
                        continue
                    room = min(self.per_image, budget - used)
                    ranked = self._ranked(state)
                    if state.default_cycles is None and knobs_key(state.task.default) not in state.measured:
                        # the reference is new here: it counts as one trial
                        ranked = [state.task.default] + [k for k in ranked if knobs_key(k) != knobs_key(state.task.default)]
                    used += self._measure(state, ranked[:room])
                    if progress is not None:
                        progress.update(used, *self._estimate(states), getattr(self.runner, "unit", self.unit))
        finally:
            if progress is not None:
                progress.close()
        untuned, tuned = self._estimate(states)
        stats = self.runner.stats
        return TuneSummary(len(tasks), used, stats.failures, stats.builds, stats.flashes, untuned, tuned,
                           time.monotonic() - start, getattr(self.runner, "unit", self.unit))
