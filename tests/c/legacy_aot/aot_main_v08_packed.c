/* Test data: the TVM 0.8 AOT entry with the default packed interface: the input and output
 * arrive as DLTensors in TVMValue arguments; intermediates from TVMBackendAllocWorkspace. */
#ifdef __cplusplus
extern "C"
#endif
TVM_DLL int32_t tvmgen_default_run_model(void* args, void* arg_type_ids, int32_t num_args, void* out_ret_value,
                                         void* out_ret_tcode, void* resource_handle) {
  int32_t status;
  void* input;
  void* output;
  void* sid_in16;
  void* sid_conv;
  void* sid_flat;
  void* sid_dense;
  void* sid_soft;
  (void)out_ret_value;
  (void)out_ret_tcode;
  (void)resource_handle;
  if (num_args != 2 || ((int32_t*)arg_type_ids)[0] != kTVMDLTensorHandle ||
      ((int32_t*)arg_type_ids)[1] != kTVMDLTensorHandle) {
    TVMAPISetLastError("tvmgen_default_run_model: expects two DLTensor arguments");
    return -1;
  }
  input = ((DLTensor*)((TVMValue*)args)[0].v_handle)->data;
  output = ((DLTensor*)((TVMValue*)args)[1].v_handle)->data;
  sid_in16 = TVMBackendAllocWorkspace(1, 0, (uint64_t)3920, 0, 16);
  sid_conv = TVMBackendAllocWorkspace(1, 0, (uint64_t)4000, 0, 8);
  sid_flat = TVMBackendAllocWorkspace(1, 0, (uint64_t)8000, 0, 16);
  sid_dense = TVMBackendAllocWorkspace(1, 0, (uint64_t)16, 2, 32);
  sid_soft = TVMBackendAllocWorkspace(1, 0, (uint64_t)16, 2, 32);
  if (sid_in16 == NULL || sid_conv == NULL || sid_flat == NULL || sid_dense == NULL || sid_soft == NULL) {
    return -1;
  }
  status = ms_run(input, output, sid_in16, sid_conv, sid_flat, sid_dense, sid_soft);
  TVMBackendFreeWorkspace(1, 0, sid_soft);
  TVMBackendFreeWorkspace(1, 0, sid_dense);
  TVMBackendFreeWorkspace(1, 0, sid_flat);
  TVMBackendFreeWorkspace(1, 0, sid_conv);
  TVMBackendFreeWorkspace(1, 0, sid_in16);
  return status;
}
