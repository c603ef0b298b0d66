"""The client's boards: a TVM RPC session to every free board under a key, work spread over them.

``BoardPool.run(tasks, work)`` keeps each board busy (one worker thread per board takes the next
task as soon as it is done with one), takes boards that become free under the key while it runs,
and when a board vanishes — its RPC session breaks (the server, its host or its emulator was
killed) or a call outlives ``call_timeout_sec`` — marks the board lost, never uses it again in this
pool, and gives its task to another board. Results come back in task order whatever board ran
them, so the same tasks give the same results on 1 or 10 boards.

Every wait is bounded: a call by ``call_timeout_sec`` (the watchdog), getting a first board by
``acquire_timeout_sec``, a task by ``max_moves`` board losses (a task that kills every board it
touches does not take the whole farm down).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Callable, Dict, List, Optional, Sequence, TypeVar

from . import FarmError
from .address import Address
from .tracker import check_key, request_board

_LOG = logging.getLogger("project_api.farm")

T = TypeVar("T")
R = TypeVar("R")

POLL_SEC = 0.2  # how often idle workers and the watchdog look again
TOP_UP_SEC = 2.0  # how often the tracker is asked for boards that became free


class BoardLost(Exception):
    """The board's RPC session broke or hung: the board is gone for this pool."""


class RemoteBoard:
    """One board server, through a TVM RPC session the tracker handed out."""

    def __init__(self, session):
        self._session = session
        self._functions: Dict[str, object] = {}
        self.lost: Optional[str] = None  # why, once lost
        self.server = "?"
        info = json.loads(self.call("mtp.farm.info"))
        self.board: str = info["board"]
        self.platform: str = info["platform"]
        self.server: str = info["server"]
        self.loaded: Optional[str] = None  # the image hash the board runs
        self.state: Dict[str, object] = {}  # what a runner keeps per board (e.g. timing baselines)

    @property
    def name(self) -> str:
        return f"{self.board}@{self.server}"

    def call(self, function: str, *args):
        """Call a board function; any failure of the call itself means the board is gone (the
        board functions answer errors in their JSON, they never raise)."""
        session = self._session
        if session is None or self.lost:
            raise BoardLost(f"board {self.server} is lost ({self.lost or 'closed'})")
        try:
            func = self._functions.get(function)
            if func is None:
                func = self._functions[function] = session.get_function(function)
            return func(*args)
        except Exception as err:  # TVMError, RPCError, OSError: the session broke
            raise BoardLost(" ".join(str(err).split()).split(" Stack trace")[0][:300] or type(err).__name__) from None

    def close(self) -> None:
        """Drop the session: TVM closes the socket once nothing refers to it, and the server
        re-registers the board as free with the tracker."""
        self._functions.clear()
        self._session = None


