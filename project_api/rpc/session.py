"""microTVM-compatible session layer, host side (docs/rpc-protocol.md, "Session").

Every packet payload starts with a 3-byte header: uint16 LE session id, uint8 message type. The
host opens a session with a start-session request carrying its nonce and resends it every
``session_start_retry_timeout_sec`` (1 s when 0) until the device answers or
``session_start_timeout_sec`` runs out (0 = never). The device's nonce completes the session id; normal messages carry it, and the device's
log messages are passed to a callback (the ``project_api.device`` logger by default).
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import time
from typing import Callable, Deque, Optional, Tuple

from ..errors import IoTimeoutError, SessionError
from .framing import Framer, Unframer
from .transport import Transport, TransportTimeouts

SESSION_VERSION = 1
MSG_START_INIT = 0x00
MSG_START_REPLY = 0x01
MSG_TERMINATE = 0x02
MSG_LOG = 0x03
MSG_NORMAL = 0x10
HEADER = struct.Struct("<HB")

READ_CHUNK = 65536
DEFAULT_START_RETRY_SEC = 1.0

_DEVICE_LOG = logging.getLogger("project_api.device")


def next_nonce(nonce: int) -> int:
    """microTVM's nonce update: ((n << 5) | (n >> 5)) + 1 in 8 bits, never 0."""
    value = (((nonce << 5) | (nonce >> 5)) + 1) & 0xFF
    return value or 1


def _default_log(text: str) -> None:
    _DEVICE_LOG.info("%s", text)


class RpcSession:
    """One session over a transport: handshake, normal messages, logs."""

    def __init__(self, transport: Transport, timeouts: Optional[TransportTimeouts] = None,
                 on_log: Callable[[str], None] = _default_log, nonce: Optional[int] = None):
        self.transport = transport
        self.timeouts = timeouts or transport.timeouts
        self.on_log = on_log
        self.session_id: Optional[int] = None
        self._nonce = os.urandom(1)[0] if nonce is None else nonce
        self._framer = Framer()
        self._unframer = Unframer()
        self._packets: Deque[bytes] = collections.deque()
        # When bytes last came in (time.monotonic()): a reply still arriving on a slow link.
        self.last_receive_at = 0.0

    # -- packets -----------------------------------------------------------------------------
    def _send_packet(self, session_id: int, msg_type: int, body: bytes) -> None:
        packet = self._framer.frame(HEADER.pack(session_id, msg_type) + body)
        self.transport.write(packet, self._write_timeout())

    def _write_timeout(self) -> Optional[float]:
        established = self.timeouts.session_established_timeout_sec
        return established or None

    def _next_packet(self, deadline: Optional[float]) -> Optional[bytes]:
        """The next packet with a good CRC, or None when the deadline passes first."""
        while not self._packets:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            try:
                data = self.transport.read(READ_CHUNK, left)
            except IoTimeoutError:
                return None
            self.last_receive_at = time.monotonic()
            self._packets.extend(self._unframer.feed(data))
        return self._packets.popleft()

    def _next_message(self, deadline: Optional[float]) -> Optional[Tuple[int, int, bytes]]:
        """(session id, message type, body) of the next packet that is not a log message (logs
        go to on_log meanwhile), or None when the deadline passes first."""
        while True:
            packet = self._next_packet(deadline)
            if packet is None:
                return None
            if len(packet) < HEADER.size:
                continue
            session_id, msg_type = HEADER.unpack_from(packet)
            body = packet[HEADER.size:]
            if msg_type != MSG_LOG:
                return session_id, msg_type, body
            self.on_log(body.decode("utf-8", errors="replace"))

    # -- handshake ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open a new session, resending the request as the retry timeout says."""
        retry, total, _ = self.timeouts
        # Unlike the legacy host, a retry timeout of 0 does not mean "never resend": a lost request
        # would hang the handshake. Resending is harmless (the device answers a repeated request
        # with the same session), so 0 means the default interval.
        retry = retry or DEFAULT_START_RETRY_SEC
        self._nonce = next_nonce(self._nonce)
        self._packets.clear()
        self.session_id = None
        deadline = time.monotonic() + total if total else None
        while True:
            self._send_packet(self._nonce, MSG_START_INIT, bytes([SESSION_VERSION]))
            attempt_end = time.monotonic() + retry
            if deadline is not None:
                attempt_end = min(attempt_end, deadline)
            while True:
                message = self._next_message(attempt_end)
                if message is None:
                    break
                session_id, msg_type, body = message
                if msg_type == MSG_START_REPLY and session_id & 0xFF == self._nonce:
                    if body[:1] != bytes([SESSION_VERSION]):
                        raise SessionError(
                            f"the device speaks session version {body[0] if body else '?'}, we speak "
                            f"{SESSION_VERSION}: rebuild and flash the project with this microtvm-projects")
                    self.session_id = session_id
                    return
            if deadline is not None and time.monotonic() >= deadline:
                raise SessionError(
                    f"the device did not answer the session start within {total:g} s: check that it runs "
                    f"a host_driven project and that the port and baud rate are right")

    # -- established session -----------------------------------------------------------------
    def send(self, message: bytes) -> None:
        if self.session_id is None:
            raise SessionError("no session: call start() first")
        self._send_packet(self.session_id, MSG_NORMAL, message)

    def receive(self, deadline: Optional[float]) -> Optional[bytes]:
        """The body of the next normal message of this session, or None at the deadline
        (time.monotonic() seconds; None = wait forever). Logs are passed on meanwhile."""
        while True:
            message = self._next_message(deadline)
            if message is None:
                return None
            session_id, msg_type, body = message
            if msg_type == MSG_NORMAL and session_id == self.session_id:
                return body
            elif msg_type == MSG_TERMINATE and session_id == self.session_id:
                self.session_id = None
                raise SessionError("the device ended the session (it was reset or restarted)")
            # anything else (late start replies, other sessions) is stale: drop it

    def terminate(self) -> None:
        """Tell the device the session is over (best effort: the link may already be gone)."""
        if self.session_id is not None:
            session_id, self.session_id = self.session_id, None
            self._send_packet(session_id, MSG_TERMINATE, b"")
