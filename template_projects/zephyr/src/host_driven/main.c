/*
 * Host-driven firmware on Zephyr: the shared device runtime (device_runtime/) serves the host's
 * RPC over the console UART. This file is the platform interface of
 * device_runtime/include/mtp_platform.h on Zephyr:
 *   - RX: the UART interrupt moves received bytes into a ring buffer; mtp_platform_read drains it.
 *     When the ring is full the RX interrupt is masked (back-pressure: the bytes wait in the UART
 *     instead of being dropped) and unmasked once the reader has made room.
 *   - TX: uart_poll_out, byte by byte (blocking, as the interface asks).
 *   - timer: the kernel's hardware cycle counter.
 * prj.conf turns the console, printk backend and boot banner off, so nothing but RPC bytes
 * travels on the UART.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <zephyr/device.h>
#include <zephyr/devicetree.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/ring_buffer.h>

#include "mtp_platform.h"
#include "mtp_rpc.h"

#ifndef MTP_RX_RING_BYTES
#define MTP_RX_RING_BYTES 1024
#endif

/* How long mtp_platform_read sleeps waiting for a first byte before reporting "none yet": the
 * thread idles instead of spinning, and any received byte wakes it at once. */
#define MTP_RX_IDLE_WAIT K_MSEC(50)

static const struct device *const rpc_uart = DEVICE_DT_GET(DT_CHOSEN(zephyr_console));

RING_BUF_DECLARE(rx_ring, MTP_RX_RING_BYTES);
static K_SEM_DEFINE(rx_ready, 0, 1);

static void rpc_uart_isr(const struct device *dev, void *user_data) {
  ARG_UNUSED(user_data);
  (void)uart_irq_update(dev);
  while (uart_irq_rx_ready(dev) > 0) {
    uint8_t chunk[16];
    uint32_t room = ring_buf_space_get(&rx_ring);
    if (room == 0u) {
      uart_irq_rx_disable(dev); /* full: leave the bytes in the UART until the reader drains */
      break;
    }
    int got = uart_fifo_read(dev, chunk, (int)MIN(room, (uint32_t)sizeof(chunk)));
    if (got <= 0) {
      break;
    }
    (void)ring_buf_put(&rx_ring, chunk, (uint32_t)got);
    k_sem_give(&rx_ready);
  }
}

static uint32_t take_received(uint8_t *buf, uint32_t cap) {
  /* The ISR is the only producer; lock it out while the consumer moves the tail. */
  unsigned int key = irq_lock();
  uint32_t got = ring_buf_get(&rx_ring, buf, cap);
  irq_unlock(key);
  return got;
}

int mtp_platform_read(uint8_t *buf, size_t cap) {
  uint32_t want = cap > (size_t)INT_MAX ? (uint32_t)INT_MAX : (uint32_t)cap;
  uint32_t got = take_received(buf, want);
  if (got == 0u) {
    (void)k_sem_take(&rx_ready, MTP_RX_IDLE_WAIT);
    got = take_received(buf, want);
  }
  uart_irq_rx_enable(rpc_uart); /* undo any back-pressure now that the ring has room */
  return (int)got;
}

void mtp_platform_write(const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    uart_poll_out(rpc_uart, data[i]);
  }
}

uint64_t mtp_platform_timer_ticks(void) {
#if defined(CONFIG_TIMER_HAS_64BIT_CYCLE_COUNTER)
  return k_cycle_get_64();
#else
  /* Extend the 32-bit counter: correct as long as it is read at least once per wrap (minutes
   * at tens of MHz), which the runtime does at the start and end of every timed run. */
  static uint32_t last_low;
  static uint64_t high;
  unsigned int key = irq_lock();
  uint32_t low = k_cycle_get_32();
  if (low < last_low) {
    high += (uint64_t)1u << 32;
  }
  last_low = low;
  uint64_t ticks = high | low;
  irq_unlock(key);
  return ticks;
#endif
}

uint32_t mtp_platform_timer_hz(void) { return (uint32_t)sys_clock_hw_cycles_per_sec(); }

int mtp_platform_timer_is_cycles(void) {
  /* SysTick counts core clock cycles; other system timers (an nRF's 32 kHz RTC, a RISC-V mtime,
   * the x86 HPET) tick at their own rate. */
  return IS_ENABLED(CONFIG_CORTEX_M_SYSTICK) ? 1 : 0;
}

int main(void) {
  if (!device_is_ready(rpc_uart)) {
    return -1; /* no UART, no host to tell */
  }
  uart_irq_rx_disable(rpc_uart);
  uart_irq_tx_disable(rpc_uart);
  uart_irq_callback_user_data_set(rpc_uart, rpc_uart_isr, NULL);
  /* Drop what arrived before we listened (a half-sent frame of an earlier session); the session
   * handshake retries, so nothing the host still wants is lost. */
  unsigned char stale;
  while (uart_poll_in(rpc_uart, &stale) == 0) {
  }
  uart_irq_rx_enable(rpc_uart);
  mtp_rpc_server_run(); /* returns only if the link closes, which a UART never reports */
  return 0;
}
