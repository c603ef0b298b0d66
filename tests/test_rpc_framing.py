"""Host-side framing and session layers: microTVM's golden vectors, and the unframer under
hypothesis (no crash, no packet invented, every framed packet recovered)."""

import binascii
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_api.rpc import checksums, framing
from project_api.rpc.session import RpcSession, next_nonce
from project_api.rpc.transport import SerialTransport, TransportTimeouts

GOLDEN_FRAMES = [
    (b"one", "FF FD 03 00 00 00 6F 6E 65 58 F4"),
    (b"", "FF FD 00 00 00 00 83 44"),
    (b'es_\xff_capeir/^>t@"hr',
     "FF FD 13 00 00 00 65 73 5F FF FF 5F 63 61 70 65 69 72 2F 5E 3E 74 40 22 68 72 B4 FF FF"),
]


@pytest.mark.parametrize("payload,wire", GOLDEN_FRAMES)
def test_golden_frames(payload, wire):
    wire = bytes.fromhex(wire)
    assert framing.frame(payload) == wire
    assert framing.Unframer().feed(wire) == [payload]
    # byte by byte too: no state may depend on how the stream was cut
    unframer, packets = framing.Unframer(), []
    for byte in wire:
        packets += unframer.feed(bytes([byte]))
    assert packets == [payload]


def test_first_packet_after_reset_starts_with_nop():
    framer = framing.Framer()
    assert framer.frame(b"one") == b"\xfe" + framing.frame(b"one")
    assert framer.frame(b"one") == framing.frame(b"one")


def test_unframer_drops_bad_crc_and_resynchronises():
    good = framing.frame(b"payload")
    bad = bytearray(good)
    bad[8] ^= 0x01
    unframer = framing.Unframer()
    assert unframer.feed(bytes(bad) + good) == [b"payload"]
    assert unframer.bad_crc == 1


def test_unframer_packet_start_aborts_a_truncated_packet():
    good = framing.frame(b"abc")
    unframer = framing.Unframer()
    assert unframer.feed(good[:-3] + good) == [b"abc"]
    assert unframer.aborted == 1


def test_unframer_refuses_oversized_length():
    unframer = framing.Unframer(max_payload=16)
    assert unframer.feed(framing.frame(bytes(17)) + framing.frame(b"ok")) == [b"ok"]
    assert unframer.too_long == 1


class RecordingLoop(SerialTransport):
    """pyserial's loop:// (hands back everything written), remembering what the host wrote."""

    def __init__(self):
        super().__init__("loop://", timeouts=TransportTimeouts(0.5, 2, 2))
        self.written = []

    def write(self, data, timeout_sec):
        self.written.append(bytes(data))
        super().write(data, timeout_sec)


def test_golden_session_over_pyserial_loop():
    """The facts' session example: host nonce 0x3c -> 0x82 sends the start request, the device's
    reply (nonce 0x66) establishes session 0x6682, and "hello" goes out as the golden frame.
    The device's reply is put in the loop first; the host's own looped-back request is ignored."""
    device_reply = bytes.fromhex("FF FD 04 00 00 00 82 66 01 01 81 F3")
    with RecordingLoop() as transport:
        transport.write(device_reply, 1)
        session = RpcSession(transport, nonce=0x3C)
        session.start()
        assert session.session_id == 0x6682
        # the lone 0xFE of a first packet, then the golden start request
        assert transport.written[1] == bytes.fromhex("FE FF FD 04 00 00 00 82 00 00 01 7B E9")
        session.send(b"hello")
        assert transport.written[2] == bytes.fromhex("FF FD 08 00 00 00 82 66 10 68 65 6C 6C 6F 90 28")
        assert session.receive(time.monotonic() + 1) == b"hello"  # looped back: a message of our session


def test_nonce_update():
    assert next_nonce(0x3C) == 0x82
    assert all(next_nonce(n) != 0 for n in range(256))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048), st.lists(st.integers(1, 64), max_size=40))
