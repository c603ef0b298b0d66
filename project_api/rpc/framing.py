"""microTVM-compatible framing (docs/rpc-protocol.md, "Framing").

A packet on the wire is ``FF FD``, the payload length (uint32 LE), the payload and a CRC-16/CCITT-FALSE
(uint16 LE) computed over the escaped wire bytes from ``FF FD`` through the last payload byte. Every
0xFF after ``FF FD`` is sent as ``FF FF``; ``FF FE`` is a no-op and ``FF FD`` aborts any packet in
progress. The first packet after a reset is preceded by a lone 0xFE.
"""

from __future__ import annotations

import struct
from typing import List, Optional

from .checksums import crc16

ESCAPE = 0xFF
ESCAPE_NOP = 0xFE
ESCAPE_START = 0xFD
PACKET_START = b"\xff\xfd"
_ESC = b"\xff"

# A corrupted length field must not make the host buffer gigabytes: no device sends more.
DEFAULT_MAX_PAYLOAD = 1 << 20

_LENGTH_FIELD = struct.Struct("<I")
_CRC_FIELD = struct.Struct("<H")


def _escape(data: bytes) -> bytes:
    return data.replace(_ESC, b"\xff\xff")


def frame(payload: bytes) -> bytes:
    """The wire bytes of one packet (without the lone 0xFE of a first packet)."""
    head = PACKET_START + _escape(_LENGTH_FIELD.pack(len(payload)))
    body = _escape(payload)
    crc = crc16(body, crc16(head, 0xFFFF))
    return b"".join((head, body, _escape(_CRC_FIELD.pack(crc))))


class Framer:
    """Frames packets for one stream, putting the lone 0xFE before the first one."""

    def __init__(self):
        self._first = True

    def reset(self) -> None:
        self._first = True

    def frame(self, payload: bytes) -> bytes:
        wire = frame(payload)
        if self._first:
            self._first = False
            return b"\xfe" + wire
        return wire


_HUNT, _LENGTH, _PAYLOAD, _CRC = range(4)
_PAIR = b"\xff\xff"


def _wire_end(data: bytes, start: int, want: int) -> int:
    """Where the wire bytes from `start` that unescape to `want` bytes end, if every FF among them
    is half of an ``FF FF``: the index, checked by the caller (_unescape); beyond len(data) when
    data ends first (the least the end can be; what is there is well formed so far); -1 when
    another escape comes."""
    n = len(data)
    end = counted = start + want
    ffs = data.count(_ESC, start, min(end, n))
    while end <= n:
        # every FF FF is one byte; a last lone FF needs the byte after it
        need = start + want + (ffs + 1) // 2
        if need == end:
            return end
        ffs += data.count(_ESC, counted, min(need, n))
        end = counted = need
    unpaired = data[start:n].replace(_PAIR, b"")
    lone = unpaired.find(_ESC)
    return end if lone < 0 or lone == len(unpaired) - 1 else -1


def _unescape(data: bytes, start: int, end: int, want: int) -> Optional[bytes]:
    """The bytes of data[start:end] without escapes, or None when they hold any escape but FF FF."""
    plain = data[start:end].replace(_PAIR, _ESC)
    return plain if len(plain) == want else None


