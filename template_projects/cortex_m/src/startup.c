/*
 * Reset and exception entry for every cortex_m board: the vector table, RAM initialisation,
 * FPU enable, stack painting (for board_stack_high_water) and a fault handler that reports and
 * stops the emulator instead of spinning forever.
 */
#include <stdint.h>

#include "board.h"
#include "fmt.h"

/* Defined by ld/sections.ld. */
extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_bottom[], __stack_top[];

extern int main(void);
void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void); /* systick.c */

#define STACK_PAINT 0x5AA5C33Cu

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)

typedef void (*vector_t)(void);

/* Only the 16 system exceptions: the template enables no peripheral interrupt (the UART is
 * polled), so no IRQ entries are needed and the table stays 64 bytes. */
__attribute__((section(".vectors"), used)) const vector_t vector_table[16] = {
    (vector_t)(uintptr_t)__stack_top, /* initial main stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,    /* reserved */
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,             /* reserved */
    Fault_Handler, /* PendSV */
    SysTick_Handler,
};

void Reset_Handler(void) {
#if defined(__ARM_FP)
  /* Full access to CP10/CP11 before any floating-point instruction runs. */
  SCB_CPACR |= 0xFu << 20;
  __asm volatile("dsb\n\tisb" ::: "memory");
#endif
  uint32_t *src = __data_load;
  for (uint32_t *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t *dst = __bss_start; dst < __bss_end;) *dst++ = 0;

  /* Paint the free stack below this function's frame. The loop calls nothing (the Makefile
   * keeps gcc from turning it into memset) and no interrupt is enabled yet, so nothing else
   * writes below the stack pointer meanwhile. */
  uint32_t *sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  for (uint32_t *word = __stack_bottom; word < sp; ++word) *word = STACK_PAINT;

  board_exit(main() == 0 ? BOARD_EXIT_OK : BOARD_EXIT_MODEL_ERROR);
}

void board_init(void) {
  uart_init();
  systick_init();
}

uint32_t board_stack_high_water(void) {
  const uint32_t *word = __stack_bottom;
  while (word < __stack_top && *word == STACK_PAINT) ++word;
  return (uint32_t)((const uint8_t *)__stack_top - (const uint8_t *)word);
}

/* The stack may be what failed (an overflow runs off the bottom of RAM), so the handler starts
 * over on a fresh stack before calling C code. It never returns, so nothing is lost. */
__attribute__((naked)) void Fault_Handler(void) {
  __asm volatile(
      "ldr r0, =__stack_top\n\t"
      "mov sp, r0\n\t"
      "b fault_report\n\t");
}

void fault_report(void) __attribute__((noreturn, used));
void fault_report(void) {
  uint32_t ipsr;
  __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
  /* Plain text on the UART: a host-driven session sees garbage and then the link closing, and
   * the emulator's exit status says why; a standalone run shows the line. */
  fmt_str("\nFAULT exception=");
  fmt_hex(ipsr & 0x1FFu);
  fmt_str(" cfsr=");
  fmt_hex(SCB_CFSR);
  fmt_str("\n");
  board_exit(BOARD_EXIT_FAULT);
}
