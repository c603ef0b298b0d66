"""Fault injection on the host board's real byte stream: random byte flips, drops and duplicates
in both directions, and a device that dies or hangs mid-session.

Every inference must return exactly the output of the same MLF run natively, or raise a clear
SessionError; none may return wrong data, and the session must carry on without a restart."""

import os
import random
import signal
import time

import numpy as np
import pytest

from model_builders import build_sine_mlp
from project_api.compiler.native import NativeModel
from project_api.errors import SessionError
from project_api.rpc.transport import SubprocessTransport, Transport, TransportTimeouts
from project_api.session import Session
from project_helpers import check_frozen_error, frozen_during_time_evaluate
from rpc_test_device import build_test_device, compile_onnx, expected_outputs, host_project

pytestmark = pytest.mark.slow

FAULT_RATE = 1e-3
TIMEOUTS = TransportTimeouts(0.5, 10, 5)


class FaultyTransport(Transport):
    """Wraps a transport; each byte, in each direction, is damaged with probability `rate`:
    flipped (XOR a random non-zero value), dropped or duplicated, one of the three at random."""

    def __init__(self, inner: Transport, rate: float, seed: int):
        self.inner = inner
        self.rate = rate
        self.timeouts = inner.timeouts
        self.random = random.Random(seed)
        self.faults = 0

    def _damage(self, data: bytes) -> bytes:
        rng, rate = self.random, self.rate
        # Skip ahead to the next damaged byte instead of drawing a number per byte.
        out, pos = bytearray(), 0
        while True:
            gap = int(rng.expovariate(rate)) if rate else len(data)
            if pos + gap >= len(data):
                out += data[pos:]
                return bytes(out)
            out += data[pos:pos + gap]
            byte = data[pos + gap]
            kind = rng.randrange(3)
            if kind == 0:
                out.append(byte ^ rng.randrange(1, 256))
            elif kind == 2:
                out += bytes([byte, byte])
            self.faults += 1
            pos += gap + 1

    def open(self):
        self.inner.open()

    def close(self):
        self.inner.close()

    def read(self, n, timeout_sec):
        while True:
            data = self._damage(self.inner.read(n, timeout_sec))
            if data:
                return data

    def write(self, data, timeout_sec):
        self.inner.write(self._damage(data), timeout_sec)


@pytest.fixture(scope="module")
def sine_project(tmp_path_factory):
    mlf = compile_onnx(tmp_path_factory, build_sine_mlp)
    return host_project(tmp_path_factory, "sine_mlp", mlf), mlf


def test_thousand_inferences_through_faults(sine_project):
    project, mlf = sine_project
    rng = np.random.default_rng(0)
    with NativeModel(mlf) as native:
        (spec,) = native.inputs
        inputs = [rng.uniform(-3, 3, spec["shape"]).astype(spec["dtype"]) for _ in range(1000)]
        expected = [outs[0] for outs in native.run_many([[x] for x in inputs])]
    transport = FaultyTransport(SubprocessTransport([str(project / "build" / "main")], timeouts=TIMEOUTS),
                                FAULT_RATE, seed=1)
    exact = errors = 0
    with Session(transport) as session:
        pid = transport.inner.process.pid
        for x, want in zip(inputs, expected):
            try:
                session.set_input(0, x)
                session.run()
                got = session.get_output(0)
            except SessionError as err:  # allowed, if clear; wrong data is not
                assert "stopped answering" in str(err), err
                errors += 1
                continue
            assert np.array_equal(got, want), f"wrong data returned: {got} != {want}"
            exact += 1
        assert transport.inner.process.pid == pid  # one device process, one session throughout
        resends = session.commands.resends
    print(f"\n{transport.faults} bytes damaged, {resends} resends, {exact} exact, {errors} errors")
    assert transport.faults > 50  # the faults really happened
    assert exact >= 990 and exact + errors == 1000


def test_large_chunked_tensors_through_faults(tmp_path):
    """Multi-packet inputs and outputs (11 KiB each way) in 256-byte packets."""
    device = build_test_device(tmp_path / "rpc_test_device")
    transport = FaultyTransport(SubprocessTransport([str(device)], timeouts=TIMEOUTS), FAULT_RATE, seed=2)
    rng = np.random.default_rng(1)
    with Session(transport, max_packet=256) as session:
        for _ in range(10):
            in_f32 = rng.standard_normal((4, 700)).astype(np.float32)
            in_i8 = rng.integers(-127, 127, 5, dtype=np.int8)
            session.set_input(0, in_f32)
            session.set_input(1, in_i8)
            session.run()
            want_f32, want_i8 = expected_outputs(in_f32, in_i8)
            assert np.array_equal(session.get_output(0), want_f32)
            assert np.array_equal(session.get_output(1), want_i8)
    assert transport.faults > 50


def test_device_killed_mid_session(sine_project):
    project, _ = sine_project
    transport = SubprocessTransport([str(project / "build" / "main")], timeouts=TIMEOUTS)
    with Session(transport) as session:
        os.kill(transport.process.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(SessionError, match="link closed"):
            session.run()
        assert time.monotonic() - start < TIMEOUTS.session_established_timeout_sec


def test_device_hung_mid_session(sine_project):
    project, _ = sine_project
    timeouts = TransportTimeouts(0.2, 5, 1.0)
    transport = SubprocessTransport([str(project / "build" / "main")], timeouts=timeouts)
    with Session(transport) as session:
        os.kill(transport.process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(SessionError, match="stopped answering during READ_OUTPUT: no reply within 1 s"):
                session.get_output(0)
            assert time.monotonic() - start < 1.5
        finally:
            os.kill(transport.process.pid, signal.SIGKILL)


class LoseFirstWrite(Transport):
    """Loses the first thing the host writes (its first start-session request)."""

    def __init__(self, inner):
        self.inner, self.timeouts, self.lost = inner, inner.timeouts, False

    def open(self):
        self.inner.open()

    def close(self):
        self.inner.close()

    def read(self, n, timeout_sec):
        return self.inner.read(n, timeout_sec)

    def write(self, data, timeout_sec):
        if not self.lost:
            self.lost = True
            return
        self.inner.write(data, timeout_sec)


def test_lost_start_request_is_resent_even_with_legacy_zero_timeouts(sine_project):
    project, _ = sine_project
    legacy_host_timeouts = TransportTimeouts(0, 0, 0)  # the legacy host board's: "wait forever"
    transport = LoseFirstWrite(SubprocessTransport([str(project / "build" / "main")], timeouts=legacy_host_timeouts))
    start = time.monotonic()
    with Session(transport) as session:
        assert session.get_info().inputs
    assert transport.lost and time.monotonic() - start < 5


def test_device_frozen_during_a_long_time_evaluate_is_noticed_in_seconds(sine_project):
    """SIGSTOP mid-way through `--print-time --repeat R --number N`: the session says so within
    2x the expected run time plus the established timeout (it used to wait 60 s per run)."""
    project, _ = sine_project
    timeouts = TransportTimeouts(0.2, 5, 1.0)
    transport = SubprocessTransport([str(project / "build" / "main")], timeouts=timeouts)
    number, repeat = 1_000_000, 8  # the sine MLP runs in well under 1 us here: about 0.2 s a batch
    with Session(transport) as session:
        pid = transport.process.pid
        error, elapsed, batch_sec = frozen_during_time_evaluate(session, pid, number, repeat, freeze_in_batch=3,
                                                                hard_limit_sec=20)
    check_frozen_error(error, elapsed, batch_sec, repeat, timeouts)
    assert not os.path.exists(f"/proc/{pid}"), "the frozen device program outlived its session"

