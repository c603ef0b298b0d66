/* SysTick as a free-running 64-bit tick counter: the 24-bit down-counter plus a wrap count kept by
 * the SysTick interrupt. */
#include "board.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

#define CSR_ENABLE (1u << 0)
#define CSR_TICKINT (1u << 1)
#define CSR_CLKSOURCE_CORE (1u << 2)
#define ICSR_PENDSTSET (1u << 26)
#define PERIOD (1u << 24)

static volatile uint32_t wraps;

void SysTick_Handler(void) { ++wraps; }

void systick_init(void) {
  SYST_RVR = PERIOD - 1u;
  SYST_CVR = 0;
  SYST_CSR = CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE_CORE;
}

uint64_t systick_ticks(void) {
  uint32_t high, count, pending;
  /* Re-read if the interrupt ran between the reads. */
  do {
    high = wraps;
    count = SYST_CVR;
    pending = SCB_ICSR & ICSR_PENDSTSET;
  } while (high != wraps);
  /* The counter wraps (and the interrupt is raised) on its 1 -> 0 step, so 0 is the first tick
   * of a period and 1 its last. */
  uint32_t in_period = (PERIOD - count) & (PERIOD - 1u);
  /* Wrapped but the interrupt not taken yet (interrupts masked, or not delivered yet). */
  if (pending && in_period < PERIOD / 2u) ++high;
  return ((uint64_t)high << 24) + in_period;
}
