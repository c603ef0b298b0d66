"""The simavr UART bridge (project_api/emulators/simavr.py + its libsimavr program): real firmware
built with avr-gcc, real simavr, real pyserial over socket://. Bytes go both ways without loss
(flow control), boot output is not lost, and no simulator outlives its owner."""

import os
import random
import shutil
import subprocess
import time

import pytest

from project_api.emulators import simavr
from project_api.rpc.transport import SerialTransport

pytestmark = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and os.path.exists("/usr/include/simavr/sim_avr.h")),
    reason="needs avr-gcc and libsimavr-dev (apt-get install gcc-avr avr-libc simavr libsimavr-dev)")

# A bare-metal echo: prints a banner at boot, then sends back every byte it receives, polling.
ECHO_FIRMWARE = r"""
#include <avr/io.h>
#include <stdint.h>
static void put(uint8_t b) { while (!(UCSR0A & _BV(UDRE0))) {} UDR0 = b; }
int main(void) {
  const char *banner = "echo ready\n";
  UBRR0H = 0; UBRR0L = 16; UCSR0A = _BV(U2X0);      /* 115200 baud at 16 MHz */
  UCSR0C = 3 << UCSZ00;
  UCSR0B = _BV(RXEN0) | _BV(TXEN0);
  while (*banner) put((uint8_t)*banner++);
  for (;;) { while (!(UCSR0A & _BV(RXC0))) {} put(UDR0); }
}
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose but still answers kill(0).
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


@pytest.fixture(scope="module")
def echo_elf(tmp_path_factory):
    out = tmp_path_factory.mktemp("echo")
    (out / "echo.c").write_text(ECHO_FIRMWARE)
    subprocess.run(["avr-gcc", "-mmcu=atmega2560", "-DF_CPU=16000000UL", "-Os", "-o", str(out / "echo.elf"),
                    str(out / "echo.c")], check=True)
    return out / "echo.elf"


def test_bridge_source_is_warning_free(tmp_path):
    subprocess.run(["gcc", "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-o", str(tmp_path / "bridge"),
                    str(simavr.bridge_source()), "-lsimavr", "-lsimavrparts"], check=True)


def test_echo_without_loss_under_flow_control(echo_elf):
    """20 KB sent in bursts far larger than the UART's receive FIFO: only XON/XOFF keeps every byte."""
    payload = bytes(random.Random(7).getrandbits(8) for _ in range(20000))
    with simavr.SimavrMachine(echo_elf, "atmega2560", 16000000) as machine:
        link = SerialTransport(machine.serial_url)
        link.open()
        try:
            banner = b""
            while not banner.endswith(b"\n"):
                banner += link.read(64, 5.0)
            assert banner == b"echo ready\n"  # printed at boot, before we wrote anything: not lost
            for start in range(0, len(payload), 4000):
                link.write(payload[start:start + 4000], 5.0)
            received = bytearray()
            while len(received) < len(payload):
                received += link.read(len(payload), 10.0)
            assert bytes(received) == payload
        finally:
            link.close()
        pid = machine.pid
    assert not _alive(pid)
    # 20000 bytes of 10 bits at 115200 baud take at least 1.7 s of simulated time at 16 MHz.
    assert machine.cycles > 16000000 * 1.7


def test_host_hang_up_stops_the_simulator(echo_elf):
    machine = simavr.SimavrMachine(echo_elf, "atmega2560", 16000000)
    machine.start()
    try:
        link = SerialTransport(machine.serial_url)
        link.open()
        link.read(11, 5.0)
        link.close()
        deadline = time.monotonic() + 5
        while machine.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not machine.running
    finally:
        assert machine.stop() == 0
    assert machine.cycles > 0


def test_stop_is_idempotent_and_kills(echo_elf):
    machine = simavr.SimavrMachine(echo_elf, "atmega2560", 16000000)
    machine.start()  # listening, nobody connected
    pid = machine.pid
    assert _alive(pid)
    assert machine.stop() == 0  # SIGTERM interrupts the wait for a client: a clean exit, no SIGKILL
    assert machine.stop() == 0
    assert not _alive(pid)


def test_run_cycles_headless(echo_elf):
    output, cycles = simavr.run_cycles(echo_elf, "atmega2560", 16000000, 160000)
    assert output == b"echo ready\n" and cycles >= 160000


def test_bad_firmware_is_a_clear_error(tmp_path):
    with pytest.raises(simavr.SimavrError, match="does not exist: build the project first"):
        simavr.SimavrMachine(tmp_path / "none.elf", "atmega2560", 16000000).start()
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an elf")
    with pytest.raises(simavr.SimavrError, match="failed to start .*junk.elf"):
        simavr.SimavrMachine(junk, "atmega2560", 16000000).start()
    with pytest.raises(simavr.SimavrError, match="not a 32-bit little-endian ELF"):
        simavr.avr_memory_usage(junk)


def test_unknown_mcu(echo_elf):
    with pytest.raises(simavr.SimavrError, match="does not know MCU 'atmega9999'"):
        simavr.run_cycles(echo_elf, "atmega9999", 16000000, 1000)


def test_missing_compiler_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing built yet
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(simavr.SimavrError, match="apt-get install --no-install-recommends gcc simavr libsimavr-dev"):
        simavr.bridge_executable()
