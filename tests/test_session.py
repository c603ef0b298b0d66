"""project_api.session.Session over the transports: the real test device behind a pipe
(SubprocessTransport), a TCP socket and a pty (SerialTransport through pyserial)."""

import os
import pty
import socket
import subprocess
import threading
import time
import tty

import numpy as np
import pytest

from project_api.errors import SessionError
from project_api.rpc.transport import SerialTransport, SubprocessTransport, TransportTimeouts
from project_api.session import Session
from rpc_test_device import build_test_device, expected_outputs

TIMEOUTS = TransportTimeouts(0.5, 5, 5)


@pytest.fixture(scope="session")
def test_device(tmp_path_factory):
    return build_test_device(tmp_path_factory.mktemp("device") / "rpc_test_device")


@pytest.fixture
def session(test_device):
    with Session(SubprocessTransport([str(test_device)], timeouts=TIMEOUTS)) as sess:
        yield sess


def _check_inference(sess, seed=0):
    rng = np.random.default_rng(seed)
    in_f32 = rng.standard_normal((4, 700)).astype(np.float32)
    in_i8 = rng.integers(-127, 127, 5, dtype=np.int8)
    sess.set_input("in_f32", in_f32)
    sess.set_input(1, in_i8)
    sess.run()
    want_f32, want_i8 = expected_outputs(in_f32, in_i8)
    out = sess.get_output(0)
    assert out.dtype == np.float32 and out.shape == (4, 700) and np.array_equal(out, want_f32)
    out = sess.get_output("out_i8")
    assert out.dtype == np.int8 and np.array_equal(out, want_i8)


def test_inference_over_a_pipe(session):
    info = session.get_info()
    assert info.model_name == "rpc_test_model"
    assert [t.name for t in info.inputs] == ["in_f32", "in_i8"]
    assert [t.shape for t in info.outputs] == [(4, 700), (5,)]
    _check_inference(session)


def test_set_input_checks_name_dtype_and_shape(session):
    with pytest.raises(SessionError, match=r"input 'in_f32' must be float32 with shape \[4, 700\], "
                                           r"got float64 with shape \[4, 700\]"):
        session.set_input("in_f32", np.zeros((4, 700)))
    with pytest.raises(SessionError, match=r"input 'in_i8' must be int8 with shape \[5\], got int8 with shape \[6\]"):
        session.set_input(1, np.zeros(6, np.int8))
    with pytest.raises(SessionError, match="no input named 'x'; its inputs are 'in_f32', 'in_i8'"):
        session.set_input("x", np.zeros(5, np.int8))
    with pytest.raises(SessionError, match="no output 5: it has 2 outputs"):
        session.get_output(5)


def test_time_evaluate_uses_the_device_timer(session):
    timing = session.time_evaluate(number=20, repeat=3)
    assert len(timing.results) == 3 and all(0 < r < 1 for r in timing.results)
    assert timing.cycles is None  # the host board's timer counts nanoseconds, not cycles
    assert timing.min <= timing.median <= timing.max
    with pytest.raises(SessionError, match="number >= 1"):
        session.time_evaluate(number=0)


def test_closed_session_says_so(test_device):
    transport = SubprocessTransport([str(test_device)], timeouts=TIMEOUTS)
    with Session(transport) as sess:
        process = transport.process
    assert process.wait(timeout=5) == 0  # the device program ended: nothing leaks
    with pytest.raises(SessionError, match="not open"):
        sess.run()


def test_handshake_gives_up_with_a_clear_error(tmp_path):
    """A program that never answers: the start request is retried, then a clear error."""
    transport = SubprocessTransport(["sleep", "30"], timeouts=TransportTimeouts(0.1, 0.5, 1))
    with pytest.raises(SessionError, match="did not answer the session start within 0.5 s"):
        Session(transport).open()
    assert transport.process is None  # closed on failure


