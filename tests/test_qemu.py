"""project_api/emulators/qemu.py on real QEMU, with small firmwares built from the cortex_m
template's board layer (startup, UART drivers, SysTick, semihosting exit) by its Makefile."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from cortex_m_helpers import build_app, needs_arm_tools
from project_api.emulators import process, qemu

pytestmark = needs_arm_tools

ECHO_APP = r"""
#include "board.h"
#include "fmt.h"
/* Echoes every byte; 'q' exits with status 0, 'x' with status 7, 'f' faults (bad address). */
int main(void) {
  board_init();
  fmt_str("echo ready\n");
  for (;;) {
    int c = uart_getc();
    if (c < 0) continue;
    if (c == 'q') return 0;
    if (c == 'x') board_exit(7);
    if (c == 'f') *(volatile uint32_t *)0xFFFFFFF0u = 1u;
    uart_putc((uint8_t)c);
  }
}
"""

# Times a busy loop of N and 2N iterations with SysTick and prints both tick counts.
TICKS_APP = r"""
#include "board.h"
#include "fmt.h"
static uint64_t time_loop(uint32_t iterations) {
  uint64_t start = systick_ticks();
  for (volatile uint32_t i = 0; i < iterations; ++i) {
  }
  return systick_ticks() - start;
}
int main(void) {
  board_init();
  fmt_str("ticks ");
  fmt_hex64(time_loop(100000u));
  fmt_str(" ");
  fmt_hex64(time_loop(200000u));
  fmt_str(" stack ");
  fmt_hex(board_stack_high_water());
  fmt_str("\n");
  return 0;
}
"""

# Recurses far past the stack: the stack sits at the bottom of RAM, so this faults, and the fault
# handler (on a fresh stack) reports it instead of the core locking up.
OVERFLOW_APP = r"""
#include "board.h"
#include "fmt.h"
static volatile uint32_t sink;
static uint32_t recurse(uint32_t n) {
  volatile uint32_t pad[64];
  pad[0] = n;
  sink = pad[0];
  return n == 0 ? 0 : recurse(n - 1) + pad[0];
}
int main(void) {
  board_init();
  fmt_str("start\n");
  sink = recurse(100000u);
  fmt_str("survived\n");
  return 0;
}
"""

BOARDS = ["mps2_an386", "lm3s6965evb"]  # the two UART drivers (CMSDK, PL011)


@pytest.fixture(scope="session")
def echo_firmware(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo")
    return {board: build_app(board, ECHO_APP, root / board) for board in BOARDS}


@pytest.fixture(scope="session")
def ticks_firmware(tmp_path_factory):
    root = tmp_path_factory.mktemp("ticks")
    return {board: build_app(board, TICKS_APP, root / board) for board in BOARDS + ["mps2_an385", "mps2_an500"]}


def _read_exactly(link: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + timeout
    link.settimeout(timeout)
    while len(data) < n and time.monotonic() < deadline:
        chunk = link.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child is gone for our purposes; check its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
def test_echo_all_byte_values_then_exit_status(echo_firmware, board):
    elf, machine = echo_firmware[board]
    with qemu.QemuMachine(machine, elf) as vm:
        import serial

        link = serial.serial_for_url(vm.serial_url, timeout=10)
        try:
            assert link.readline() == b"echo ready\n"
            # Every byte value except the three commands, several times over (more than any FIFO).
            payload = bytes(b for b in range(256) if b not in b"qxf") * 8
            link.write(payload)
            assert link.read(len(payload)) == payload
            link.write(b"x")
            assert vm.wait(10) == 7  # SYS_EXIT_EXTENDED passes the status through
        finally:
            link.close()
    assert vm.returncode == 7 and not vm.running


@pytest.mark.slow
def test_fault_reports_and_stops_qemu(echo_firmware):
    elf, machine = echo_firmware["mps2_an386"]
    with qemu.QemuMachine(machine, elf) as vm:
        with socket.create_connection(("127.0.0.1", vm.port)) as link:
            assert _read_exactly(link, 11) == b"echo ready\n"
            link.sendall(b"f")
            rest = b""
            link.settimeout(10)
            while True:
                chunk = link.recv(256)
                if not chunk:
                    break
                rest += chunk
        assert vm.wait(10) == 2
    assert b"FAULT exception=3" in rest  # HardFault (escalated bus fault)


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
def test_stack_overflow_faults_cleanly(tmp_path, board):
    elf, machine = build_app(board, OVERFLOW_APP, tmp_path)
    status, output = qemu.run_to_exit(machine, elf, timeout_sec=30)
    assert status == 2, output
    assert output.startswith(b"start\n") and b"FAULT exception=3" in output and b"survived" not in output


@pytest.mark.slow
def test_run_to_exit_collects_everything_printed(ticks_firmware):
    for board, (elf, machine) in ticks_firmware.items():
        status, output = qemu.run_to_exit(machine, elf, timeout_sec=30)
        assert status == 0, (board, output)
        fields = output.decode().split()
        assert fields[0] == "ticks" and fields[3] == "stack", output
        one, two = int(fields[1], 16), int(fields[2], 16)
        # -icount shift=0: virtual time is instructions, so the tick counts are deterministic and
        # twice the iterations take twice the ticks (to within the timer reads' few instructions).
        assert one > 1000 and abs(two - 2 * one) <= 2, (board, one, two)
        assert 0 < int(fields[4], 16) < 512, "stack high-water mark of a tiny program"


@pytest.mark.slow
def test_systick_frequency_follows_the_board_clock(ticks_firmware):
    """Same loop, same instruction count: lm3s6965evb's 12.5 MHz SysTick ticks half as often as
    mps2's 25 MHz one (QEMU: 1 instruction = 1 ns)."""
    counts = {}
    for board in ("mps2_an385", "lm3s6965evb"):  # both Cortex-M3: identical code
        elf, machine = ticks_firmware[board]
        _, output = qemu.run_to_exit(machine, elf, timeout_sec=30)
        counts[board] = int(output.split()[1], 16)
    assert abs(counts["mps2_an385"] - 2 * counts["lm3s6965evb"]) <= 2, counts


