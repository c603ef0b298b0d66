"""The protocol's two checksums (docs/rpc-protocol.md): CRC-16/CCITT-FALSE over frames and
zlib's CRC-32 over command messages.

Both come from anycrc when it is installed: carry-less multiplication makes them 3x (CRC-32) and
80x (CRC-16) faster than zlib's and binascii's tables, which on a fast link would otherwise cost
more than moving the bytes. The standard library gives the same numbers without it.
"""

from __future__ import annotations

import binascii
import zlib

try:
    import anycrc
except ImportError:  # pragma: no cover - exercised where anycrc is absent
    anycrc = None


def crc16_stdlib(data, init: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of data, continuing from init (0xFFFF starts a new one)."""
    return binascii.crc_hqx(data, init)


def crc32_stdlib(data, previous: int = 0) -> int:
    """zlib's CRC-32 of data, continuing the CRC-32 of what came before it (0: nothing)."""
    return zlib.crc32(data, previous)


if anycrc is not None:
    crc16 = anycrc.Model("CRC16-CCITT-FALSE").calc
    crc32 = anycrc.Model("CRC32").calc
else:
    crc16, crc32 = crc16_stdlib, crc32_stdlib
