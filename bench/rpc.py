"""RPC throughput and latency beside the raw transport's, measured in the same run.

    python bench/rpc.py [--seconds 1.0] [--max-packet N]

For each link (the host board's pipes, a pty pair as a serial port would be) it prints:
set_input and get_output bytes/s through the whole stack (Session -> commands -> session ->
framing -> transport -> the device runtime in C -> back), the round trip of an empty request
(PING), and the raw transport's bytes/s for the same direction, with the ratio. The device is
the host board's program (template_projects/host/src/main.c + the device runtime) linked with
the RPC test model (tests/c/rpc_test_model.c: 11,200-byte float tensors).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from project_api.rpc.transport import SerialTransport, SubprocessTransport, TransportTimeouts  # noqa: E402
from project_api.session import Session  # noqa: E402
from rpc_test_device import build_test_device  # noqa: E402

TIMEOUTS = TransportTimeouts(1, 10, 10)
RAW_BYTES = 32 << 20


def _repeat(seconds: float, action) -> tuple:
    """Run action until `seconds` have passed; return (calls, elapsed)."""
    calls, start = 0, time.perf_counter()
    while True:
        action()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls, elapsed


def measure_session(transport, seconds: float, max_packet):
    with Session(transport, max_packet=max_packet) as sess:
        data = np.random.default_rng(0).standard_normal((4, 700)).astype(np.float32)
        size = data.nbytes
        calls, elapsed = _repeat(seconds, lambda: sess.set_input(0, data))
        write_bps = calls * size / elapsed
        calls, elapsed = _repeat(seconds, lambda: sess.get_output(0))
        read_bps = calls * size / elapsed
        calls, elapsed = _repeat(seconds, sess.commands.ping)
        rtt = elapsed / calls
        packet = sess.commands.max_packet
    return write_bps, read_bps, rtt, packet


def _drain(transport, total: int) -> None:
    got = 0
    while got < total:
        got += len(transport.read(1 << 20, 10))


def raw_pipes():
    """The same SubprocessTransport to programs that only produce or consume bytes."""
    chunk = bytes(1 << 16)
    writer = SubprocessTransport(["sh", "-c", f"head -c {RAW_BYTES} > /dev/null"])
    with writer:
        start = time.perf_counter()
        for _ in range(RAW_BYTES // len(chunk)):
            writer.write(chunk, 10)
        writer.process.stdin.close()
        writer.process.wait()
        write_bps = RAW_BYTES / (time.perf_counter() - start)
    reader = SubprocessTransport(["head", "-c", str(RAW_BYTES), "/dev/zero"])
    with reader:
        start = time.perf_counter()
        _drain(reader, RAW_BYTES)
        read_bps = RAW_BYTES / (time.perf_counter() - start)
    return write_bps, read_bps


@contextlib.contextmanager
def pty_peer(argv):
    """A process on the master side of a pty pair; yields the SerialTransport on the slave."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    process = subprocess.Popen(argv, stdin=master, stdout=master)
    os.close(master)
    transport = SerialTransport(os.ttyname(slave), timeouts=TIMEOUTS)
    try:
        yield transport, process
    finally:
        transport.close()
        os.close(slave)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def raw_pty():
    total = RAW_BYTES // 8
    chunk = bytes(1 << 12)
    with pty_peer(["sh", "-c", f"head -c {total} > /dev/null"]) as (transport, process):
        transport.open()
        start = time.perf_counter()
        for _ in range(total // len(chunk)):
            transport.write(chunk, 10)
        process.wait(timeout=60)
        write_bps = total / (time.perf_counter() - start)
    # The writer stays alive after writing: a pty drops unread bytes when its master closes.
    with pty_peer(["sh", "-c", f"head -c {total} /dev/zero; exec sleep 30"]) as (transport, process):
        transport.open()
        start = time.perf_counter()
        _drain(transport, total)
        read_bps = total / (time.perf_counter() - start)
    return write_bps, read_bps


def _mib(bps: float) -> str:
    return f"{bps / (1 << 20):9.2f} MiB/s"


def report(name, session_figures, raw_figures):
    write_bps, read_bps, rtt, packet = session_figures
    raw_write, raw_read = raw_figures
    print(f"\n{name} (packet {packet} bytes)")
    print(f"  set_input  {_mib(write_bps)}   raw write {_mib(raw_write)}   {100 * write_bps / raw_write:6.1f} %")
    print(f"  get_output {_mib(read_bps)}   raw read  {_mib(raw_read)}   {100 * read_bps / raw_read:6.1f} %")
    print(f"  empty request round trip {rtt * 1e6:8.1f} us (one round trip per request)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure (default 1 s)")
    parser.add_argument("--max-packet", type=int, default=None, help="host packet limit (default: the device's)")
    parser.add_argument("--device-max-packet", type=int, default=None,
                        help="build the device with -DMTP_MAX_PACKET=N (default: the runtime's, 4096)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        defines = [f"MTP_MAX_PACKET={args.device_max_packet}"] if args.device_max_packet else []
        device = build_test_device(Path(tmp) / "rpc_test_device", defines=defines)
        pipes = measure_session(SubprocessTransport([str(device)], timeouts=TIMEOUTS), args.seconds, args.max_packet)
        report("host board pipes (SubprocessTransport)", pipes, raw_pipes())
        with pty_peer([str(device)]) as (transport, _):
            over_pty = measure_session(transport, args.seconds, args.max_packet)
        report("pty pair (SerialTransport on /dev/pts/N)", over_pty, raw_pty())
    return 0


if __name__ == "__main__":
    sys.exit(main())
