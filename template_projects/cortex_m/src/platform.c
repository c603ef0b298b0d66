/* The device runtime's platform interface (mtp_platform.h) on the board layer: the UART is the
 * host link and SysTick the timer. */
#include "board.h"
#include "mtp_platform.h"

void mtp_platform_write(const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len; ++i) uart_putc(data[i]);
}

int mtp_platform_read(uint8_t *buf, size_t cap) {
  /* A UART link never closes, so this never returns < 0: the firmware serves until QEMU stops. */
  size_t count = 0;
  int byte;
  while (count < cap && (byte = uart_getc()) >= 0) buf[count++] = (uint8_t)byte;
  return (int)count;
}

uint64_t mtp_platform_timer_ticks(void) { return systick_ticks(); }

uint32_t mtp_platform_timer_hz(void) { return MTP_CORE_CLOCK_HZ; }

/* SysTick runs from the core clock, but these boards are emulated and QEMU models no cycles: with
 * -icount shift=0 a tick is virtual time (40 instructions at 25 MHz), so ticks are not reported
 * as cycles. On real silicon this would return 1. */
int mtp_platform_timer_is_cycles(void) { return 0; }