def test_inference_over_a_tcp_socket(test_device):
    """pyserial's socket:// (how QEMU's UART is reached) to the device program on a TCP socket."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        transport = SerialTransport(f"socket://127.0.0.1:{port}", timeouts=TIMEOUTS)
        transport.open()
        connection, _ = listener.accept()
        with connection:
            device = subprocess.Popen([str(test_device)], stdin=connection.fileno(), stdout=connection.fileno())
        try:
            with Session(transport) as sess:
                _check_inference(sess, seed=3)
        finally:
            device.wait(timeout=5)


def test_inference_over_a_pty(test_device):
    """A real tty path opened by pyserial, as a board's /dev/ttyACM0 would be."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    device = subprocess.Popen([str(test_device)], stdin=master, stdout=master)
    os.close(master)
    try:
        with Session(SerialTransport(os.ttyname(slave), timeouts=TIMEOUTS)) as sess:
            _check_inference(sess, seed=4)
    finally:
        os.close(slave)
        try:
            device.wait(timeout=5)
        except subprocess.TimeoutExpired:
            device.kill()
            device.wait()


def test_time_evaluate_refuses_more_runs_than_the_device_counts(session):
    with pytest.raises(SessionError, match="at most 4294967295 runs per measurement"):
        session.time_evaluate(number=2**32, repeat=1)
    assert session.time_evaluate(number=3, repeat=1).results  # the session carries on


def test_long_runs_are_not_flooded_with_resends(test_device):
    """While the device runs the model it reads nothing; resends of TIME_RUNS meanwhile only fill
    buffers (a long enough run would fill the pipe and block the host), so over a batch's
    expected time there are only a few, however short the retry interval."""
    transport = SubprocessTransport([str(test_device)], timeouts=TransportTimeouts(0.01, 5, 5))
    with Session(transport) as sess:
        sess.time_evaluate(number=20_000, repeat=1)  # measures the time per run
        per_run = sess.time_evaluate(number=20_000, repeat=1).mean
        number = max(20_000, int(1.0 / per_run))  # about a second a batch
        before = sess.commands.resends
        timing = sess.time_evaluate(number=number, repeat=2)
        resends = sess.commands.resends - before
    assert timing.mean * number > 0.3, "the batches were too short to show anything"
    assert resends < 2 * 30, resends  # about 8 + the ramp up per batch; 0.01 s apart it were ~200


class QueueingTransport(SubprocessTransport):
    """The device program behind a buffer that takes every write at once and passes it on at
    `rate` bytes a second, as QEMU's UART socket does (the socket swallows a request; the guest
    drains it a byte per emulator wake-up, at a pace that swings with the machine's load)."""

    def __init__(self, argv, rate, timeouts):
        super().__init__(argv, timeouts=timeouts)
        self.rate = rate
        self._queue = bytearray()
        self._lock = threading.Condition()
        self._stop = False
        self._feeder = threading.Thread(target=self._feed, daemon=True)

    def open(self):
        super().open()
        self._feeder.start()

    def close(self):
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._feeder.join(5)
        super().close()

    def write(self, data, timeout_sec):
        with self._lock:
            self._queue += data
            self._lock.notify()

    def _feed(self):
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                piece = bytes(self._queue[:256])
                del self._queue[:256]
            time.sleep(len(piece) / self.rate)
            super().write(piece, 5)


def test_a_slower_link_does_not_pile_up_needless_resends(test_device):
    """A link that slows down after its figures were learnt (QEMU's UART under load) makes the
    host resend requests whose first copy is still queued. Each needless copy delays the next
    request, which was resent in turn, until a call timed out (host-driven VWW, 27 KiB of input).
    The second reply to a resent request proves the resend needless; the host then takes the
    slower figure, so a few resends are all a large transfer costs."""
    transport = QueueingTransport([str(test_device)], rate=48 << 10, timeouts=TransportTimeouts(0.5, 5, 5))
    data = np.random.default_rng(3).standard_normal((4, 700)).astype(np.float32)
    with Session(transport) as sess:
        for _ in range(3):
            sess.set_input(0, data)  # learns the time per byte at the fast rate
        assert sess.commands.resends == 0
        transport.rate = 6 << 10  # 8x slower: a 4 KiB request takes 0.7 s, longer than the retry cap
        start = time.monotonic()
        for _ in range(3):  # 33,600 bytes in 9 requests, more than a VWW input (27,648 B)
            sess.set_input(0, data)
        elapsed = time.monotonic() - start
        resends, needless = sess.commands.resends, sess.commands.needless_resends
        transport.rate = 48 << 10
        sess.run()
        np.testing.assert_array_equal(sess.get_output(0), 2 * data + 1)
    assert needless >= 1, "the slowdown was not noticed"
    assert resends <= 4, resends  # 11 without the second reply's evidence, and growing
    assert elapsed < 15, elapsed  # 5.5 s of transfer; the needless copies cost the rest
