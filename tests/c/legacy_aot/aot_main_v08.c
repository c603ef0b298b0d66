/* Test data: the TVM 0.8 AOT entry (unpacked interface): intermediates from TVMBackendAllocWorkspace. */
#ifdef __cplusplus
extern "C"
#endif
TVM_DLL int32_t tvmgen_default_run_model(void* arg0, void* arg1) {
  int32_t status;
  void* sid_in16 = TVMBackendAllocWorkspace(1, 0, (uint64_t)3920, 0, 16);
  void* sid_conv = TVMBackendAllocWorkspace(1, 0, (uint64_t)4000, 0, 8);
  void* sid_flat = TVMBackendAllocWorkspace(1, 0, (uint64_t)8000, 0, 16);
  void* sid_dense = TVMBackendAllocWorkspace(1, 0, (uint64_t)16, 2, 32);
  void* sid_soft = TVMBackendAllocWorkspace(1, 0, (uint64_t)16, 2, 32);
  if (sid_in16 == NULL || sid_conv == NULL || sid_flat == NULL || sid_dense == NULL || sid_soft == NULL) {
    return -1;
  }
  status = ms_run(arg0, arg1, sid_in16, sid_conv, sid_flat, sid_dense, sid_soft);
  TVMBackendFreeWorkspace(1, 0, sid_soft);
  TVMBackendFreeWorkspace(1, 0, sid_dense);
  TVMBackendFreeWorkspace(1, 0, sid_flat);
  TVMBackendFreeWorkspace(1, 0, sid_conv);
  TVMBackendFreeWorkspace(1, 0, sid_in16);
  return status;
}
