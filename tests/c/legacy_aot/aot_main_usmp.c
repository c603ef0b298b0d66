/* Test data: a TVM 0.10+ AOT main with USMP: the intermediates sit at planned offsets of the
 * global_workspace pool the caller passes (the kernels still take their own scratch from
 * TVMBackendAllocWorkspace); default_lib0_usmp.c holds the tvmgen_default_run entry. */
TVM_DLL int32_t tvmgen_default___tvm_main__(void* input, void* output, uint8_t* global_workspace) {
  return ms_run(input, output, global_workspace, global_workspace + 3920, global_workspace + 7920,
                global_workspace + 15920, global_workspace + 15936);
}
