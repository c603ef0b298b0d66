"""server.TransportHandler and emulators.process.EmulatorProcess with real child processes: the
transport is `cat` (echoes what it reads) through SubprocessTransport, the "device" a real
process group; nothing may be left running whatever fails."""

import os
import sys

import pytest

from project_api import server
from project_api.emulators import process
from project_api.rpc.transport import SubprocessTransport

CAT = ["cat"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


class SleeperDevice(process.EmulatorProcess):
    """A stand-in device: a real process that runs until stopped (its port is never used)."""

    label = "sleeper"

    def __init__(self, argv=SLEEPER):
        super().__init__(start_timeout_sec=5.0)
        self.argv = argv

    def start(self):
        self._check_not_started()
        self._spawn(self.argv)
        self.port = 1
        return self.serial_url


class EchoHandler(server.TransportHandler):
    """Only the transport methods matter here; the rest refuse."""

    def server_info_query(self, tvm_version):
        raise server.ServerError("unused")

    generate_project = build = flash = server_info_query

    def open_transport(self, options):
        return self.attach_transport(lambda: SubprocessTransport(CAT), options.get("device"))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_echo_round_trip_and_close_stops_the_device():
    handler, device = EchoHandler(), SleeperDevice()
    handler.open_transport({"device": device})
    try:
        assert handler.device is device and device.running
        handler.write_transport(b"ping", 1.0)
        received = b""
        while len(received) < 4:
            received += handler.read_transport(4 - len(received), 1.0)
        assert received == b"ping"
    finally:
        handler.close_transport()
    assert not device.running and handler.device is None
    assert device not in process.running_emulators()
    handler.close_transport()  # idempotent


def test_transport_failing_to_open_stops_the_started_device():
    class BrokenTransport(EchoHandler):
        def open_transport(self, options):
            return self.attach_transport(lambda: SubprocessTransport(["/nonexistent/device-program"]),
                                         options["device"])

    handler, device = BrokenTransport(), SleeperDevice()
    with pytest.raises(server.TransportClosedError, match="cannot start device program"):
        handler.open_transport({"device": device})
    assert device.pid is None and device.returncode is not None  # it ran and was stopped
    assert device not in process.running_emulators()
    with pytest.raises(server.TransportClosedError, match="not open"):
        handler.read_transport(1, 0.1)


def test_device_failing_to_start_is_a_server_error():
    handler = EchoHandler()
    with pytest.raises(server.ServerError, match="cannot start /nonexistent/emulator"):
        handler.open_transport({"device": SleeperDevice(["/nonexistent/emulator"])})
    assert handler.device is None


def test_closed_link_goes_through_the_hook():
    class Explaining(EchoHandler):
        def transport_closed_error(self, err):
            return server.TransportClosedError(f"the device went away ({err})")

    handler = Explaining()
    with pytest.raises(server.TransportClosedError, match="the device went away .*not open"):
        handler.write_transport(b"x", 0.1)


def test_emulator_process_is_stopped_with_its_group():
    device = SleeperDevice()
    with device:
        pid = device.pid
        assert _alive(pid) and device.serial_url == "socket://127.0.0.1:1"
        with pytest.raises(process.EmulatorError, match="already started"):
            device.start()
    assert device.returncode is not None
    assert not _alive(pid)
    with pytest.raises(process.EmulatorError, match="sleeper is not started"):
        SleeperDevice().serial_url


def _running(pid):
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_subprocess_transport_stops_what_the_device_program_started():
    """A device program that exits at EOF but leaves a child behind: close() stops its group."""
    import time

    transport = SubprocessTransport(["sh", "-c", "sleep 60 & echo $!; exec cat"])
    transport.open()
    line = b""
    while not line.endswith(b"\n"):
        line += transport.read(64, 5.0)
    helper = int(line)
    assert _running(helper)
    started = time.monotonic()
    transport.close()
    assert not _running(helper), "the device program's child outlived the transport"
    assert time.monotonic() - started < 3.0