class BoardPool:
    def __init__(self, tracker: Address, key: str, *, max_boards: Optional[int] = None,
                 call_timeout_sec: float = 300.0, acquire_timeout_sec: float = 30.0, max_moves: int = 3,
                 log: Optional[Callable[[str], None]] = None):
        self.tracker = tracker
        self.key = key
        self.max_boards = max_boards
        self.call_timeout_sec = call_timeout_sec
        self.acquire_timeout_sec = acquire_timeout_sec
        self.max_moves = max_moves
        self.log = log or (lambda text: _LOG.warning("%s", text))
        self.boards: List[RemoteBoard] = []
        self.lost: List[RemoteBoard] = []
        self.moved = 0  # tasks given to another board after theirs was lost
        self._lock = threading.Lock()

    # -- boards ----------------------------------------------------------------------------
    @property
    def live(self) -> List[RemoteBoard]:
        return [b for b in self.boards if not b.lost]

    def _room(self) -> int:
        if self.max_boards is None:
            return 1 << 20
        return self.max_boards - len(self.live)

    def take_free(self) -> List[RemoteBoard]:
        """Sessions to the boards free under the key right now (up to max_boards in all)."""
        new = []
        for _ in range(64):  # bounded: at most this many boards join per look
            if self._room() - len(new) <= 0:
                break
            session = request_board(self.tracker, self.key)
            if session is None:
                break
            try:
                new.append(RemoteBoard(session))
            except BoardLost as err:
                self.log(f"farm: a board under key {self.key!r} vanished while joining ({err})")
        with self._lock:
            self.boards += new
        return new

    def acquire(self) -> List[RemoteBoard]:
        """Every free board under the key; waits up to acquire_timeout_sec for a first one."""
        check_key(self.tracker, self.key)
        deadline = time.monotonic() + self.acquire_timeout_sec
        while True:
            self.take_free()
            if self.live:
                return self.live
            if time.monotonic() > deadline:
                raise FarmError(f"no board under key {self.key!r} became free at the tracker {self.tracker} within "
                                f"{self.acquire_timeout_sec:.0f} s (all busy with other clients, or their servers "
                                "are stuck)")
            time.sleep(0.5)

    def mark_lost(self, board: RemoteBoard, reason: str) -> None:
        with self._lock:
            if board.lost:
                return
            board.lost = reason
            self.lost.append(board)
        board.close()
        self.log(f"farm: board {board.name} lost ({reason}); its work goes to the other boards")

    def close(self) -> None:
        for board in self.boards:
            board.close()
        self.boards = []

    # -- work ------------------------------------------------------------------------------
    def run(self, tasks: Sequence[T], work: Callable[[RemoteBoard, T], R],
            give_up: Callable[[T, str], R],
            choose: Optional[Callable[[RemoteBoard, List[int]], int]] = None) -> List[R]:
        """``work(board, task)`` for every task on some live board; results in task order.
        ``give_up(task, reason)`` is the result of a task no board could finish. ``choose(board,
        pending)`` picks which pending task index a free board takes (default: the first), or None:
        this board waits until a task finishes (taking one would cost more than it saves)."""
        results: List[Optional[R]] = [None] * len(tasks)
        done = [False] * len(tasks)
        pending = deque(range(len(tasks)))
        moves = [0] * len(tasks)
        busy: Dict[int, tuple] = {}  # id(board) -> (task index, start time, board)
        cond = threading.Condition()
        workers: Dict[int, threading.Thread] = {}

        def finish(index: int, result) -> None:
            results[index] = result
            done[index] = True

        def requeue(index: int, board: RemoteBoard, reason: str) -> None:
            moves[index] += 1
            self.moved += 1
            if moves[index] >= self.max_moves:
                finish(index, give_up(tasks[index], f"{moves[index]} boards were lost while running it "
                                                    f"(last: {board.name}, {reason})"))
            else:
                pending.appendleft(index)  # first in line: the job's order stays close to the plan

        def worker(board: RemoteBoard) -> None:
            while True:
                with cond:
                    while not pending and not all(done) and not board.lost:
                        cond.wait(POLL_SEC)
                    if all(done) or board.lost:
                        return
                    index = pending[0] if choose is None else choose(board, list(pending))
                    if index is None:
                        cond.wait(POLL_SEC)  # woken when a task finishes; then it looks again
                        continue
                    pending.remove(index)
                    busy[id(board)] = (index, time.monotonic(), board)
                try:
                    result, lost = work(board, tasks[index]), None
                except BoardLost as err:
                    result, lost = None, str(err)
                with cond:
                    if busy.pop(id(board), None) is None:  # the watchdog gave up on us meanwhile
                        return
                    if lost is None:
                        finish(index, result)
                    else:
                        self.mark_lost(board, lost)
                        requeue(index, board, lost)
                    cond.notify_all()
                    if lost is not None:
                        return

        def start_workers() -> None:
            for board in self.live:
                if id(board) not in workers:
                    thread = threading.Thread(target=worker, args=(board,), daemon=True,
                                              name=f"farm-{board.server}")
                    workers[id(board)] = thread
                    thread.start()

        start_workers()
        last_top_up = time.monotonic()
        no_board_since = None
        while True:
            with cond:
                if all(done):
                    break
                cond.wait(POLL_SEC)
                now = time.monotonic()
                for key, (index, started, board) in list(busy.items()):  # the watchdog
                    if now - started > self.call_timeout_sec:
                        del busy[key]
                        self.mark_lost(board, f"no answer within {self.call_timeout_sec:.0f} s")
                        requeue(index, board, "hung")
                        cond.notify_all()
                have_live = bool(self.live)
            now = time.monotonic()
            if now - last_top_up > TOP_UP_SEC or not have_live:
                last_top_up = now
                try:
                    self.take_free()  # boards freed by other clients, or just plugged in
                except FarmError as err:  # the tracker is gone: the boards we hold still work
                    self.log(f"farm: {err}")
                start_workers()
            if self.live:
                no_board_since = None
            elif no_board_since is None:
                no_board_since = now
            elif now - no_board_since > self.acquire_timeout_sec:
                with cond:
                    for index in list(pending):
                        finish(index, give_up(tasks[index], f"every board under key {self.key!r} was lost and none "
                                                            f"became free within {self.acquire_timeout_sec:.0f} s"))
                    pending.clear()
                    cond.notify_all()
        return results  # type: ignore[return-value]
