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
the machine disturbs both alike. Those are memory-speed figures: the link is never the limit.

Paced links (the throughput target): the same RPC and the same raw peer through
``project_api.rpc.paced.PacedTransport`` at 115200 and 921600 baud (8N1: 10 wire bits a byte) and
USB full speed (12 Mbit/s), over the host board's pipes and over QEMU's UART (mps2-an386, the
device runtime with the test model, 4096-byte packets; the raw peer a bare-metal loop on the
same UART). Printed per link: set_input / get_output bytes/s, the raw peer's, and the share of
the link's raw payload rate (baud / 10); the target is >= 90 % of it, one round trip per request.
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
import socket
import struct
import time
import tty
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from project_api.errors import IoTimeoutError, TransportClosedError  # noqa: E402
from project_api.rpc.commands import CHECK_SIZE, REPLY_HEADER, REQUEST_HEADER  # noqa: E402
from project_api.rpc.paced import LINKS, PacedTransport  # noqa: E402
from project_api.rpc.transport import SerialTransport, SubprocessTransport, Transport, TransportTimeouts  # noqa: E402
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


# ---- paced links --------------------------------------------------------------------------------

# A bare-metal raw peer on the cortex_m board layer: the first 8 bytes are REQUEST and REPLY (u32
# LE), then, as bench/raw_peer.c, every REQUEST bytes read are answered with REPLY bytes.
QEMU_RAW_PEER_APP = r"""
#include "board.h"
static uint32_t read_u32(void) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    int c;
    while ((c = uart_getc()) < 0) {
    }
    value |= (uint32_t)c << (8 * i);
  }
  return value;
}
int main(void) {
  board_init();
  uint32_t request = read_u32(), reply = read_u32(), got = 0;
  for (;;) {
    if (uart_getc() < 0) continue;
    if (++got == request) {
      got = 0;
      for (uint32_t i = 0; i < reply; ++i) uart_putc(0x5A);
    }
  }
}
"""
QEMU_BOARD = "mps2_an386"
# QEMU takes host -> guest bytes at a rate that swings several-fold with the machine's load, and
# its socket swallows a request at once: a resend every second would queue copies faster than
# the guest drains them. Resend every 5 s at most often; allow 30 s a reply.
QEMU_TIMEOUTS = TransportTimeouts(5, 30, 30)


class _QemuLink(Transport):
    """A firmware on QEMU, its UART through SerialTransport; `preamble` is sent right after opening."""

    def __init__(self, firmware: Path, machine: str, preamble: bytes = b""):
        from project_api.emulators.qemu import QemuMachine

        self.qemu = QemuMachine(machine, firmware, icount=False)
        self.preamble = preamble
        self.serial = None
        self.timeouts = QEMU_TIMEOUTS

    def open(self):
        self.qemu.start()
        self.serial = SerialTransport(self.qemu.serial_url, timeouts=QEMU_TIMEOUTS)
        try:
            self.serial.open()
            # pyserial's socket:// leaves Nagle on: a paced slice would wait for the ACK of the
            # one before (a delayed ACK, up to 40 ms). A UART has no such thing.
            self.serial._serial._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.preamble:
                self.serial.write(self.preamble, 10)
        except BaseException:
            self.close()
            raise

    def close(self):
        try:
            if self.serial is not None:
                self.serial.close()
        finally:
            self.qemu.stop()

    def read(self, n, timeout_sec):
        return self.serial.read(n, timeout_sec)

    def write(self, data, timeout_sec):
        self.serial.write(data, timeout_sec)


def build_qemu_firmwares(work: Path):
    """(RPC device, raw peer) ELFs for QEMU_BOARD, built with the cortex_m template's Makefile."""
    from cortex_m_helpers import TEMPLATE_DIR, build_app, load_server_module
    from project_api import boards
    from rpc_test_device import RUNTIME_DIR, TEST_MODEL, runtime_sources

    raw_elf, machine = build_app(QEMU_BOARD, QEMU_RAW_PEER_APP, work / "qemu_raw")
    server = load_server_module()
    dest = work / "qemu_rpc"
    server.write_board_files(boards.get_board(QEMU_BOARD, "cortex_m"), dest / "board", warning_as_error=True)
    sources = ["src/main_host_driven.c", "src/platform.c", *map(str, runtime_sources()), str(TEST_MODEL)]
    subprocess.run(["make", "-s", "-C", str(TEMPLATE_DIR), f"BOARD_DIR={dest / 'board'}", f"BUILD_DIR={dest / 'build'}",
                    f"APP_SRCS={' '.join(sources)}", f"EXTRA_CFLAGS=-I{RUNTIME_DIR / 'include'}"],
                   check=True, stdout=subprocess.DEVNULL)
    return dest / "build" / "firmware.elf", raw_elf, machine


