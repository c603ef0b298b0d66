"""Host-driven inference on a device: ``Session`` over any transport (docs/rpc-protocol.md).

    with Session(transport) as sess:
        sess.set_input("x", np.ones((1, 1), np.float32))
        sess.run()
        y = sess.get_output(0)
        timing = sess.time_evaluate(number=10, repeat=3)

Opening the session opens the transport, starts a device session, exchanges the packet limits
and reads the model's tensor descriptions, so inputs are checked on the host before any byte
is sent.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

from .errors import SessionError
from .rpc.commands import HOST_MAX_PACKET, CommandClient, DeviceInfo, ProfiledRuns, TensorInfo
from .rpc.session import RpcSession
from .rpc.transport import Transport

# Deadlines of RUN and TIME_RUNS, on top of the session's established timeout (which covers the
# round trip): before any run was measured, this much per run (seconds) ...
DEFAULT_RUN_TIMEOUT_SEC = 60.0
# ... and once one was, this many times the measured time per run, so a device that stops
# answering mid-way is noticed soon after the runs should have ended, not an hour later.
RUN_TIME_MARGIN = 2.0
# time_evaluate measures this long (seconds) before its batches, so the deadline of a batch of
# fast runs follows the runs, not the round trip that dominates a single one.
CALIBRATION_SEC = 0.05
MAX_TIMED_RUNS = 0xFFFFFFFF  # TIME_RUNS carries its count as a uint32

PROFILE_BUILD_HINT = ("the device runs no profiling build: generate the project with "
                      "--project-option compile_definitions=TVMGEN_PROFILE (tvmc micro create), build and flash it")


@dataclass
class ModelInfo:
    """What the device reported at session start."""

    device: DeviceInfo
    inputs: List[TensorInfo] = field(default_factory=list)
    outputs: List[TensorInfo] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.device.model_name


@dataclass
class TimingResult:
    """time_evaluate's figures: per-run seconds (and cycles, when the board counts cycles) for
    each of the `repeat` measurements, each the mean over `number` runs timed on the device."""

    results: List[float]
    cycles: Optional[List[float]]
    number: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.results)

    @property
    def median(self) -> float:
        return statistics.median(self.results)

    @property
    def min(self) -> float:
        return min(self.results)

    @property
    def max(self) -> float:
        return max(self.results)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.results)


class Session:
    """An inference session with the device at the other end of `transport`."""

    def __init__(self, transport: Transport, run_timeout_sec: float = DEFAULT_RUN_TIMEOUT_SEC,
                 max_packet: Optional[int] = None):
        self.transport = transport
        self.run_timeout_sec = run_timeout_sec
        self._max_packet = max_packet
        self._rpc: Optional[RpcSession] = None
        self._commands: Optional[CommandClient] = None
        self._info: Optional[ModelInfo] = None
        # (runs, seconds per run) of the measurement over the most runs so far: the host's wall
        # clock, which the deadlines run on (an emulator's device timer need not keep real time).
        self._measured: Optional[Tuple[int, float]] = None

    # -- lifetime --------------------------------------------------------------------------
    def open(self) -> "Session":
        if self._max_packet is not None and self._max_packet < 64:
            raise SessionError(f"max_packet must be at least 64 bytes, not {self._max_packet}")
        self.transport.open()
        try:
            self._rpc = RpcSession(self.transport)
            self._rpc.start()
            self._commands = CommandClient(self._rpc)
            device = self._commands.info(self._max_packet or HOST_MAX_PACKET)
            info = ModelInfo(device)
            info.inputs = [self._commands.tensor_info(False, i) for i in range(device.num_inputs)]
            info.outputs = [self._commands.tensor_info(True, i) for i in range(device.num_outputs)]
            self._info = info
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        rpc, self._rpc, self._commands = self._rpc, None, None
        try:
            if rpc is not None and rpc.session_id is not None:
                try:
                    rpc.terminate()
                except Exception:  # the link may already be gone; closing must still finish
                    pass
        finally:
            self.transport.close()

    def __enter__(self) -> "Session":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def commands(self) -> CommandClient:
        if self._commands is None:
            raise SessionError("the session is not open: use `with Session(transport) as sess:` or call open()")
        return self._commands

    # -- model -----------------------------------------------------------------------------
    def get_info(self) -> ModelInfo:
        if self._info is None or self._commands is None:
            raise SessionError("the session is not open: use `with Session(transport) as sess:` or call open()")
        return self._info

    def _find(self, tensors: List[TensorInfo], key: Union[int, str], kind: str) -> int:
        if isinstance(key, (int, np.integer)):
            if 0 <= key < len(tensors):
                return int(key)
            raise SessionError(f"the model has no {kind} {key}: it has {len(tensors)} {kind}s (0..{len(tensors) - 1})")
        for index, tensor in enumerate(tensors):
            if tensor.name == key:
                return index
        names = ", ".join(repr(t.name) for t in tensors)
        raise SessionError(f"the model has no {kind} named {key!r}; its {kind}s are {names}")

    def set_input(self, key: Union[int, str], value) -> None:
        """Send an input; its dtype and shape must be exactly the model's."""
        index = self._find(self.get_info().inputs, key, "input")
        expected = self._info.inputs[index]
        array = np.asarray(value)
        if array.dtype != np.dtype(expected.dtype) or tuple(array.shape) != expected.shape:
            raise SessionError(
                f"input {expected.name!r} must be {expected.dtype} with shape {list(expected.shape)}, "
                f"got {array.dtype} with shape {list(array.shape)}")
        wire_dtype = np.dtype(expected.dtype).newbyteorder("<")  # the device is little-endian
        self.commands.write_input(index, np.ascontiguousarray(array, dtype=wire_dtype).tobytes())

    def run(self) -> None:
        timeout, expected = self._run_timeout(1)
        started = time.monotonic()
        self.commands.run(timeout_sec=timeout, expected_sec=expected)
        self._learn_run_time(1, time.monotonic() - started)

    def reset_state(self) -> None:
        """Start afresh: zero the state a stateful model (SVDF) carries from run to run."""
        self.commands.reset_state()

    def get_output(self, key: Union[int, str]) -> np.ndarray:
        index = self._find(self.get_info().outputs, key, "output")
        tensor = self._info.outputs[index]
        data = self.commands.read_output(index, tensor.size_bytes)
        return np.frombuffer(data, dtype=np.dtype(tensor.dtype).newbyteorder("<")).reshape(tensor.shape).copy()

    def time_evaluate(self, number: int = 1, repeat: int = 1) -> TimingResult:
        """Time `repeat` batches of `number` runs with the device's own timer."""
        if number < 1 or repeat < 1:
            raise SessionError(f"time_evaluate needs number >= 1 and repeat >= 1, got {number} and {repeat}")
        if number > MAX_TIMED_RUNS:
            raise SessionError(f"time_evaluate takes at most {MAX_TIMED_RUNS} runs per measurement (the device "
                               f"counts them in 32 bits), got number={number}; raise repeat instead")
        self._calibrate(number)
        results, cycles = [], []
        for _ in range(repeat):
            timed = self._time_runs(number)
            results.append(timed.ticks / timed.timer_hz / number)
            cycles.append(timed.ticks / number)
            is_cycles = timed.timer_is_cycles
        return TimingResult(results, cycles if is_cycles else None, number)

    def profile(self, number: int = 1) -> ProfiledRuns:
        """Run the model `number` times on a profiling build and return the ticks of each kernel call
        (summed over the runs) beside the ticks of the runs in all."""
        if number < 1:
            raise SessionError(f"profile needs number >= 1, got {number}")
        if not self.get_info().device.can_profile:
            raise SessionError(PROFILE_BUILD_HINT)
        timeout, _ = self._run_timeout(number)
        return self.commands.profile_runs(number, timeout_sec=timeout)

    def _time_runs(self, number: int):
        timeout, expected = self._run_timeout(number)
        started = time.monotonic()
        timed = self.commands.time_runs(number, timeout_sec=timeout, expected_sec=expected)
        self._learn_run_time(number, time.monotonic() - started)
        return timed

    def _calibrate(self, number: int) -> None:
        """Untimed warm-up runs (as TVM's time_evaluator does one) until a measurement covers
        ``number`` runs or lasts CALIBRATION_SEC / 2. Each step asks for the runs the last
        measurement says fill CALIBRATION_SEC; it includes the round trip, so it overestimates
        the time per run and a step never takes much longer than that."""
        if self._measured is None:
            self.run()
        while True:
            runs, per_run = self._measured
            if runs >= number or runs * per_run >= CALIBRATION_SEC / 2:
                return
            self._time_runs(min(number, max(2 * runs, int(CALIBRATION_SEC / max(per_run, 1e-9)))))

    def _learn_run_time(self, runs: int, seconds: float) -> None:
        """Keep the measurement over the most runs (its round trip weighs least), the slowest of equals."""
        per_run = seconds / runs
        if self._measured is None or runs > self._measured[0] or \
                (runs == self._measured[0] and per_run > self._measured[1]):
            self._measured = (runs, per_run)

    def _run_timeout(self, runs: int) -> Tuple[Optional[float], Optional[float]]:
        """(deadline, expected duration) in seconds for a command executing ``runs`` model runs:
        the established timeout plus RUN_TIME_MARGIN x the measured time of that many runs, or
        plus run_timeout_sec per run before anything was measured. (None, None) = wait forever."""
        established = self.commands.session.timeouts.session_established_timeout_sec  # raises when not open
        if not established:
            return None, None  # the transport asked to wait forever (legacy 0 timeouts)
        if self._measured is None:
            return established + self.run_timeout_sec * runs, None
        expected = self._measured[1] * runs
        return established + RUN_TIME_MARGIN * expected, expected
