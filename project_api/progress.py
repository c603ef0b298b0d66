"""One progress line for long work: ``tvmc compile: lowering the model ... 3.2 s``.

On a terminal the line is rewritten in place (stage and elapsed time, refreshed twice a second
by a daemon thread) and erased when the work ends, so what follows (a result, a one-line error)
reads as if it had never been there. Elsewhere (a log, a pipe, CI) nothing is printed unless
asked for (``verbose`` or MTP_PROGRESS=1): then each finished stage prints one line with its
time. Build tools' output is folded the same way by ``project_api.tool_run.run_tool``.

    with Progress("tvmc compile", verbose=args.verbose) as progress:
        progress.stage("lowering the model")
        ...
        progress.stage("planning the arena")
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional, TextIO

PROGRESS_ENV = "MTP_PROGRESS"
_REFRESH_SEC = 0.5


class Progress:
    def __init__(self, task: str, stream: Optional[TextIO] = None, verbose: bool = False,
                 live: Optional[bool] = None):
        self.task = task
        self.stream = stream or sys.stderr
        self.live = _isatty(self.stream) if live is None else live
        self.log_stages = verbose or os.environ.get(PROGRESS_ENV, "").lower() in ("1", "true", "yes", "on")
        self._stage: Optional[str] = None
        self._stage_start = self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._width = 0

    def __enter__(self) -> "Progress":
        self._stop.clear()
        if self.live:
            self._thread = threading.Thread(target=self._refresh, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stage(self, name: str) -> None:
        """Start the next stage (ending the current one)."""
        with self._lock:
            self._end_stage()
            self._stage, self._stage_start = name, time.monotonic()
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._end_stage()
            self._stage = None
            if self.live and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def _end_stage(self) -> None:
        if self._stage is not None and self.log_stages:
            line = f"{self.task}: {self._stage} done in {time.monotonic() - self._stage_start:.1f} s"
            if self.live:
                line = "\r" + line.ljust(self._width)
                self._width = 0
            self.stream.write(line + "\n")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.live or self._stage is None:
            return
        text = f"{self.task}: {self._stage} ... {time.monotonic() - self._stage_start:.1f} s " \
               f"(total {self.elapsed:.1f} s)"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = max(self._width, len(text))

    def _refresh(self) -> None:
        while not self._stop.wait(_REFRESH_SEC):
            with self._lock:
                self._draw()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
