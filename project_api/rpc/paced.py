"""A transport that moves bytes no faster than a real link: a UART at a baud rate, USB full speed.

``PacedTransport(inner, LINKS["uart-115200"])`` wraps any Transport (the host board's pipes,
QEMU's UART socket) and delivers each byte, in each direction, no sooner than the link would:
a byte takes ``bits_per_byte / bit_rate`` seconds on the wire (10 bits for a UART's 8N1 frame:
start, 8 data, stop), and the bytes of one direction follow each other back to back. Writes are
passed on in slices of about a millisecond of wire time, each once its last byte would have left
(a UART driver's FIFO); read bytes are held until their arrival time. So a request, its reply and
the round trip between them cost what they would on the real link, and bench/rpc.py can restate
the throughput target as a share of the link's raw payload rate.
"""

from __future__ import annotations

import collections
import time
from typing import Deque, NamedTuple, Optional, Tuple

from ..errors import IoTimeoutError, TransportClosedError
from .transport import Transport


class Link(NamedTuple):
    name: str
    bit_rate: float        # bits per second on the wire
    bits_per_byte: int     # wire bits per payload byte

    @property
    def bytes_per_second(self) -> float:
        """The link's raw payload rate."""
        return self.bit_rate / self.bits_per_byte


LINKS = {
    "uart-115200": Link("UART 115200 baud 8N1", 115_200, 10),
    "uart-921600": Link("UART 921600 baud 8N1", 921_600, 10),
    # USB full speed signals 12 Mbit/s; bulk transfers carry at most 1,216,000 B/s of it
    # (19 packets of 64 B per 1 ms frame), so pacing at the signalling rate is the stricter target.
    "usb-fs": Link("USB full speed 12 Mbit/s", 12_000_000, 8),
}

# Bytes are released in slices of about this much wire time: fine enough that pacing adds little
# latency, coarse enough that the host's sleep granularity does not dominate.
SLICE_SEC = 0.001


class PacedTransport(Transport):
    def __init__(self, inner: Transport, link: Link):
        self.inner = inner
        self.link = link
        self.timeouts = inner.timeouts
        self._byte_sec = 1.0 / link.bytes_per_second
        self._slice = max(1, int(SLICE_SEC * link.bytes_per_second))
        self._tx_free = 0.0   # when the transmit wire is free again
        self._rx_free = 0.0   # when the last received byte has arrived
        self._pending: Deque[Tuple[float, bytes]] = collections.deque()  # (arrival time, bytes)

    def open(self) -> None:
        self.inner.open()
        self._tx_free = self._rx_free = time.monotonic()
        self._pending.clear()

    def close(self) -> None:
        self._pending.clear()
        self.inner.close()

    def write(self, data: bytes, timeout_sec: Optional[float]) -> None:
        view = memoryview(data)
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        # The wire is busy back to back from the write on (or from the end of the previous one,
        # if it is still going): the schedule, not the moments sleep() returns, says when each
        # slice is out, so oversleeping never slows the link down.
        self._tx_free = max(self._tx_free, time.monotonic())
        for start in range(0, len(view), self._slice):
            piece = view[start:start + self._slice]
            self._tx_free += len(piece) * self._byte_sec
            _sleep_until(self._tx_free)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.inner.write(piece, left)

    def read(self, n: int, timeout_sec: Optional[float]) -> bytes:
        deadline = None if timeout_sec is None else time.monotonic() + timeout_sec
        if not self._pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._receive(self.inner.read(max(n, self._slice), left))
        # Take in whatever else is already there without waiting, so arrival times stay exact.
        while True:
            try:
                self._receive(self.inner.read(1 << 16, 0))
            except IoTimeoutError:
                break
            except TransportClosedError:
                if self._pending:
                    break  # deliver what arrived first; the next read reports the close
                raise
        arrival, piece = self._pending[0]
        if deadline is not None and arrival > deadline:
            _sleep_until(deadline)
            raise IoTimeoutError(f"no byte within {timeout_sec:g} s on the paced link ({self.link.name})")
        _sleep_until(arrival)
        if len(piece) > n:
            self._pending[0] = (arrival, piece[n:])
            return piece[:n]
        self._pending.popleft()
        return piece

    def _receive(self, data: bytes) -> None:
        # Bytes the peer wrote while the wire was still busy follow the earlier ones back to back;
        # on an idle wire they start when they are seen.
        self._rx_free = max(self._rx_free, time.monotonic())
        for start in range(0, len(data), self._slice):
            piece = data[start:start + self._slice]
            self._rx_free += len(piece) * self._byte_sec
            self._pending.append((self._rx_free, bytes(piece)))


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)
