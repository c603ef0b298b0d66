/*
 * Standalone firmware: runs the model on the embedded inputs, prints the outputs and timings on
 * the UART and stops the emulator with the run's status (0 = ok, 1 = the model failed).
 *
 * Output, one record per line, every number in lowercase hex (no printf in the image):
 *   mtp-standalone <model name>
 *   output <index> <bytes, two hex digits each, in memory order>
 *   ticks <runs> <SysTick ticks taken by that many back-to-back runs>   (runs 1, then N if N > 1)
 *   tick_hz <SysTick frequency>
 *   stack <bytes of stack used since reset>
 *   status <the model's return code>
 *   end
 */
#include "board.h"
#include "fmt.h"
#include "mtp_model.h"
#include "standalone_inputs.h"

/* A byte loop rather than memcpy: the library's speed-tuned memcpy would be a tenth of the
 * smallest images (the Makefile keeps gcc from turning this loop back into a memcpy call). */
static void copy_bytes(uint8_t *dst, const uint8_t *src, uint32_t len) {
  while (len--) *dst++ = *src++;
}

static void print_ticks(uint32_t runs, uint64_t ticks) {
  fmt_str("ticks ");
  fmt_hex(runs);
  fmt_str(" ");
  fmt_hex64(ticks);
  fmt_str("\n");
}

int main(void) {
  board_init();
  for (uint16_t i = 0; i < mtp_model.num_inputs; ++i) {
    if (mtp_standalone_inputs[i] != 0) {
      copy_bytes(mtp_model.inputs[i].data, mtp_standalone_inputs[i], mtp_model.inputs[i].size_bytes);
    }
  }

  /* One run, then MTP_STANDALONE_RUNS more: the host takes the difference, which cancels the
   * fixed cost of reading the timer. */
  uint64_t start = systick_ticks();
  int32_t status = mtp_model.run();
  uint64_t one_run = systick_ticks() - start;
  uint64_t many_runs = 0;
  if (MTP_STANDALONE_RUNS > 1u) {
    start = systick_ticks();
    for (uint32_t run = 0; run < MTP_STANDALONE_RUNS && status == 0; ++run) status = mtp_model.run();
    many_runs = systick_ticks() - start;
  }

  fmt_str("mtp-standalone ");
  fmt_str(mtp_model.name);
  fmt_str("\n");
  for (uint16_t i = 0; i < mtp_model.num_outputs; ++i) {
    fmt_str("output ");
    fmt_hex(i);
    fmt_str(" ");
    fmt_bytes(mtp_model.outputs[i].data, mtp_model.outputs[i].size_bytes);
    fmt_str("\n");
  }
  print_ticks(1u, one_run);
  if (MTP_STANDALONE_RUNS > 1u) print_ticks(MTP_STANDALONE_RUNS, many_runs);
  fmt_str("tick_hz ");
  fmt_hex(MTP_CORE_CLOCK_HZ);
  fmt_str("\nstack ");
  fmt_hex(board_stack_high_water());
  fmt_str("\nstatus ");
  fmt_hex((uint32_t)status);
  fmt_str("\nend\n");
  return status == 0 ? 0 : 1;
}
