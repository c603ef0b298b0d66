"""Tuning records: JSON lines, one measurement each, appendable and resumable.

    {"signature": "conv2d:{...}", "kind": "conv2d", "knobs": {"method": "widened", ...},
     "cycles": 909200.0, "unit": "instructions", "board": "mps2_an386",
     "compiler": "microtvm-projects 0.1.0; tvm 0.27.0; arm-none-eabi-gcc 12.2.1",
     "error": null, "attempts": 1, "model": "kws.tflite", "time": "2026-12-02T14:10:00Z"}

A measurement is identified by (signature, knobs, board, compiler): a tune run skips every
candidate that already has a record for its board and compiler, failed or not, so re-running a
command measures nothing twice. ``tvmc compile --tuning-records`` takes, per signature, the knobs
with the fewest cycles among the successful records of one board.
"""

from __future__ import annotations

import datetime
import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .runner import MeasureResult


class RecordsError(ValueError):
    """A records file that cannot be read: the message names the file and line."""


def knobs_key(knobs: dict) -> str:
    return json.dumps(knobs, sort_keys=True, separators=(",", ":"))


_TEMPLATE_CC = {"cortex_m": "arm-none-eabi-gcc", "zephyr": "arm-none-eabi-gcc", "arduino": "avr-gcc", "host": "cc"}


@functools.lru_cache(maxsize=None)
def compiler_version(template: str) -> str:
    """What made the measured code: this package, TVM and the template's C compiler."""
    from importlib import metadata

    try:
        ours = metadata.version("microtvm-projects")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    try:
        tvm = metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        tvm = "unknown"
    parts = [f"microtvm-projects {ours}", f"tvm {tvm}"]
    cc = _TEMPLATE_CC.get(template)
    if cc and shutil.which(cc):
        try:
            first = subprocess.run([cc, "-dumpfullversion"], capture_output=True, text=True, timeout=30).stdout.strip()
            parts.append(f"{cc} {first}")
        except (OSError, subprocess.SubprocessError):
            parts.append(cc)
    return "; ".join(parts)


class Records:
    """The records of one file (all of them, any board), appended to as measurements come."""

    def __init__(self, path: Optional[Path]):
        self.path = Path(path) if path is not None else None
        self.entries: List[dict] = []
        if self.path is not None and self.path.is_file():
            self.entries = list(read_records(self.path))

    def measured(self, board: str, compiler: str) -> Dict[Tuple[str, str], dict]:
        return {(e["signature"], knobs_key(e["knobs"])): e for e in self.entries
                if e.get("board") == board and e.get("compiler") == compiler}

    def append(self, result: MeasureResult, kind: str, compiler: str, model: str) -> dict:
        entry = {"signature": result.signature, "kind": kind, "knobs": result.knobs, "cycles": result.cycles,
                 "unit": result.unit, "board": result.board, "compiler": compiler, "error": result.error,
                 "attempts": result.attempts, "model": model,
                 "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.entries.append(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self.path.stat().st_size:
                data = self.path.read_bytes()
                if not data.endswith(b"\n"):
                    # a line cut short by a killed session: dropped (its measurement is redone)
                    with open(self.path, "r+b") as f:
                        f.truncate(data.rfind(b"\n") + 1)
            with open(self.path, "a") as f:  # one line per measurement, flushed: a crash loses nothing
                f.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry


def read_records(path: Path) -> Iterable[dict]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise RecordsError(f"cannot read tuning records {path}: {err.strerror}") from None
    truncated_tail = bool(lines) and not path.read_bytes().endswith(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            if truncated_tail and number == len(lines):
                continue  # a write cut short (the session was killed): that measurement is redone
            raise RecordsError(f"{path}:{number}: not a JSON record ({err.msg})") from None
        if not isinstance(entry, dict) or not {"signature", "knobs", "cycles", "board"} <= set(entry):
            raise RecordsError(f"{path}:{number}: a tuning record needs signature, knobs, cycles and board")
        yield entry


def best_knobs(entries: Iterable[dict], board: Optional[str] = None) -> Tuple[Dict[str, dict], Optional[str]]:
    """Per signature, the knobs with the fewest cycles among the successful records of ``board``
    (None: the board of the most recent record). Returns (signature -> knobs, board)."""
    entries = [e for e in entries if e.get("error") is None and e.get("cycles") is not None]
    if board is None and entries:
        board = entries[-1]["board"]
    best: Dict[str, Tuple[float, dict]] = {}
    for entry in entries:
        if entry["board"] != board:
            continue
        current = best.get(entry["signature"])
        if current is None or entry["cycles"] < current[0]:
            best[entry["signature"]] = (entry["cycles"], entry["knobs"])
    return {sig: knobs for sig, (_, knobs) in best.items()}, board


def chooser_from_file(path: Path, board: Optional[str] = None):
    """(chooser for lower_model, board, number of signatures) from a records file."""
    table, board = best_knobs(read_records(path), board)
    return table.get, board, len(table)
