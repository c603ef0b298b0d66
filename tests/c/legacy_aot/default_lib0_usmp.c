/* Test data: the entry TVM 0.10+ emits for --interface-api=c with USMP workspace pools. */
#include <stdint.h>

#include "tvmgen_default.h"

int32_t tvmgen_default___tvm_main__(void* input, void* output, uint8_t* global_workspace);

int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs, struct tvmgen_default_outputs* outputs,
                           struct tvmgen_default_workspace_pools* workspace_pools) {
  return tvmgen_default___tvm_main__(inputs->Reshape_1, outputs->output,
                                     (uint8_t*)workspace_pools->global_workspace);
}
