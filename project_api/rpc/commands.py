"""Our command layer above the session (docs/rpc-protocol.md, "Commands"), host side.

A request is ``version, command, uint16 seq, arguments, CRC-32``; its reply is ``version,
command | 0x80, seq, status, data, CRC-32``. Every request is idempotent at the device: when a
request or its reply is lost, the host sends the same bytes (same seq) again, and the device
answers a repeated seq from its kept reply without executing it twice. Resends back off
exponentially from a few round-trip times; the session's established timeout bounds the wait.
"""

from __future__ import annotations

import enum
import os
import struct
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import DeviceError, IoTimeoutError, ModelRunError, SessionError, TransportClosedError
from .checksums import crc32
from .session import HEADER as SESSION_HEADER
from .session import RpcSession

COMMAND_VERSION = 1
REPLY_FLAG = 0x80
REQUEST_HEADER = struct.Struct("<BBH")
REPLY_HEADER = struct.Struct("<BBHB")
CHECK_SIZE = 4

# The host takes packets of any size; it announces this limit so the device sizes its replies.
HOST_MAX_PACKET = 1 << 20

# Resend a request after this many expected round trips, and never sooner than this (seconds).
RTT_FACTOR = 4.0
MIN_RESEND_SEC = 0.005
# Requests and replies up to this size estimate the fixed part of a round trip; larger ones the
# time per byte (a 4 KiB packet takes 0.35 s at 115200 baud, far longer than a ping).
SMALL_EXCHANGE = 64


class Command(enum.IntEnum):
    PING = 0x00
    INFO = 0x01
    TENSOR_INFO = 0x02
    WRITE_INPUT = 0x03
    RUN = 0x04
    READ_OUTPUT = 0x05
    TIME_RUNS = 0x06
    RESET_STATE = 0x07


class Status(enum.IntEnum):
    OK = 0
    BAD_REQUEST = 1
    UNKNOWN_COMMAND = 2
    BAD_INDEX = 3
    BAD_RANGE = 4
    MODEL_FAILED = 5
    BAD_VERSION = 6
    TOO_LARGE = 7


_STATUS_TEXT = {
    Status.BAD_REQUEST: "the device rejected a malformed request",
    Status.UNKNOWN_COMMAND: "the device does not know this command (is its runtime older than this host?)",
    Status.BAD_INDEX: "no such input or output on the device",
    Status.BAD_RANGE: "offset or length outside the tensor",
    Status.BAD_VERSION: "the device speaks another command-layer version: rebuild and flash the project "
                        "with this microtvm-projects",
    Status.TOO_LARGE: "the reply would exceed the negotiated packet size",
}

