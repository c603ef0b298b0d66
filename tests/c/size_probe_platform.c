/*
 * A do-nothing platform for measuring the runtime's flash and RAM on a target (see
 * tests/test_device_runtime.py::test_avr_ram_use): it only has to link.
 */
#include "mtp_platform.h"
#include "mtp_rpc.h"

void mtp_platform_write(const uint8_t *data, size_t len) {
  volatile uint8_t sink;
  while (len--) sink = *data++;
  (void)sink;
}
int mtp_platform_read(uint8_t *buf, size_t cap) {
  (void)buf;
  (void)cap;
  return -1;
}
uint64_t mtp_platform_timer_ticks(void) { return 0; }
uint32_t mtp_platform_timer_hz(void) { return 16000000UL; }
int mtp_platform_timer_is_cycles(void) { return 1; }

int main(void) {
  mtp_rpc_server_run();
  return 0;
}