def measure_paced(open_device, open_raw, link, rounds: int, max_packet=None):
    """set_input / get_output through the RPC and through the raw peer on one paced link, in
    alternating rounds, best round kept. Returns (rpc Figures, raw Figures, chunks, packet, resends)."""
    data = np.random.default_rng(0).standard_normal((4, 700)).astype(np.float32)
    size = data.nbytes
    with contextlib.ExitStack() as stack:
        sess = stack.enter_context(Session(PacedTransport(open_device(), link), max_packet=max_packet))
        commands = sess.commands
        write_chunk = _even_chunk(size, commands.max_body - REQUEST_HEADER.size - 6 - CHECK_SIZE)
        read_chunk = _even_chunk(size, commands.max_body - REPLY_HEADER.size - CHECK_SIZE)

        def raw(request: int, reply: int, exchanges: int):
            transport = stack.enter_context(PacedTransport(open_raw(request, reply), link))
            payload = bytes(request)

            def action():
                for _ in range(exchanges):
                    _exchange(transport, payload, reply)
            return action

        writes, reads = -(-size // write_chunk), -(-size // read_chunk)
        pairs = [(lambda: sess.set_input(0, data), raw(write_chunk, 1, writes)),
                 (lambda: sess.get_output(0), raw(1, read_chunk, reads))]
        resends_before = commands.resends
        best_rpc, best_raw = [float("inf")] * 2, [float("inf")] * 2
        for _ in range(rounds):
            for k, (rpc_action, raw_action) in enumerate(pairs):
                best_rpc[k] = min(best_rpc[k], _time_per_call(0, rpc_action))
                best_raw[k] = min(best_raw[k], _time_per_call(0, raw_action))
        packet, resends = commands.max_packet, commands.resends - resends_before
    return (Figures(size / best_rpc[0], size / best_rpc[1], 0), Figures(size / best_raw[0], size / best_raw[1], 0),
            (write_chunk, read_chunk), packet, resends)


def _kib(bps: float) -> str:
    return f"{bps / 1024:9.1f} KiB/s"


def paced_table(name: str, open_device, open_raw, links, rounds: int, fast_link_rounds: int = 4) -> None:
    print(f"\n{name}, paced links: RPC beside the raw peer on the same paced link, as % of the link's raw "
          f"payload rate")
    print(f"  {'link':<26} {'payload rate':>15}  {'set_input':>15} {'raw peer':>15} {'% link':>7} {'% peer':>7}"
          f"  {'get_output':>15} {'raw peer':>15} {'% link':>7} {'% peer':>7}  requests  resends")
    for link in links:
        # A transfer at 12 Mbit/s takes milliseconds: more rounds cost little and steady the figure
        # (not on QEMU, whose UART is slower than any of these links).
        link_rounds = rounds * fast_link_rounds if link.bytes_per_second > 200_000 else rounds
        rpc, peer, chunks, packet, resends = measure_paced(open_device, open_raw, link, link_rounds)
        rate = link.bytes_per_second
        size = 11200
        print(f"  {link.name:<26} {_kib(rate)}  {_kib(rpc.write_bps)} {_kib(peer.write_bps)} "
              f"{100 * rpc.write_bps / rate:6.1f}% {100 * rpc.write_bps / peer.write_bps:6.1f}%  "
              f"{_kib(rpc.read_bps)} {_kib(peer.read_bps)} {100 * rpc.read_bps / rate:6.1f}% "
              f"{100 * rpc.read_bps / peer.read_bps:6.1f}%  {-(-size // chunks[0])}/{-(-size // chunks[1])} of "
              f"{packet} B  {resends}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure and peer (default 2 s)")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of RPC and peer (default 10)")
    parser.add_argument("--max-packet", type=int, default=None, help="host packet limit (default: the device's)")
    parser.add_argument("--device-max-packet", type=int, default=host_max_packet(),
                        help="build the device with -DMTP_MAX_PACKET=N (default: the host Makefile's)")
    parser.add_argument("--paced-rounds", type=int, default=2,
                        help="paced links: alternations of RPC and raw peer (default 2; 115200 baud takes ~1 s a transfer)")
    parser.add_argument("--links", nargs="+", default=list(LINKS), choices=list(LINKS), help="paced links to measure")
    parser.add_argument("--no-memory-speed", action="store_true", help="only the paced links")
    parser.add_argument("--no-qemu", action="store_true", help="paced links over the host board's pipes only")
    parser.add_argument("--qemu-only", action="store_true", help="paced links over QEMU's UART only")
    args = parser.parse_args(argv)
    links = [LINKS[name] for name in args.links]
    with tempfile.TemporaryDirectory() as tmp:
        device = build_test_device(Path(tmp) / "rpc_test_device", defines=[f"MTP_MAX_PACKET={args.device_max_packet}"])
        raw_peer = Path(tmp) / "raw_peer"
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", str(RAW_PEER_SOURCE), "-o", str(raw_peer)],
                       check=True)
        if not (args.no_memory_speed or args.qemu_only):
            print("Memory-speed links (the link is never the limit: the protocol's own cost)")
            for name, open_peer, stream in (("host board pipes (SubprocessTransport)", pipe_peer, stream_pipes),
                                            ("pty pair (SerialTransport on /dev/pts/N)", pty_peer, stream_pty)):
                rpc, peer, chunks, packet, resends = measure_link(open_peer, device, raw_peer, args.seconds,
                                                                  args.rounds, args.max_packet)
                report(name, packet, rpc, peer, stream(), chunks, resends)
        if not args.qemu_only:
            paced_table("host board pipes", lambda: SubprocessTransport([str(device)], timeouts=TIMEOUTS),
                        lambda request, reply: SubprocessTransport([str(raw_peer), str(request), str(reply)],
                                                                   timeouts=TIMEOUTS),
                        links, args.paced_rounds)
        if not args.no_qemu:
            qemu_device, qemu_raw, machine = build_qemu_firmwares(Path(tmp))
            print("  (QEMU's CMSDK UART takes one byte per emulator wake-up: host -> guest runs at a few KiB/s,\n"
                  "   below even 115200 baud, so there the emulator, not the paced link, is the limit)")
            paced_table(f"QEMU UART ({machine}, CMSDK UART over a TCP socket)",
                        lambda: _QemuLink(qemu_device, machine),
                        lambda request, reply: _QemuLink(qemu_raw, machine, struct.pack("<II", request, reply)),
                        links, args.paced_rounds, fast_link_rounds=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