@pytest.mark.slow
def test_stop_on_exception_inside_block(echo_firmware):
    elf, machine = echo_firmware["mps2_an386"]
    with pytest.raises(RuntimeError, match="boom"):
        with qemu.QemuMachine(machine, elf) as vm:
            pid = vm.pid
            assert _pid_alive(pid)
            raise RuntimeError("boom")
    assert not _pid_alive(pid)
    assert vm.stop() == vm.returncode  # idempotent


_ORPHAN_SCRIPT = textwrap.dedent("""
    import sys, time
    from project_api.emulators.qemu import QemuMachine
    vm = QemuMachine(sys.argv[1], sys.argv[2])
    vm.start()
    print(vm.pid, flush=True)
    time.sleep(60)
""")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_no_qemu_survives_its_parent(echo_firmware, sig):
    """Killed, terminated or interrupted, the process that started QEMU takes QEMU with it."""
    elf, machine = echo_firmware["mps2_an386"]
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, machine, str(elf)],
                              stdout=subprocess.PIPE, text=True)
    try:
        qemu_pid = int(parent.stdout.readline())
        assert _pid_alive(qemu_pid)
        parent.send_signal(sig)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _pid_alive(qemu_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pid_alive(qemu_pid), f"QEMU {qemu_pid} survived {sig.name} of its parent"
    finally:
        parent.kill()
        parent.wait()


def test_missing_firmware_is_a_clear_error(tmp_path):
    with pytest.raises(qemu.QemuError, match="does not exist: build the project first"):
        qemu.QemuMachine("mps2-an386", tmp_path / "nope.elf").start()


def test_unknown_machine_reports_qemus_message(echo_firmware):
    elf, _ = echo_firmware["mps2_an386"]
    with pytest.raises(qemu.QemuError, match="failed to start.*(unsupported machine|machine)"):
        qemu.QemuMachine("no-such-board", elf).start()


def test_run_to_exit_times_out_and_stops(echo_firmware):
    elf, machine = echo_firmware["mps2_an386"]  # the echo firmware never exits by itself
    before = _qemu_children()
    with pytest.raises(qemu.QemuError, match="did not exit within 1"):
        qemu.run_to_exit(machine, elf, timeout_sec=1)
    assert _qemu_children() == before


def _qemu_children():
    """PIDs of qemu-system-arm processes whose parent is this test process."""
    out = subprocess.run(["ps", "-o", "pid=,ppid=,comm=", "-e"], capture_output=True, text=True).stdout
    return {int(p) for p, pp, comm in (line.split(None, 2) for line in out.splitlines())
            if int(pp) == os.getpid() and comm.startswith("qemu-system")}


@pytest.fixture(autouse=True, scope="module")
def _no_leaked_qemu():
    yield
    assert not process.running_emulators(), "a QemuMachine was left running"
    assert _qemu_children() == set()
