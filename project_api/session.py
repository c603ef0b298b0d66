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
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np

from .errors import SessionError
from .rpc.commands import HOST_MAX_PACKET, CommandClient, DeviceInfo, TensorInfo
from .rpc.session import RpcSession
from .rpc.transport import Transport

# A model run may take much longer than a round trip; this much is allowed on top of the
# session's established timeout (seconds).
DEFAULT_RUN_TIMEOUT_SEC = 60.0


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
        self.commands.run(timeout_sec=self._run_timeout())

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
        results, cycles = [], []
        for _ in range(repeat):
            timed = self.commands.time_runs(number, timeout_sec=self._run_timeout(number))
            results.append(timed.ticks / timed.timer_hz / number)
            cycles.append(timed.ticks / number)
            is_cycles = timed.timer_is_cycles
        return TimingResult(results, cycles if is_cycles else None, number)

    def _run_timeout(self, runs: int = 1) -> Optional[float]:
        established = self._rpc.timeouts.session_established_timeout_sec
        if not established:
            return None  # the transport asked to wait forever (legacy 0 timeouts)
        return established + self.run_timeout_sec * runs
