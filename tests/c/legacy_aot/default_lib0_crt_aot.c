/* Test data: the CRT AOT executor glue a TVM 0.8 AOT archive carried (project generation sets it
 * aside: it needs the CRT's tvm_model_t, and its prototype of the main is not C99). */
#include <tvm/runtime/crt/internal/aot_executor/aot_executor.h>
#include <tvm/runtime/c_runtime_api.h>
#ifdef __cplusplus
extern "C"
#endif
TVM_DLL int32_t tvmgen_default_run_model(void* arg0,void* arg1);
TVM_DLL int32_t tvmgen_default_run_model(void* arg0,void* arg1);
const tvm_model_t tvmgen_default_network = {
    .run_func = &tvmgen_default_run_model,
    .num_input_tensors = 1,
    .num_output_tensors = 1,
};
