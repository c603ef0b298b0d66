/*
 * The bare-metal board layer of the cortex_m template: one UART, SysTick and semihosting exit.
 * Everything board-specific (UART kind, clock) comes from compile definitions set in config.mk,
 * so the same sources serve every board in boards/boards.yaml with platform cortex_m.
 */
#ifndef CORTEX_M_BOARD_H_
#define CORTEX_M_BOARD_H_

#include <stddef.h>
#include <stdint.h>

/* Exit statuses passed to the emulator (QEMU's own exit code) by board_exit(). */
enum {
  BOARD_EXIT_OK = 0,
  BOARD_EXIT_MODEL_ERROR = 1, /* the model's run function returned non-zero */
  BOARD_EXIT_FAULT = 2        /* a fault exception (hard fault, bus fault ...) */
};

/* UART and SysTick setup; main calls it first. Input sent before it may be lost. */
void board_init(void);

/* The UART: blocking write of one byte, non-blocking read (-1 when nothing has arrived). */
void uart_init(void);
void uart_putc(uint8_t byte);
int uart_getc(void);

/* SysTick as a 64-bit counter at the core clock (MTP_CORE_CLOCK_HZ). */
void systick_init(void);
uint64_t systick_ticks(void);

/* Stop: semihosting SYS_EXIT_EXTENDED, so the emulator exits with `status`. */
void board_exit(int status) __attribute__((noreturn));

/* Bytes of the stack ever used since reset (the stack is painted at reset). */
uint32_t board_stack_high_water(void);

#endif /* CORTEX_M_BOARD_H_ */