class Unframer:
    """Turns wire bytes into packets. Packets with a bad CRC, a bad escape or an oversized length
    are dropped and counted; parsing resynchronises at the next ``FF FD``."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.bad_crc = self.bad_escape = self.too_long = self.aborted = 0
        self._state = _HUNT
        self._escape = False
        self._field = bytearray()   # unescaped bytes of the current field
        self._need = 0              # bytes the current field still needs
        self._crc = 0
        self._payload = b""
        # the start of a packet _feed_whole_packets will finish: its pieces, their size, the
        # least size that can finish it, and whether they end with an FF
        self._pending: List[bytes] = []
        self._pending_size = self._pending_need = 0
        self._pending_lone = False

    def _start(self) -> None:
        self._state = _LENGTH
        self._field = bytearray()
        self._need = 4
        self._crc = crc16(PACKET_START, 0xFFFF)

    def _take(self, literal: bytes, escaped: bool, packets: List[bytes]) -> None:
        """Consume unescaped bytes; ``escaped`` marks one 0xFF that came as ``FF FF`` on the wire."""
        while literal and self._state != _HUNT:
            chunk = literal[: self._need]
            literal = literal[len(chunk):]
            if self._state != _CRC:
                self._crc = crc16(b"\xff\xff" if escaped else chunk, self._crc)
            self._field += chunk
            self._need -= len(chunk)
            if not self._need:
                self._field_done(packets)

    def _field_done(self, packets: List[bytes]) -> None:
        field, self._field = self._field, bytearray()
        if self._state == _LENGTH:
            length = struct.unpack("<I", field)[0]
            if length > self.max_payload:
                self.too_long += 1
                self._state = _HUNT
            elif length:
                self._state, self._need = _PAYLOAD, length
            else:
                self._payload = b""
                self._state, self._need = _CRC, 2
        elif self._state == _PAYLOAD:
            self._payload = bytes(field)
            self._state, self._need = _CRC, 2
        else:
            self._state = _HUNT
            if struct.unpack("<H", field)[0] == self._crc:
                packets.append(self._payload)
            else:
                self.bad_crc += 1

    def feed(self, data: bytes) -> List[bytes]:
        """Consume wire bytes; return the packets they completed, in order."""
        packets: List[bytes] = []
        if self._pending:
            if self._may_wait(data):
                self._pending.append(data)
                self._pending_size += len(data)
                return packets
            self._pending.append(data)
            data, self._pending = b"".join(self._pending), []
        i, n = 0, len(data)
        while i < n:
            i = self._feed_whole_packets(data, i, packets)
            if i < n:
                i = self._feed_bytes(data, i, packets)
        return packets

    def _may_wait(self, data: bytes) -> bool:
        """True when `data` cannot complete the pending packet and holds no escape but FF FF, so
        parsing can wait for more instead of scanning the packet again."""
        if self._pending_lone or self._pending_size + len(data) >= self._pending_need:
            return False
        unpaired = data.replace(_PAIR, b"")
        lone = unpaired.find(_ESC)
        self._pending_lone = lone >= 0  # an FF at the very end pairs with the next byte
        return lone < 0 or lone == len(unpaired) - 1

    def _feed_whole_packets(self, data: bytes, i: int, packets: List[bytes]) -> int:
        """The common case, in a few C-speed calls per packet: between packets, a packet whose
        only escapes are ``FF FF`` is unescaped with one replace and checked with one CRC call.
        Returns where the byte-wise parser (_feed_bytes) must take over; the start of such a
        packet that is not all there yet waits in _pending."""
        n = len(data)
        while self._state == _HUNT and not self._escape:
            i = data.find(_ESC, i)
            if i < 0:
                return n  # bytes between packets: ignored
            if i + 1 >= n:
                need = i + 6
                break
            if data[i + 1] != ESCAPE_START:
                return i
            need = length_end = _wire_end(data, i + 2, 4)
            if length_end > n:
                break
            length_field = None if length_end < 0 else _unescape(data, i + 2, length_end, 4)
            if length_field is None:
                return i
            length = _LENGTH_FIELD.unpack(length_field)[0]
            if length > self.max_payload:
                return i
            need = end = _wire_end(data, length_end, length + 2)
            if end > n:
                break
            body = None if end < 0 else _unescape(data, length_end, end, length + 2)  # payload and CRC
            if body is None:
                return i
            crc_wire_start = end - 2 - body.count(_ESC, length)
            if _CRC_FIELD.unpack_from(body, length)[0] == crc16(memoryview(data)[i:crc_wire_start], 0xFFFF):
                packets.append(body[:length])
            else:
                self.bad_crc += 1
            i = end
        else:
            return i  # inside a packet or an escape: the byte-wise parser goes on
        # a packet's start: wait for the rest (at least `need` - i bytes from its start)
        self._pending, self._pending_size, self._pending_need = [data[i:]], n - i, need - i
        self._pending_lone = data[-1] == ESCAPE  # perhaps half of a pair: scan again next time
        return n

    def _feed_bytes(self, data: bytes, i: int, packets: List[bytes]) -> int:
        """The state machine, one escape at a time; returns where the bulk path can take over
        again (between packets, at an FF), or len(data)."""
        start, n = i, len(data)
        while i < n:
            if i > start and self._state == _HUNT and not self._escape:
                return i
            if self._escape:
                self._escape = False
                byte = data[i]
                i += 1
                if byte == ESCAPE_START:
                    if self._state != _HUNT:
                        self.aborted += 1
                    self._start()
                elif byte == ESCAPE_NOP:
                    if self._state in (_LENGTH, _PAYLOAD):
                        self._crc = crc16(b"\xff\xfe", self._crc)
                elif byte == ESCAPE:
                    self._take(b"\xff", True, packets)
                else:
                    if self._state != _HUNT:
                        self.bad_escape += 1
                    self._state = _HUNT
                continue
            j = data.find(_ESC, i)
            end = n if j < 0 else j
            if end > i and self._state != _HUNT:
                run = bytes(data[i:end])
                self._take(run, False, packets)
            if j < 0:
                break
            if self._state == _HUNT and j > start:
                return j
            self._escape = True
            i = j + 1
        return n
