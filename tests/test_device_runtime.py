"""The device runtime (template_projects/device_runtime): portable, warning-free C99 on every
compiler we target, microTVM's golden vectors in C, and the command layer served by the real
host-board program (main.c + runtime + the RPC test model) over its stdin/stdout."""

import enum
import shutil
import struct
import subprocess
import time
import zlib

import numpy as np
import pytest

from project_api.errors import DeviceError, ModelRunError
from project_api.rpc.commands import (COMMAND_VERSION, REQUEST_HEADER, Command, CommandClient, Status)
from project_api.rpc.session import RpcSession
from project_api.rpc.transport import SubprocessTransport, TransportTimeouts
from rpc_test_device import (RUNTIME_DIR, TEST_MODEL, WARNINGS, build_test_device, expected_outputs,
                             runtime_sources)

TIMEOUTS = TransportTimeouts(0.5, 5, 5)

CROSS_COMPILERS = {
    # strict alignment, 32-bit int: catches unaligned access and int-size assumptions
    "arm-none-eabi-gcc": ["-mcpu=cortex-m0", "-mthumb", "-Wcast-align"],
    # 8-bit AVR: 16-bit int and size_t, tiny RAM
    "avr-gcc": ["-mmcu=atmega2560"],
    "clang-14": ["-Wconversion"],
    "gcc": ["-Wconversion", "-Wshadow", "-Wstrict-prototypes"],
}


