/*
 * The model the fuzz harness links: two small tensors and a run() that fails once it has been
 * called 64 times since the last reset, so a fuzzed TIME_RUNS with a count of billions ends at
 * once (as a model failure) instead of timing out the fuzzer.
 */
#include "mtp_model.h"

static uint8_t in0[40], out0[40];
static const int32_t shape0[2] = {2, 5};
static const mtp_tensor_t inputs[1] = {{"x", MTP_DTYPE_FLOAT, 32, 2, shape0, sizeof(in0), in0}};
static const mtp_tensor_t outputs[1] = {{"y", MTP_DTYPE_FLOAT, 32, 2, shape0, sizeof(out0), out0}};

unsigned fuzz_model_runs;

static int32_t run_fuzz_model(void) {
  unsigned i;
  if (++fuzz_model_runs > 64u) return -1;
  for (i = 0; i < sizeof(in0); ++i) out0[i] = (uint8_t)(in0[i] ^ 0x5Au);
  return 0;
}

const mtp_model_t mtp_model = {"fuzz_model", 1, 1, inputs, outputs, 0, run_fuzz_model, 0};
