"""PacedTransport: bytes move at the link's rate both ways, and the RPC over a paced link makes
one round trip per request (no resend while a request or reply is still on the wire)."""

import time

import numpy as np
import pytest

from project_api.rpc.paced import LINKS, Link, PacedTransport
from project_api.rpc.transport import SubprocessTransport, TransportTimeouts
from project_api.session import Session
from rpc_test_device import build_test_device, expected_outputs

TIMEOUTS = TransportTimeouts(1, 10, 10)


def test_echo_through_a_paced_pipe_takes_the_wire_time():
    link = Link("test 92160 B/s", 921_600, 10)
    data = bytes(range(256)) * 36  # 9216 bytes: 0.1 s on the wire each way
    with PacedTransport(SubprocessTransport(["cat"], timeouts=TIMEOUTS), link) as transport:
        start = time.monotonic()
        transport.write(data, 5)
        sent = time.monotonic() - start
        echoed = b""
        while len(echoed) < len(data):
            echoed += transport.read(len(data), 5)
        total = time.monotonic() - start
    assert echoed == data
    assert sent >= 0.099  # the write returns when its last byte is out
    assert 0.1 <= total < 0.1 + 0.1 + 0.05  # the echo arrives paced too, overlapping the write


@pytest.fixture(scope="module")
def test_device(tmp_path_factory):
    return build_test_device(tmp_path_factory.mktemp("paced") / "rpc_test_device")


def test_rpc_on_a_paced_uart_makes_one_round_trip_per_request(test_device):
    link = LINKS["uart-921600"]
    data = np.random.default_rng(0).standard_normal((4, 700)).astype(np.float32)
    with Session(PacedTransport(SubprocessTransport([str(test_device)], timeouts=TIMEOUTS), link)) as sess:
        sess.set_input(0, data)  # the first large exchange: timed, never resent
        commands = sess.commands
        room = commands.max_body - 4 - 6 - 4
        start = time.monotonic()
        sess.set_input(0, data)
        elapsed = time.monotonic() - start
        sess.set_input(1, np.zeros(sess.get_info().inputs[1].shape, np.int8))
        sess.run()
        assert np.array_equal(sess.get_output(0), expected_outputs(data, np.zeros(1, np.int8))[0])
        assert commands.resends == 0
    wire_sec = data.nbytes / link.bytes_per_second
    requests = -(-data.nbytes // room)
    assert requests >= 2  # the packet limit splits the tensor: each piece is one round trip
    # The link, not the protocol, is the limit (the target is >= 90 %, measured by bench/rpc.py;
    # a shared CI machine gets some slack here).
    assert wire_sec <= elapsed < wire_sec / 0.75
