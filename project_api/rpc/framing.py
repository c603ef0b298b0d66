"""microTVM-compatible framing (docs/rpc-protocol.md, "Framing").

A packet on the wire is ``FF FD``, the payload length (uint32 LE), the payload and a CRC-16/CCITT-FALSE
(uint16 LE) computed over the escaped wire bytes from ``FF FD`` through the last payload byte. Every
0xFF after ``FF FD`` is sent as ``FF FF``; ``FF FE`` is a no-op and ``FF FD`` aborts any packet in
progress. The first packet after a reset is preceded by a lone 0xFE.
"""

from __future__ import annotations

import binascii
import struct
from typing import List

ESCAPE = 0xFF
ESCAPE_NOP = 0xFE
ESCAPE_START = 0xFD
PACKET_START = b"\xff\xfd"
_ESC = b"\xff"

# A corrupted length field must not make the host buffer gigabytes: no device sends more.
DEFAULT_MAX_PAYLOAD = 1 << 20


def _escape(data: bytes) -> bytes:
    return data.replace(_ESC, b"\xff\xff")


def frame(payload: bytes) -> bytes:
    """The wire bytes of one packet (without the lone 0xFE of a first packet)."""
    covered = PACKET_START + _escape(struct.pack("<I", len(payload))) + _escape(payload)
    crc = binascii.crc_hqx(covered, 0xFFFF)
    return covered + _escape(struct.pack("<H", crc))


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

    def _start(self) -> None:
        self._state = _LENGTH
        self._field = bytearray()
        self._need = 4
        self._crc = binascii.crc_hqx(PACKET_START, 0xFFFF)

    def _take(self, literal: bytes, escaped: bool, packets: List[bytes]) -> None:
        """Consume unescaped bytes; ``escaped`` marks one 0xFF that came as ``FF FF`` on the wire."""
        while literal and self._state != _HUNT:
            chunk = literal[: self._need]
            literal = literal[len(chunk):]
            if self._state != _CRC:
                self._crc = binascii.crc_hqx(b"\xff\xff" if escaped else chunk, self._crc)
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
        i, n = 0, len(data)
        while i < n:
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
                        self._crc = binascii.crc_hqx(b"\xff\xfe", self._crc)
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
            self._escape = True
            i = j + 1
        return packets
