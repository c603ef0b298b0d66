/* Stopping the emulator with an exit status (ARM semihosting SYS_EXIT_EXTENDED). QEMU must run
 * with `-semihosting-config enable=on,target=native`; a real board without a debugger attached
 * would take a fault here, so board_exit() is only reached at the end of a run. */
#include "board.h"

#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

void board_exit(int status) {
  volatile uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
  register uint32_t op __asm__("r0") = SYS_EXIT_EXTENDED;
  register volatile uint32_t *arg __asm__("r1") = block;
  __asm volatile("bkpt 0xab" : : "r"(op), "r"(arg) : "memory");
  for (;;) {
  }
}

