// tvm target: c -keys=cpu -link-params=0 -runtime=c -system-lib=1
/* Test data written by hand in the shape of TVM 0.8's packed C kernels (argument unpacking, the
 * num_args and type-code checks, a TVMBackendAllocWorkspace scratch), small enough for an AVR:
 * out = clip(-clip(x + p0)), int8[1, 8]. tests/legacy_archives.py packs it as a legacy graph
 * archive with p0 only in parameters/default.params. */
#define TVM_EXPORTS
#include "tvm/runtime/c_runtime_api.h"
#include "tvm/runtime/c_backend_api.h"

#ifdef __cplusplus
extern "C"
#endif
TVM_DLL int32_t tvmgen_default_fused_add_clip(void* args, void* arg_type_ids, int32_t num_args, void* out_ret_value, void* out_ret_tcode, void* resource_handle) {
  void* arg0 = (((TVMValue*)args)[0].v_handle);
  int32_t arg0_code = ((int32_t*)arg_type_ids)[(0)];
  void* arg1 = (((TVMValue*)args)[1].v_handle);
  int32_t arg1_code = ((int32_t*)arg_type_ids)[(1)];
  void* arg2 = (((TVMValue*)args)[2].v_handle);
  int32_t arg2_code = ((int32_t*)arg_type_ids)[(2)];
  void* placeholder = (((DLTensor*)arg0)[0].data);
  void* arg0_shape = (((DLTensor*)arg0)[0].shape);
  void* placeholder1 = (((DLTensor*)arg1)[0].data);
  void* T_add = (((DLTensor*)arg2)[0].data);
  int32_t dev_id = (((DLTensor*)arg0)[0].device.device_id);
  if (!(num_args == 3)) {
    TVMAPISetLastError("tvmgen_default_fused_add_clip: num_args should be 3");
    return -1;
  }
  if (!(arg0_code == 3 || arg0_code == 13 || arg0_code == 7 || arg0_code == 4)) {
    TVMAPISetLastError("tvmgen_default_fused_add_clip: Expect arg[0] to be pointer");
    return -1;
  }
  if (!(arg1_code == 3 || arg1_code == 13 || arg1_code == 7 || arg1_code == 4)) {
    TVMAPISetLastError("tvmgen_default_fused_add_clip: Expect arg[1] to be pointer");
    return -1;
  }
  if (!(arg2_code == 3 || arg2_code == 13 || arg2_code == 7 || arg2_code == 4)) {
    TVMAPISetLastError("tvmgen_default_fused_add_clip: Expect arg[2] to be pointer");
    return -1;
  }
  if (!(((DLTensor*)arg0)[0].ndim == 2 && ((int64_t*)arg0_shape)[1] == (int64_t)8)) {
    TVMAPISetLastError("Assert fail: placeholder.shape[1] == 8");
    return -1;
  }
  void* sum = TVMBackendAllocWorkspace(1, dev_id, (uint64_t)16, 0, 16);
  if (sum == NULL) {
    return -1;
  }
  for (int32_t ax1 = 0; ax1 < 8; ++ax1) {
    ((int16_t*)sum)[(ax1)] = (int16_t)(((int16_t)((int8_t*)placeholder)[(ax1)]) + ((int16_t)((int8_t*)placeholder1)[(ax1)]));
  }
  for (int32_t ax11 = 0; ax11 < 8; ++ax11) {
    int16_t _1 = ((int16_t*)sum)[(ax11)];
    int16_t _2 = (_1) < ((int16_t)127) ? (_1) : ((int16_t)127);
    ((int8_t*)T_add)[(ax11)] = ((int8_t)((_2) > ((int16_t)-128) ? (_2) : ((int16_t)-128)));
  }
  if (TVMBackendFreeWorkspace(1, dev_id, sum) != 0) {
    return -1;
  }
  return 0;
}

#ifdef __cplusplus
extern "C"
#endif
TVM_DLL int32_t tvmgen_default_fused_negative_clip(void* args, void* arg_type_ids, int32_t num_args, void* out_ret_value, void* out_ret_tcode, void* resource_handle) {
  void* arg0 = (((TVMValue*)args)[0].v_handle);
  int32_t arg0_code = ((int32_t*)arg_type_ids)[(0)];
  void* arg1 = (((TVMValue*)args)[1].v_handle);
  int32_t arg1_code = ((int32_t*)arg_type_ids)[(1)];
  void* placeholder = (((DLTensor*)arg0)[0].data);
  void* T_negative = (((DLTensor*)arg1)[0].data);
  if (!(num_args == 2)) {
    TVMAPISetLastError("tvmgen_default_fused_negative_clip: num_args should be 2");
    return -1;
  }
  if (!(arg0_code == 7 && arg1_code == 7)) {
    TVMAPISetLastError("tvmgen_default_fused_negative_clip: Expect DLTensor arguments");
    return -1;
  }
  for (int32_t ax1 = 0; ax1 < 8; ++ax1) {
    int16_t _1 = (int16_t)(-((int16_t)((int8_t*)placeholder)[(ax1)]));
    ((int8_t*)T_negative)[(ax1)] = ((int8_t)((_1) < ((int16_t)127) ? (_1) : ((int16_t)127)));
  }
  return 0;
}