def test_unframer_survives_any_bytes(data, cuts):
    """Arbitrary wire bytes, cut anywhere: no exception, and every packet it returns is real
    (its CRC matched), which for random bytes means almost never any."""
    unframer = framing.Unframer(max_payload=4096)
    pos = 0
    for cut in cuts + [len(data)]:
        for packet in unframer.feed(data[pos:pos + cut]):
            assert isinstance(packet, bytes)
        pos += cut


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8),
       st.lists(st.binary(max_size=40), min_size=9, max_size=9))
def test_unframer_recovers_packets_between_garbage(payloads, garbage):
    """Packets separated by garbage that ends in an aborting FF FD are all recovered, in order."""
    wire = b"".join(g.replace(b"\xff", b"") + framing.frame(p) for g, p in zip(garbage, payloads))
    assert framing.Unframer().feed(wire) == payloads


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000), st.integers(1, 255))
def test_unframer_rejects_single_corrupted_byte(payload, where, xor):
    """One damaged byte anywhere in a packet never yields a different payload. (A damaged escape
    can leave a lone FF that swallows the next packet's start, as in microTVM: the command layer
    resends; a lone FE, as a sender puts before its first packet, ends such an escape.)"""
    wire = bytearray(framing.frame(payload))
    wire[where % len(wire)] ^= xor
    packets = framing.Unframer().feed(bytes(wire) + framing.frame(b"other"))
    assert all(p in (payload, b"other") for p in packets)
    packets = framing.Unframer().feed(bytes(wire) + b"\xfe" + framing.frame(b"next"))
    assert packets[-1] == b"next"
    assert all(p == payload for p in packets[:-1])


def test_unframer_does_not_wait_for_a_packet_that_a_new_start_aborted():
    """A damaged length promises 60,000 bytes; the next packet in the next read aborts it and
    comes out at once (waiting for the promised bytes would stall the host until resends fill them)."""
    damaged = framing.frame(b"x" * 100)
    damaged = damaged[:2] + bytes([0x60, 0xEA]) + damaged[4:]  # length 60000
    unframer = framing.Unframer()
    assert unframer.feed(damaged) == []
    assert unframer.feed(framing.frame(b"next")) == [b"next"]
    assert unframer.aborted == 1


# Payloads rich in 0xFF (hypothesis favours zero bytes; these become escapes) or plain.
_PAYLOADS = st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b.replace(b"\0", b"\xff")))


@settings(max_examples=400, deadline=None)
@given(st.lists(_PAYLOADS, min_size=1, max_size=6), st.lists(st.binary(max_size=12), min_size=6, max_size=6),
       st.lists(st.integers(1, 700), max_size=30), st.integers(0, 5000), st.integers(0, 255))
def test_unframer_result_does_not_depend_on_the_cuts(payloads, garbage, cuts, where, xor):
    """Whole packets take the bulk path, odd escapes the byte-wise one: whatever the cuts, the
    same packets come out at the same moments, with the same error counts, as from the byte-wise
    state machine alone, and without damage every packet comes out."""
    wire = bytearray(b"".join(g.replace(b"\xff", b"") + framing.frame(p) for g, p in zip(garbage, payloads)))
    wire[where % len(wire)] ^= xor  # may make an escape, a start, a bad CRC, a huge length...
    wire = bytes(wire)
    by_byte, expected = framing.Unframer(), []
    cut_up, got, pos = framing.Unframer(), [], 0
    for cut in cuts + [len(wire)]:
        piece, pos = wire[pos:pos + cut], pos + cut
        at = 0
        while at < len(piece):  # the reference: the byte-wise state machine alone, never the bulk path
            at = by_byte._feed_bytes(piece, at, expected)
        got += cut_up.feed(piece)
        assert got == expected  # every packet as soon as its last byte arrives, never later
    counters = ("bad_crc", "bad_escape", "too_long", "aborted")
    assert [getattr(cut_up, c) for c in counters] == [getattr(by_byte, c) for c in counters]
    if xor == 0:
        assert got == payloads


@given(st.binary(max_size=5000), st.integers(0, 0xFFFF))
def test_fast_checksums_match_the_standard_library(data, init):
    """The fast checksums (anycrc's, when installed) are binascii's CRC-CCITT, continued from any
    value, and zlib's CRC-32."""
    assert checksums.crc16(data, init) == binascii.crc_hqx(data, init)
    assert checksums.crc32(data) == zlib.crc32(data)
