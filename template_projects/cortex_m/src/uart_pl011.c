/* The ARM PrimeCell PL011 UART (UART0 of the Stellaris LM3S6965), polled, FIFOs on. */
#include "board.h"

#ifndef MTP_UART_BASE
#define MTP_UART_BASE 0x4000C000u
#endif
#define UART_BAUD 115200u

#define UART_DR (*(volatile uint32_t *)(MTP_UART_BASE + 0x00u))
#define UART_FR (*(volatile uint32_t *)(MTP_UART_BASE + 0x18u))
#define UART_IBRD (*(volatile uint32_t *)(MTP_UART_BASE + 0x24u))
#define UART_FBRD (*(volatile uint32_t *)(MTP_UART_BASE + 0x28u))
#define UART_LCRH (*(volatile uint32_t *)(MTP_UART_BASE + 0x2Cu))
#define UART_CR (*(volatile uint32_t *)(MTP_UART_BASE + 0x30u))

#define FR_RX_EMPTY (1u << 4)
#define FR_TX_FULL (1u << 5)
#define LCRH_FIFO_EN (1u << 4)
#define LCRH_8_BITS (3u << 5)
#define CR_ENABLE (1u << 0)
#define CR_TX_EN (1u << 8)
#define CR_RX_EN (1u << 9)

/* Baud divisor in 1/64ths: UARTCLK / (16 * baud), integer part in IBRD, fraction in FBRD. */
#define BAUD_DIV_64THS ((4u * MTP_CORE_CLOCK_HZ + UART_BAUD / 2u) / UART_BAUD)

void uart_init(void) {
  UART_CR = 0;
  UART_IBRD = BAUD_DIV_64THS >> 6;
  UART_FBRD = BAUD_DIV_64THS & 0x3Fu;
  UART_LCRH = LCRH_8_BITS | LCRH_FIFO_EN;
  UART_CR = CR_ENABLE | CR_TX_EN | CR_RX_EN;
}

void uart_putc(uint8_t byte) {
  while (UART_FR & FR_TX_FULL) {
  }
  UART_DR = byte;
}

int uart_getc(void) {
  if (UART_FR & FR_RX_EMPTY) return -1;
  return (int)(UART_DR & 0xFFu);
}
