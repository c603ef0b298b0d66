/*
 * Standalone firmware on Zephyr: runs the model once on the embedded inputs (zeros unless the
 * project has src/standalone_inputs.c), then MTP_STANDALONE_RUNS more times back to back, and
 * prints the results on the console. The records are those of the cortex_m template's standalone
 * image, one per line, every number in lowercase hex:
 *   mtp-standalone <model name>
 *   output <index> <bytes, two hex digits each, in memory order>
 *   ticks <runs> <hardware cycle-counter ticks taken by that many back-to-back runs>
 *   tick_hz <counter frequency>
 *   stack <bytes of the main stack used>        (when the kernel tracks stack usage)
 *   status <the model's return code>
 *   end
 * On a QEMU board (MTP_EXIT_WHEN_DONE) the firmware then resets, which stops QEMU (-no-reboot).
 */
#include <stdint.h>
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>
#if defined(MTP_EXIT_WHEN_DONE) && MTP_EXIT_WHEN_DONE
#include <zephyr/sys/reboot.h>
#endif

#include "mtp_model.h"

#ifndef MTP_STANDALONE_RUNS
#define MTP_STANDALONE_RUNS 1u
#endif

#if defined(MTP_HAVE_STANDALONE_INPUTS)
/* One entry per model input (mtp_model.inputs order), each of that input's size_bytes; a null
 * entry leaves the zeroed input buffer as it is. Defined by src/standalone_inputs.c. */
extern const uint8_t *const mtp_standalone_inputs[];
#endif

/* 64-bit values in two halves: printk's %llx needs the full-integral cbprintf, which small
 * configurations leave out. */
static void print_hex64(uint64_t value) {
  uint32_t high = (uint32_t)(value >> 32);
  if (high != 0u) {
    printk("%x%08x", (unsigned int)high, (unsigned int)(uint32_t)value);
  } else {
    printk("%x", (unsigned int)(uint32_t)value);
  }
}

static void print_ticks(uint32_t runs, uint64_t ticks) {
  printk("ticks %x ", (unsigned int)runs);
  print_hex64(ticks);
  printk("\n");
}

static uint64_t cycles_now(void) {
#if defined(CONFIG_TIMER_HAS_64BIT_CYCLE_COUNTER)
  return k_cycle_get_64();
#else
  return k_cycle_get_32(); /* differences below are taken modulo 2^32 */
#endif
}

static uint64_t cycles_since(uint64_t start) {
#if defined(CONFIG_TIMER_HAS_64BIT_CYCLE_COUNTER)
  return k_cycle_get_64() - start;
#else
  return (uint32_t)(k_cycle_get_32() - (uint32_t)start);
#endif
}

int main(void) {
#if defined(MTP_HAVE_STANDALONE_INPUTS)
  for (uint16_t i = 0; i < mtp_model.num_inputs; ++i) {
    if (mtp_standalone_inputs[i] != NULL) {
      memcpy(mtp_model.inputs[i].data, mtp_standalone_inputs[i], mtp_model.inputs[i].size_bytes);
    }
  }
#endif

  /* One run, then MTP_STANDALONE_RUNS more: the difference cancels the cost of reading the timer. */
  uint64_t start = cycles_now();
  int32_t status = mtp_model.run();
  uint64_t one_run = cycles_since(start);
  uint64_t many_runs = 0u;
  if (MTP_STANDALONE_RUNS > 1u) {
    start = cycles_now();
    for (uint32_t run = 0; run < MTP_STANDALONE_RUNS && status == 0; ++run) {
      status = mtp_model.run();
    }
    many_runs = cycles_since(start);
  }

  printk("mtp-standalone %s\n", mtp_model.name);
  for (uint16_t i = 0; i < mtp_model.num_outputs; ++i) {
    const mtp_tensor_t *output = &mtp_model.outputs[i];
    printk("output %x ", (unsigned int)i);
    for (uint32_t b = 0; b < output->size_bytes; ++b) {
      printk("%02x", (unsigned int)output->data[b]);
    }
    printk("\n");
  }
  print_ticks(1u, one_run);
  if (MTP_STANDALONE_RUNS > 1u) {
    print_ticks(MTP_STANDALONE_RUNS, many_runs);
  }
  printk("tick_hz %x\n", (unsigned int)sys_clock_hw_cycles_per_sec());
#if defined(CONFIG_THREAD_STACK_INFO) && defined(CONFIG_INIT_STACKS)
  size_t unused = 0;
  if (k_thread_stack_space_get(k_current_get(), &unused) == 0) {
    printk("stack %x\n", (unsigned int)(CONFIG_MAIN_STACK_SIZE - unused));
  }
#endif
  printk("status %x\nend\n", (unsigned int)(uint32_t)status);

#if defined(MTP_EXIT_WHEN_DONE) && MTP_EXIT_WHEN_DONE
  k_msleep(10); /* let the UART drain before the reset */
  sys_reboot(SYS_REBOOT_COLD);
#endif
  return status == 0 ? 0 : 1;
}
