"""RPC throughput and latency beside the raw transport's, measured in the same run.

    python bench/rpc.py [--seconds 2] [--rounds 10] [--max-packet N] [--device-max-packet N]

For each link (the host board's pipes, a pty pair as a serial port would be) it prints set_input
and get_output bytes/s through the whole stack (Session -> commands -> session -> framing ->
transport -> the device runtime in C -> back) and the round trip of an empty request (PING).
The device is the host board's program (template_projects/host/src/main.c + the device runtime,
built with the host Makefile's MTP_MAX_PACKET) linked with the RPC test model
(tests/c/rpc_test_model.c: 11,200-byte float tensors).

Beside each figure, its raw peer, measured in the same run: the same Transport class over the same
kind of link to a C program (bench/raw_peer.c) that answers every N-byte write with one byte
(the peer of set_input) or every one-byte write with N bytes (get_output), N being the tensor
bytes the RPC carries per request, and 1-byte ping-pong for the empty request. The peer makes
the same round trips with the same chunks, so the ratio is what the protocol (framing, CRCs,
sessions, commands, in Python and in C) costs. The "stream" line gives the link's one-way
bulk rate for context (64 KiB writes to `cat > /dev/null`, no round trips).

RPC and peer are timed in alternating rounds and each keeps its best round, so other work on
the machine disturbs both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import subprocess
import sys
import tempfile
import re
import time
import tty
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from project_api.errors import IoTimeoutError, TransportClosedError  # noqa: E402
from project_api.rpc.commands import CHECK_SIZE, REPLY_HEADER, REQUEST_HEADER  # noqa: E402
from project_api.rpc.transport import SerialTransport, SubprocessTransport, TransportTimeouts  # noqa: E402
from project_api.session import Session  # noqa: E402
from rpc_test_device import build_test_device  # noqa: E402

TIMEOUTS = TransportTimeouts(1, 10, 10)
STREAM_BYTES = 256 << 20
RAW_PEER_SOURCE = REPO_ROOT / "bench" / "raw_peer.c"
HOST_MAKEFILE = REPO_ROOT / "template_projects" / "host" / "Makefile"


def _time_per_call(seconds: float, action) -> float:
    """Run action for about `seconds`; return the seconds per call."""
    calls, start = 0, time.perf_counter()
    while True:
        action()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


class Figures(NamedTuple):
    write_bps: float
    read_bps: float
    rtt: float


def _even_chunk(size: int, room: int) -> int:
    """Bytes per request when `size` bytes go in as many requests as `room` allows (rounded to
    equal requests so one peer program can serve them)."""
    requests = -(-size // room)
    return -(-size // requests)


def _exchange(transport, request: bytes, reply_len: int) -> None:
    transport.write(request, 10)
    got = 0
    while got < reply_len:
        got += len(transport.read(reply_len - got, 10))


def measure_link(open_peer, device: Path, raw_peer: Path, seconds: float, rounds: int, max_packet):
    """The RPC's figures and its raw peer's (module docstring), measured in alternation: `rounds`
    rounds, each timing every figure for seconds / rounds, the best round of each kept (the
    machine may be busy with other work; the best round is the least disturbed)."""
    data = np.random.default_rng(0).standard_normal((4, 700)).astype(np.float32)
    size = data.nbytes
    with contextlib.ExitStack() as stack:
        sess = stack.enter_context(Session(stack.enter_context(open_peer([str(device)])), max_packet=max_packet))
        commands = sess.commands
        write_chunk = _even_chunk(size, commands.max_body - REQUEST_HEADER.size - 6 - CHECK_SIZE)
        read_chunk = _even_chunk(size, commands.max_body - REPLY_HEADER.size - CHECK_SIZE)

        def raw(request: int, reply: int):
            transport = stack.enter_context(open_peer([str(raw_peer), str(request), str(reply)]))
            payload = bytes(request)
            return lambda: _exchange(transport, payload, reply)

        # (RPC action, raw action, raw exchanges per RPC action)
        pairs = [(lambda: sess.set_input(0, data), raw(write_chunk, 1), size / write_chunk),
                 (lambda: sess.get_output(0), raw(1, read_chunk), size / read_chunk),
                 (commands.ping, raw(1, 1), 1)]
        best_rpc = [float("inf")] * 3
        best_raw = [float("inf")] * 3
        for _ in range(rounds):
            for k, (rpc_action, raw_action, exchanges) in enumerate(pairs):
                best_rpc[k] = min(best_rpc[k], _time_per_call(seconds / rounds, rpc_action))
                best_raw[k] = min(best_raw[k], _time_per_call(seconds / rounds, raw_action) * exchanges)
        packet, resends = commands.max_packet, commands.resends
    rpc = Figures(size / best_rpc[0], size / best_rpc[1], best_rpc[2])
    peer = Figures(size / best_raw[0], size / best_raw[1], best_raw[2])
    return rpc, peer, (write_chunk, read_chunk), packet, resends


@contextlib.contextmanager
def pipe_peer(argv):
    transport = SubprocessTransport(argv, timeouts=TIMEOUTS)
    with transport:
        yield transport


@contextlib.contextmanager
def pty_peer(argv):
    """A process on the master side of a pty pair; yields the open SerialTransport on the slave."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    process = subprocess.Popen(argv, stdin=master, stdout=master)
    os.close(master)
    transport = SerialTransport(os.ttyname(slave), timeouts=TIMEOUTS)
    try:
        transport.open()
        yield transport
    finally:
        transport.close()
        os.close(slave)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stream_pipes() -> float:
    """One-way bulk rate of a pipe: 64 KiB writes to `cat > /dev/null`."""
    chunk = bytes(1 << 16)
    with SubprocessTransport(["sh", "-c", "cat > /dev/null"], timeouts=TIMEOUTS) as writer:
        start = time.perf_counter()
        for _ in range(STREAM_BYTES // len(chunk)):
            writer.write(chunk, 10)
        writer.process.stdin.close()
        writer.process.wait()
        return STREAM_BYTES / (time.perf_counter() - start)


def stream_pty() -> float:
    total = STREAM_BYTES // 8
    chunk = bytes(1 << 16)
    with pty_peer(["sh", "-c", f"head -c {total} > /dev/null"]) as transport:
        start = time.perf_counter()
        for _ in range(total // len(chunk)):
            transport.write(chunk, 10)
        while True:  # until head has taken everything and exited
            try:
                transport.read(1, 0.001)
            except IoTimeoutError:
                pass
            except TransportClosedError:
                break
            if time.perf_counter() - start > 60:
                break
        return total / (time.perf_counter() - start)


def _mib(bps: float) -> str:
    return f"{bps / (1 << 20):9.2f} MiB/s"


def report(name, packet, rpc: Figures, raw: Figures, stream_bps: float, chunks, resends: int) -> None:
    print(f"\n{name} (packet {packet} bytes; {chunks[0]} / {chunks[1]} tensor bytes per write / read request)")
    print(f"  set_input  {_mib(rpc.write_bps)}   raw peer {_mib(raw.write_bps)}   {100 * rpc.write_bps / raw.write_bps:6.1f} %")
    print(f"  get_output {_mib(rpc.read_bps)}   raw peer {_mib(raw.read_bps)}   {100 * rpc.read_bps / raw.read_bps:6.1f} %")
    print(f"  empty request round trip {rpc.rtt * 1e6:8.1f} us   raw 1-byte ping-pong {raw.rtt * 1e6:8.1f} us"
          f"   (one round trip per request: {resends} resends)")
    print(f"  (link's one-way stream rate, no round trips: {_mib(stream_bps)})")


def host_max_packet() -> int:
    """The MTP_MAX_PACKET the host template's Makefile builds with."""
    match = re.search(r"^MTP_MAX_PACKET \?= (\d+)", HOST_MAKEFILE.read_text(), re.M)
    return int(match.group(1)) if match else 4096


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure and peer (default 2 s)")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of RPC and peer (default 10)")
    parser.add_argument("--max-packet", type=int, default=None, help="host packet limit (default: the device's)")
    parser.add_argument("--device-max-packet", type=int, default=host_max_packet(),
                        help="build the device with -DMTP_MAX_PACKET=N (default: the host Makefile's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        device = build_test_device(Path(tmp) / "rpc_test_device", defines=[f"MTP_MAX_PACKET={args.device_max_packet}"])
        raw_peer = Path(tmp) / "raw_peer"
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", str(RAW_PEER_SOURCE), "-o", str(raw_peer)],
                       check=True)
        for name, open_peer, stream in (("host board pipes (SubprocessTransport)", pipe_peer, stream_pipes),
                                        ("pty pair (SerialTransport on /dev/pts/N)", pty_peer, stream_pty)):
            rpc, peer, chunks, packet, resends = measure_link(open_peer, device, raw_peer, args.seconds,
                                                              args.rounds, args.max_packet)
            report(name, packet, rpc, peer, stream(), chunks, resends)
    return 0


if __name__ == "__main__":
    sys.exit(main())