_DTYPE_CODES = {0: "int", 1: "uint", 2: "float"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str            # numpy spelling: float32, int8, ...
    shape: Tuple[int, ...]
    size_bytes: int


@dataclass(frozen=True)
class DeviceInfo:
    command_version: int
    runtime_version: str
    max_packet: int       # the device's limit for one packet payload
    timer_hz: int
    timer_is_cycles: bool
    num_inputs: int
    num_outputs: int
    workspace_size_bytes: int
    model_name: str


@dataclass(frozen=True)
class TimedRuns:
    ticks: int
    timer_hz: int
    timer_is_cycles: bool


_CHECK = struct.Struct("<I")


class CommandClient:
    """Sends commands over an established RpcSession and returns their reply data."""

    def __init__(self, session: RpcSession, timeout_sec: Optional[float] = None):
        self.session = session
        established = session.timeouts.session_established_timeout_sec
        self.timeout_sec = timeout_sec if timeout_sec is not None else (established or None)
        retry = session.timeouts.session_start_retry_timeout_sec
        self.max_resend_sec = retry if retry else 1.0
        self._seq = int.from_bytes(os.urandom(2), "little")
        self._rtt_base: Optional[float] = None     # smoothed round trip of a small exchange
        self._rtt_per_byte = 0.0                    # smoothed extra time per byte of a large one
        self.resends = 0
        self.max_packet = 64  # raised by info()

    @property
    def max_body(self) -> int:
        """The largest command message (after the session header) both sides accept."""
        return self.max_packet - SESSION_HEADER.size

    def _resend_after(self, exchanged_bytes: int) -> float:
        if self._rtt_base is None:
            return self.max_resend_sec
        expected = self._rtt_base + self._rtt_per_byte * exchanged_bytes
        return min(self.max_resend_sec, max(MIN_RESEND_SEC, RTT_FACTOR * expected))

    def _learn_rtt(self, rtt: float, exchanged_bytes: int) -> None:
        if exchanged_bytes <= SMALL_EXCHANGE or self._rtt_base is None:
            self._rtt_base = rtt if self._rtt_base is None else 0.875 * self._rtt_base + 0.125 * rtt
        else:
            per_byte = max(0.0, rtt - self._rtt_base) / exchanged_bytes
            self._rtt_per_byte = 0.875 * self._rtt_per_byte + 0.125 * per_byte

    def call(self, command: Command, args: bytes = b"", timeout_sec: Optional[float] = None,
             reply_bytes: int = 16) -> bytes:
        """Send one request (resending it as needed) and return its reply data; raise
        DeviceError/ModelRunError for an error status, SessionError when the device is silent."""
        self._seq = (self._seq + 1) & 0xFFFF
        header = REQUEST_HEADER.pack(COMMAND_VERSION, command, self._seq)
        request = b"".join((header, args, _CHECK.pack(crc32(args, crc32(header)))))
        if len(request) > self.max_body:
            raise SessionError(f"{command.name} request of {len(request)} bytes exceeds the device's packet "
                               f"limit of {self.max_body} bytes")
        timeout = self.timeout_sec if timeout_sec is None else timeout_sec
        start = time.monotonic()
        deadline = None if not timeout else start + timeout
        exchanged = len(request) + reply_bytes
        resend = self._resend_after(exchanged)
        attempts = 0
        try:
            while True:
                sent_at = time.monotonic()
                self.session.send(request)
                attempts += 1
                attempt_end = sent_at + resend
                if deadline is not None:
                    attempt_end = min(attempt_end, deadline)
                reply = self._await_reply(command, attempt_end)
                if reply is not None:
                    if attempts == 1 and command not in (Command.RUN, Command.TIME_RUNS):
                        self._learn_rtt(time.monotonic() - sent_at, exchanged)
                    return self._unpack(command, reply)
                if deadline is not None and time.monotonic() >= deadline:
                    raise SessionError(
                        f"the device did not answer {command.name} within {timeout:g} s "
                        f"({attempts} attempts): it stopped responding or was reset")
                self.resends += 1
                resend = min(self.max_resend_sec, resend * 2)
        except TransportClosedError as err:
            raise SessionError(f"the device link closed during {command.name}: {err}") from err
        except IoTimeoutError as err:
            raise SessionError(f"the device stopped accepting bytes during {command.name}: {err}") from err

    def _await_reply(self, command: Command, deadline: float) -> Optional[bytes]:
        while True:
            body = self.session.receive(deadline)
            if body is None:
                return None
            checked = len(body) - CHECK_SIZE
            if checked < REPLY_HEADER.size or _CHECK.unpack_from(body, checked)[0] != crc32(memoryview(body)[:checked]):
                continue  # damaged beyond the frame CRC's reach: wait for the resent reply
            _, reply_command, seq, _ = REPLY_HEADER.unpack_from(body)
            if seq == self._seq and reply_command == command | REPLY_FLAG:
                return body  # still with its check: _unpack takes the data out in one copy
            # a late copy of an earlier reply: drop it

    def _unpack(self, command: Command, reply: bytes) -> bytes:
        version, _, _, status = REPLY_HEADER.unpack_from(reply)
        data = reply[REPLY_HEADER.size:-CHECK_SIZE]
        if status == Status.OK:
            return data
        if status == Status.MODEL_FAILED:
            code = struct.unpack_from("<i", data)[0] if len(data) >= 4 else -1
            raise ModelRunError(f"the model failed on the device with code {code}", status, code)
        if status == Status.BAD_VERSION:
            raise DeviceError(f"{command.name}: the device speaks command-layer version {version}, this host "
                              f"speaks {COMMAND_VERSION}: rebuild and flash the project with this "
                              f"microtvm-projects", status)
        text = _STATUS_TEXT.get(status, f"unknown status {status}")
        raise DeviceError(f"{command.name}: {text}", status)

    # -- typed commands --------------------------------------------------------------------
    def ping(self) -> None:
        self.call(Command.PING)

    def info(self, host_max_packet: int = HOST_MAX_PACKET) -> DeviceInfo:
        data = self.call(Command.INFO, struct.pack("<I", host_max_packet))
        (cmd_version, major, minor, patch, max_packet, hz, is_cycles, n_in, n_out, workspace,
         name_len) = struct.unpack_from("<BBBBIIBHHIB", data)
        name = data[22:22 + name_len].decode("utf-8", errors="replace")
        self.max_packet = min(max_packet, host_max_packet) if host_max_packet else max_packet
        return DeviceInfo(cmd_version, f"{major}.{minor}.{patch}", max_packet, hz, bool(is_cycles),
                          n_in, n_out, workspace, name)

    def tensor_info(self, is_output: bool, index: int) -> TensorInfo:
        data = self.call(Command.TENSOR_INFO, struct.pack("<BH", 1 if is_output else 0, index))
        code, bits, ndim, size = struct.unpack_from("<BBBI", data)
        shape = struct.unpack_from(f"<{ndim}i", data, 7)
        pos = 7 + 4 * ndim
        name = data[pos + 1:pos + 1 + data[pos]].decode("utf-8", errors="replace")
        dtype = f"{_DTYPE_CODES.get(code, f'code{code}_')}{bits}"
        return TensorInfo(name, dtype, tuple(shape), size)

    def write_input(self, index: int, data: bytes) -> int:
        """Write a whole input in as few requests as the packet size allows; return the count."""
        room = self.max_body - REQUEST_HEADER.size - 6 - CHECK_SIZE
        view = memoryview(data)
        requests = 0
        for offset in range(0, max(len(data), 1), room):
            self.call(Command.WRITE_INPUT, b"".join((struct.pack("<HI", index, offset), view[offset:offset + room])))
            requests += 1
        return requests

    def read_output(self, index: int, size: int) -> bytes:
        room = self.max_body - REPLY_HEADER.size - CHECK_SIZE
        parts: List[bytes] = []
        for offset in range(0, size, room):
            want = min(room, size - offset)
            part = self.call(Command.READ_OUTPUT, struct.pack("<HII", index, offset, want), reply_bytes=want)
            if len(part) != want:
                raise SessionError(f"READ_OUTPUT: asked for {want} bytes at offset {offset}, got {len(part)}")
            parts.append(part)
        return b"".join(parts)

    def run(self, timeout_sec: Optional[float] = None) -> None:
        self.call(Command.RUN, timeout_sec=timeout_sec)

    def reset_state(self) -> None:
        """Zero the model's state kept across runs (SVDF); a no-op for a stateless model."""
        self.call(Command.RESET_STATE)

    def time_runs(self, number: int, timeout_sec: Optional[float] = None) -> TimedRuns:
        data = self.call(Command.TIME_RUNS, struct.pack("<I", number), timeout_sec=timeout_sec)
        low, high, hz, is_cycles = struct.unpack_from("<IIIB", data)
        return TimedRuns((high << 32) | low, hz, bool(is_cycles))
