"""A farm on this machine: TVM's RPC tracker on 127.0.0.1 and N emulated boards (QEMU Cortex-M or
simavr), each served by its own board server on its own 127.0.0.1 port, registered exactly as a
real board on another host would be. Tests and bench/farm.py use it.

    with EmulatedFarm(boards=2, board="mps2_an386") as farm:
        runner = TrackerRunner(farm.tracker, farm.key, work_dir)
        ...
        farm.kill_board(1)   # SIGKILL the board server's whole process group (a host losing power)

Leaving the block stops every board server (and so its emulators) and the tracker; so do
interpreter exit and SIGTERM (the emulators' life cycle, project_api.emulators.process).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from typing import List, Optional, Sequence

from .address import Address
from .processes import BoardServerProcess, TrackerProcess


class EmulatedFarm:
    def __init__(self, boards: int = 2, board: str = "mps2_an386", key: Optional[str] = None,
                 run_timeout_sec: float = 30.0, serve_args: Sequence[str] = ()):
        if boards < 1:
            raise ValueError(f"an emulated farm needs at least one board, not {boards}")
        self.count = boards
        self.board = board
        self.key = key or board
        self.run_timeout_sec = run_timeout_sec
        self.serve_args = list(serve_args)  # more `serve` arguments, e.g. --project-option build_tool=...
        self.tracker_process = TrackerProcess("127.0.0.1")
        self.boards: List[BoardServerProcess] = []
        self._work_dirs: List[str] = []  # each board's image cache, removed at stop

    @property
    def tracker(self) -> Address:
        return self.tracker_process.address

    def start(self) -> "EmulatedFarm":
        try:
            self.tracker_process.launch()
            self.add_boards(self.count, wait_tracker=True)
        except BaseException:
            self.stop()
            raise
        return self

    def add_boards(self, count: int, wait_tracker: bool = False) -> List[BoardServerProcess]:
        """Start ``count`` more board servers in parallel (each imports TVM: seconds; they do so
        while the tracker starts, with ``wait_tracker``)."""
        new = []
        for _ in range(count):
            work_dir = tempfile.mkdtemp(prefix=f"farm-{self.board}-{len(self.boards) + len(new)}-")
            self._work_dirs.append(work_dir)
            new.append(BoardServerProcess(self.tracker, self.key, self.board, extra_args=[
                "--run-timeout", str(self.run_timeout_sec), "--work-dir", work_dir, *self.serve_args]))
        self.boards += new
        # Spawned from this thread (so they die with it: PR_SET_PDEATHSIG), then waited for
        # together: they start in parallel.
        for board in new:
            board.launch()
        if wait_tracker:
            self.tracker_process.wait_ready()
        for board in new:
            board.wait_registered()
        return new

    def work_dir(self, index: int) -> str:
        """Board ``index``'s image cache (its emulator runs the images there)."""
        return self._work_dirs[index]

    def kill_board(self, index: int) -> None:
        """SIGKILL board ``index``'s server and everything in its group, without warning."""
        self.boards[index].kill()

    def stop(self) -> None:
        # In parallel: each board server takes a moment to stop its sessions and emulators.
        threads = [threading.Thread(target=board.stop, kwargs={"grace_sec": 8.0}, daemon=True) for board in self.boards]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30.0)
        for board in self.boards:
            board.stop(grace_sec=0.0)  # whatever did not stop in time: SIGKILL
        self.tracker_process.stop()
        for work_dir in self._work_dirs:
            shutil.rmtree(work_dir, ignore_errors=True)

    def __enter__(self) -> "EmulatedFarm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
