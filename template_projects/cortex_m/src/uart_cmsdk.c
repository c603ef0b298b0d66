/* The ARM CMSDK APB UART of the MPS2 FPGA images (UART0), polled. */
#include "board.h"

#ifndef MTP_UART_BASE
#define MTP_UART_BASE 0x40004000u
#endif
#define UART_BAUD 115200u

#define UART_DATA (*(volatile uint32_t *)(MTP_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(MTP_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(MTP_UART_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(MTP_UART_BASE + 0x10u))

#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u

void uart_init(void) {
  /* The UART drops transmitted bytes unless 16 <= BAUDDIV <= PCLK. */
  UART_BAUDDIV = MTP_CORE_CLOCK_HZ / UART_BAUD;
  UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

void uart_putc(uint8_t byte) {
  while (UART_STATE & STATE_TX_FULL) {
  }
  UART_DATA = byte;
}

int uart_getc(void) {
  if ((UART_STATE & STATE_RX_FULL) == 0) return -1;
  return (int)(UART_DATA & 0xFFu);
}