@pytest.mark.parametrize("cc", sorted(CROSS_COMPILERS))
def test_runtime_is_warning_free_c99(cc, tmp_path):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    for source in runtime_sources():
        command = [cc, *WARNINGS, *CROSS_COMPILERS[cc], "-Os", f"-I{RUNTIME_DIR / 'include'}", "-c",
                   str(source), "-o", str(tmp_path / (source.stem + ".o"))]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_avr_ram_use(tmp_path):
    """Linked for an ATmega2560 (8 KiB RAM) with a 40-byte model, the runtime's static RAM
    (.data + .bss: its two packet buffers, tables and state) stays under 1 KiB."""
    if shutil.which("avr-gcc") is None or shutil.which("avr-size") is None:
        pytest.skip("avr-gcc is not installed (apt-get install gcc-avr avr-libc binutils-avr)")
    elf = tmp_path / "runtime.elf"
    command = ["avr-gcc", "-mmcu=atmega2560", *WARNINGS, "-Os", f"-I{RUNTIME_DIR / 'include'}",
               *map(str, runtime_sources()), str(TEST_MODEL.parent.parent / "fuzz" / "fuzz_model.c"),
               str(TEST_MODEL.parent / "size_probe_platform.c"), "-o", str(elf)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sizes = subprocess.run(["avr-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = map(int, sizes.splitlines()[1].split()[:3])
    assert data + bss < 1024, sizes


@pytest.mark.parametrize("crc_tables", [16, 256, 2048], ids=["avr-tables", "mcu-tables", "sliced-tables"])
def test_golden_vectors_in_c(tmp_path, crc_tables):
    program = tmp_path / "golden"
    command = ["gcc", *WARNINGS, f"-DMTP_CRC_TABLES={crc_tables}",
               f"-I{RUNTIME_DIR / 'include'}", f"-I{RUNTIME_DIR / 'src'}",
               *map(str, runtime_sources()), str(TEST_MODEL), str(TEST_MODEL.parent / "test_golden_vectors.c"),
               "-o", str(program)]
    subprocess.run(command, check=True)
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "PASS", result.stdout


@pytest.fixture(scope="session")
def test_device(tmp_path_factory):
    return build_test_device(tmp_path_factory.mktemp("device") / "rpc_test_device")


@pytest.fixture(scope="session")
def small_packet_device(tmp_path_factory):
    """The runtime with the smallest packet it allows (as on an AVR, but smaller still)."""
    return build_test_device(tmp_path_factory.mktemp("device64") / "rpc_test_device", defines=["MTP_MAX_PACKET=64"])


class Device:
    """A running test device with an open session."""

    def __init__(self, program, logs=None):
        self.transport = SubprocessTransport([str(program)], timeouts=TIMEOUTS)
        self.transport.open()
        self.session = RpcSession(self.transport, on_log=(logs.append if logs is not None else print))
        self.session.start()
        self.client = CommandClient(self.session)

    def close(self):
        self.transport.close()


@pytest.fixture
def device(test_device):
    running = Device(test_device)
    yield running
    running.close()


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 700)).astype(np.float32), rng.integers(-127, 127, 5, dtype=np.int8)


def _infer(client, in_f32, in_i8):
    client.write_input(0, in_f32.tobytes())
    client.write_input(1, in_i8.tobytes())
    client.run()
    out_f32 = np.frombuffer(client.read_output(0, in_f32.nbytes), np.float32).reshape(in_f32.shape)
    out_i8 = np.frombuffer(client.read_output(1, 5), np.int8)
    return out_f32, out_i8


def test_info_and_tensor_descriptions(device):
    info = device.client.info()
    assert (info.command_version, info.runtime_version) == (COMMAND_VERSION, "0.1.0")
    assert info.model_name == "rpc_test_model"
    assert (info.num_inputs, info.num_outputs, info.workspace_size_bytes) == (2, 2, 1234)
    assert info.max_packet == 4096 and info.timer_hz == 1_000_000_000 and not info.timer_is_cycles
    tensors = [device.client.tensor_info(out, i) for out in (False, True) for i in range(2)]
    assert [(t.name, t.dtype, t.shape, t.size_bytes) for t in tensors] == [
        ("in_f32", "float32", (4, 700), 11200), ("in_i8", "int8", (5,), 5),
        ("out_f32", "float32", (4, 700), 11200), ("out_i8", "int8", (5,), 5)]


def test_chunked_inference_is_exact(device):
    device.client.info()
    for seed in range(3):
        in_f32, in_i8 = _inputs(seed)
        out_f32, out_i8 = _infer(device.client, in_f32, in_i8)
        want_f32, want_i8 = expected_outputs(in_f32, in_i8)
        assert np.array_equal(out_f32, want_f32) and np.array_equal(out_i8, want_i8)


def test_host_packet_limit_is_honoured(device):
    """The host's limit from INFO bounds every reply: reads come in as many small chunks as needed."""
    device.client.info(host_max_packet=100)
    assert device.client.max_packet == 100
    assert device.client.write_input(0, bytes(11200)) == -(-11200 // (100 - 3 - 14))
    in_f32, in_i8 = _inputs(1)
    out_f32, out_i8 = _infer(device.client, in_f32, in_i8)
    assert np.array_equal(out_f32, expected_outputs(in_f32, in_i8)[0])
    with pytest.raises(DeviceError, match="packet size"):
        device.client.call(Command.READ_OUTPUT, struct.pack("<HII", 0, 0, 200))


def test_smallest_packet_build_is_exact(small_packet_device):
    running = Device(small_packet_device)
    try:
        assert running.client.info().max_packet == 64
        in_f32, in_i8 = _inputs(2)
        out_f32, out_i8 = _infer(running.client, in_f32, in_i8)
        want_f32, want_i8 = expected_outputs(in_f32, in_i8)
        assert np.array_equal(out_f32, want_f32) and np.array_equal(out_i8, want_i8)
    finally:
        running.close()


def test_errors_are_reported_not_executed(device):
    client = device.client
    client.info()
    with pytest.raises(DeviceError, match="no such input") as bad_index:
        client.call(Command.WRITE_INPUT, struct.pack("<HI", 2, 0) + b"x")
    assert bad_index.value.status == Status.BAD_INDEX
    with pytest.raises(DeviceError, match="outside the tensor"):
        client.call(Command.WRITE_INPUT, struct.pack("<HI", 1, 4) + b"xy")
    with pytest.raises(DeviceError, match="outside the tensor"):
        client.call(Command.READ_OUTPUT, struct.pack("<HII", 1, 0xFFFFFFFF, 2))
    with pytest.raises(DeviceError, match="malformed"):
        client.call(Command.TIME_RUNS, b"\x00")

    class Unknown(enum.IntEnum):
        BOGUS = 0x55

    with pytest.raises(DeviceError, match="does not know this command"):
        client.call(Unknown.BOGUS)
    client.ping()  # the session is still fine


def test_model_failure_code_and_log_reach_the_host(test_device):
    logs = []
    running = Device(test_device, logs=logs)
    try:
        running.client.info()
        running.client.write_input(1, np.array([-128, 0, 0, 0, 0], np.int8).tobytes())
        with pytest.raises(ModelRunError, match="code 7") as failure:
            running.client.run()
        assert failure.value.code == 7
        assert logs == ["rpc_test_model: in_i8[0] is -128, failing with code 7"]
        with pytest.raises(ModelRunError):
            running.client.time_runs(3)
    finally:
        running.close()


def _request(seq, command, args=b"", version=COMMAND_VERSION):
    message = REQUEST_HEADER.pack(version, command, seq) + args
    return message + struct.pack("<I", zlib.crc32(message))


def test_repeated_sequence_number_gets_the_kept_reply(device):
    """A resent request is answered from the kept reply, not executed again: two TIME_RUNS with
    the same seq return the same tick count; a new seq measures again."""
    session = device.session
    first = _request(100, Command.TIME_RUNS, struct.pack("<I", 200))
    session.send(first)
    reply_a = session.receive(time.monotonic() + 5)
    session.send(first)
    reply_b = session.receive(time.monotonic() + 5)
    session.send(_request(101, Command.TIME_RUNS, struct.pack("<I", 200)))
    reply_c = session.receive(time.monotonic() + 5)
    assert reply_a == reply_b
    assert reply_c[2:4] == struct.pack("<H", 101) and reply_c[5:13] != reply_a[5:13]


def test_damaged_request_is_dropped_and_wrong_version_refused(device):
    session = device.session
    damaged = bytearray(_request(7, Command.PING))
    damaged[-1] ^= 0xFF
    session.send(bytes(damaged))
    assert session.receive(time.monotonic() + 0.3) is None  # no reply: the host will resend
    session.send(_request(8, Command.PING, version=COMMAND_VERSION + 1))
    reply = session.receive(time.monotonic() + 5)
    assert reply[4] == Status.BAD_VERSION


def test_new_session_forgets_kept_reply(device):
    session = device.session
    session.send(_request(5, Command.TIME_RUNS, struct.pack("<I", 50)))
    before = session.receive(time.monotonic() + 5)
    session.start()
    session.send(_request(5, Command.TIME_RUNS, struct.pack("<I", 50)))
    after = session.receive(time.monotonic() + 5)
    assert before[5:13] != after[5:13]


def test_device_exits_when_link_closes(test_device):
    running = Device(test_device)
    process = running.transport.process
    process.stdin.close()
    assert process.wait(timeout=5) == 0  # mtp_rpc_server_run() returned on EOF, main returned 0
    running.close()
