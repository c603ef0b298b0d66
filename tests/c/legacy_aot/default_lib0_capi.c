/* Test data: the entry TVM 0.9+ emits for --interface-api=c. */
#include "tvmgen_default.h"

int32_t tvmgen_default___tvm_main__(void* input, void* output);

int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs, struct tvmgen_default_outputs* outputs) {
  return tvmgen_default___tvm_main__(inputs->Reshape_1, outputs->output);
}
