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
# Until a large exchange has been timed, its first resend waits as long as this slow a link
# (9600 baud) would carry it: an emulator's UART can absorb a few hundred bytes a second.
SLOWEST_LINK_BYTES_PER_SEC = 960
# A request of a run expected to take long is resent about this many times over that time.
RESENDS_PER_RUN = 8


class Command(enum.IntEnum):
    PING = 0x00
    INFO = 0x01
    TENSOR_INFO = 0x02
    WRITE_INPUT = 0x03
    RUN = 0x04
    READ_OUTPUT = 0x05
    TIME_RUNS = 0x06
    RESET_STATE = 0x07
    PROFILE_RUNS = 0x10  # profiling builds only: DeviceInfo.capabilities & CAP_PROFILE


# Capability bits: the byte after the model name in the INFO reply (0 when a runtime sends none).
CAP_PROFILE = 0x01


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
    capabilities: int = 0  # CAP_* bits

    @property
    def can_profile(self) -> bool:
        return bool(self.capabilities & CAP_PROFILE)


@dataclass(frozen=True)
class TimedRuns:
    ticks: int
    timer_hz: int
    timer_is_cycles: bool


@dataclass(frozen=True)
class ProfiledRuns:
    """PROFILE_RUNS: the ticks of `runs` runs in all, and of each kernel call summed over them."""

    ticks: int
    timer_hz: int
    timer_is_cycles: bool
    runs: int
    call_ticks: Tuple[int, ...]


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
        self._per_byte_known = False                # a large exchange has been timed
        self.resends = 0
        # Resends proven needless: a second reply to a resent request arrived, so the device had
        # received the first copy and the link was only slower than expected (a socket to an
        # emulator swallows a request at once; the guest drains it at its own pace).
        self.needless_resends = 0
        # (seq, command, seconds from first send to reply, bytes exchanged) of the last request
        # that was resent: its timing is learnt once a second reply shows the first copy arrived.
        self._resent: Optional[Tuple[int, int, float, int]] = None
        self._learnt_from_copy = False
        self.max_packet = 64  # raised by info()

    @property
    def max_body(self) -> int:
        """The largest command message (after the session header) both sides accept."""
        return self.max_packet - SESSION_HEADER.size

    def _resend_after(self, exchanged_bytes: int, timeout_sec: Optional[float] = None) -> float:
        if self._rtt_base is None:
            return self.max_resend_sec
        if exchanged_bytes > SMALL_EXCHANGE and not self._per_byte_known:
            # No figure yet for this size: a large exchange on a slow link may take far longer
            # than a ping, and a resend before its reply only adds the request again to the link.
            # A quarter of the call's timeout at most, so a lost first packet still gets resends.
            slow = exchanged_bytes / SLOWEST_LINK_BYTES_PER_SEC
            return max(self.max_resend_sec, min(slow, timeout_sec / 4) if timeout_sec else slow)
        expected = self._rtt_base + self._rtt_per_byte * exchanged_bytes
        return min(self._resend_cap(exchanged_bytes), max(MIN_RESEND_SEC, RTT_FACTOR * expected))

    def _resend_cap(self, exchanged_bytes: int) -> float:
        """The longest wait between resends: the retry timeout, or twice the expected round trip
        of this size when the link is slower than that (never resend what is still on the wire);
        unbounded (up to the deadline) while a large exchange's time is unknown."""
        if exchanged_bytes > SMALL_EXCHANGE and not self._per_byte_known:
            return float("inf")
        expected = (self._rtt_base or 0.0) + self._rtt_per_byte * exchanged_bytes
        return max(self.max_resend_sec, 2 * expected)

    def _learn_rtt(self, rtt: float, exchanged_bytes: int) -> None:
        if exchanged_bytes <= SMALL_EXCHANGE or self._rtt_base is None:
            self._rtt_base = rtt if self._rtt_base is None else 0.875 * self._rtt_base + 0.125 * rtt
        else:
            per_byte = max(0.0, rtt - self._rtt_base) / exchanged_bytes
            self._rtt_per_byte = 0.875 * self._rtt_per_byte + 0.125 * per_byte if self._per_byte_known else per_byte
            self._per_byte_known = True

    def _learn_from_needless_resend(self, rtt: float, exchanged_bytes: int) -> None:
        """A resend turned out needless: the first copy's reply took `rtt`. The link (or the
        emulator behind a socket) has slowed down, and each needless copy occupies it again and
        delays the next request, which would be resent in turn: a growing queue of copies until
        a call times out. So adopt the slower figure at once instead of smoothing towards it."""
        self.needless_resends += 1
        self._learnt_from_copy = True
        if exchanged_bytes <= SMALL_EXCHANGE or self._rtt_base is None:
            self._rtt_base = max(self._rtt_base or 0.0, rtt)
        else:
            self._rtt_per_byte = max(self._rtt_per_byte, max(0.0, rtt - self._rtt_base) / exchanged_bytes)
            self._per_byte_known = True

    def call(self, command: Command, args: bytes = b"", timeout_sec: Optional[float] = None,
             reply_bytes: int = 16, expected_sec: Optional[float] = None) -> bytes:
        """Send one request (resending it as needed) and return its reply data; raise
        DeviceError/ModelRunError for an error status, SessionError when the device is silent
        (``expected_sec``, how long the command should take, goes in that message)."""
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
        resend = self._resend_after(exchanged, timeout)
        # A device running the model reads nothing: resends meanwhile only pile up in buffers (a
        # full pipe blocks the host's next write) and are each answered from the kept reply
        # afterwards. So over a long run's expected time there are about RESENDS_PER_RUN of them.
        max_resend = self._resend_cap(exchanged)
        if expected_sec is not None:
            max_resend = max(max_resend, expected_sec / RESENDS_PER_RUN)
        attempts = 0
        first_sent_at = time.monotonic()
        self._learnt_from_copy = False
        try:
            while True:
                self.session.send(request)
                attempts += 1
                # The wait starts once the request has left (on a slow link, writing it takes
                # long), and goes on while bytes keep arriving: a large reply still on the wire
                # would only be sent again, doubling its time on the link.
                attempt_end = time.monotonic() + resend
                if deadline is not None:
                    attempt_end = min(attempt_end, deadline)
                reply = self._await_reply(command, attempt_end)
                while reply is None and self.session.last_receive_at > attempt_end - resend and (
                        deadline is None or time.monotonic() < deadline):
                    attempt_end = time.monotonic() + resend
                    if deadline is not None:
                        attempt_end = min(attempt_end, deadline)
                    reply = self._await_reply(command, attempt_end)
                if reply is not None:
                    timed = command not in (Command.RUN, Command.TIME_RUNS, Command.PROFILE_RUNS)
                    if attempts == 1 and timed:
                        self._learn_rtt(time.monotonic() - first_sent_at, exchanged)
                    # Whether the first copy or a resend got this reply shows only if a second
                    # reply comes (_await_reply); until then the timing is kept aside.
                    self._resent = ((self._seq, int(command), time.monotonic() - first_sent_at, exchanged)
                                    if attempts > 1 and timed else None)
                    return self._unpack(command, reply)
                if deadline is not None and time.monotonic() >= deadline:
                    expected = "" if expected_sec is None else f", where {expected_sec:.3g} s was expected"
                    raise SessionError(
                        f"the device stopped answering during {command.name}: no reply within {timeout:.3g} s"
                        f"{expected} ({attempts} attempts); it hung or was reset")
                self.resends += 1
                resend = min(max_resend, resend * 2)
                if self._learnt_from_copy:
                    # The previous request's resend proved needless while this one waited: the
                    # link is slower than the figures this call started with.
                    self._learnt_from_copy = False
                    max_resend = max(max_resend, self._resend_cap(exchanged))
                    resend = max(resend, min(max_resend, self._resend_after(exchanged, timeout)))
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
            # A late copy of an earlier reply: drop it. A copy answering the last resent request
            # means its first copy had arrived: that resend was needless.
            resent = self._resent
            if resent is not None and seq == resent[0] and reply_command == resent[1] | REPLY_FLAG:
                self._resent = None
                self._learn_from_needless_resend(resent[2], resent[3])

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
        capabilities = data[22 + name_len] if len(data) > 22 + name_len else 0
        self.max_packet = min(max_packet, host_max_packet) if host_max_packet else max_packet
        return DeviceInfo(cmd_version, f"{major}.{minor}.{patch}", max_packet, hz, bool(is_cycles),
                          n_in, n_out, workspace, name, capabilities)

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

    def run(self, timeout_sec: Optional[float] = None, expected_sec: Optional[float] = None) -> None:
        self.call(Command.RUN, timeout_sec=timeout_sec, expected_sec=expected_sec)

    def reset_state(self) -> None:
        """Zero the model's state kept across runs (SVDF); a no-op for a stateless model."""
        self.call(Command.RESET_STATE)

    def time_runs(self, number: int, timeout_sec: Optional[float] = None,
                  expected_sec: Optional[float] = None) -> TimedRuns:
        data = self.call(Command.TIME_RUNS, struct.pack("<I", number), timeout_sec=timeout_sec,
                         expected_sec=expected_sec)
        low, high, hz, is_cycles = struct.unpack_from("<IIIB", data)
        return TimedRuns((high << 32) | low, hz, bool(is_cycles))

    def profile_runs(self, number: int, timeout_sec: Optional[float] = None) -> ProfiledRuns:
        """Run the model `number` times on a profiling build and read its per-kernel tick table
        (in as many replies as the packet size needs)."""
        fixed = struct.Struct("<IIIBIHHH")
        calls: List[int] = []
        total = None
        num_calls = 0
        while True:
            args = struct.pack("<IH", number if total is None else 0, len(calls))
            expected_reply = REPLY_HEADER.size + fixed.size + 8 * (num_calls - len(calls)) + CHECK_SIZE
            data = self.call(Command.PROFILE_RUNS, args, timeout_sec=timeout_sec if total is None else None,
                             reply_bytes=min(expected_reply, self.max_body))
            low, high, hz, is_cycles, runs, num_calls, first, count = fixed.unpack_from(data)
            if first != len(calls) or count == 0 and first < num_calls:
                raise SessionError(f"PROFILE_RUNS: the device sent entries {first}..{first + count} of {num_calls}, "
                                   f"expected from {len(calls)}")
            calls.extend(struct.unpack_from(f"<{count}Q", data, fixed.size))  # u64 = low u32, high u32
            total = (high << 32) | low
            if len(calls) >= num_calls:
                return ProfiledRuns(total, hz, bool(is_cycles), runs, tuple(calls))
