/* Test data: the body of a legacy AOT main for the micro_speech graph fixture. tests/legacy_archives.py
 * appends it, and one of the aot_main_*.c entries, to the fixture's default_lib1.c (the file TVM
 * emitted the AOT main into) to synthesise AOT archives from the same kernels: like TVM's AOT code
 * it describes each argument as a DLTensor on the stack and calls the packed kernels in the graph's
 * order, the linked parameters by their symbols, the intermediates in buffers its entry provides. */

#define MS_TENSOR(t, ptr, rank, dims, code_, bits_) \
  do {                                              \
    (t).data = (void*)(ptr);                        \
    (t).device.device_type = kDLCPU;                \
    (t).device.device_id = 0;                       \
    (t).ndim = (rank);                              \
    (t).dtype.code = (code_);                       \
    (t).dtype.bits = (bits_);                       \
    (t).dtype.lanes = 1;                            \
    (t).shape = (int64_t*)(dims);                   \
    (t).strides = NULL;                             \
    (t).byte_offset = 0;                            \
  } while (0)

static int64_t ms_shape_input[2] = {1, 1960};
static int64_t ms_shape_scalar[1] = {1};
static int64_t ms_shape_nhwc_in[4] = {1, 49, 40, 1};
static int64_t ms_shape_weights[4] = {10, 8, 1, 8};
static int64_t ms_shape_channel[4] = {1, 1, 1, 8};
static int64_t ms_shape_conv[4] = {1, 25, 20, 8};
static int64_t ms_shape_flat[2] = {1, 4000};
static int64_t ms_shape_packed[3] = {1, 4000, 4};
static int64_t ms_shape_bias[1] = {4};
static int64_t ms_shape_out[2] = {1, 4};

static int32_t ms_call(int32_t (*kernel)(void*, void*, int32_t, void*, void*, void*), DLTensor* tensors, int count) {
  TVMValue values[7];
  int codes[7];
  TVMValue ret;
  int ret_code = kTVMNullptr;
  int i;
  for (i = 0; i < count; ++i) {
    values[i].v_handle = &tensors[i];
    codes[i] = kTVMDLTensorHandle;
  }
  return kernel(values, codes, count, &ret, &ret_code, NULL);
}

static int32_t ms_run(void* arg0, void* arg1, void* sid_in16, void* sid_conv, void* sid_flat, void* sid_dense,
                      void* sid_soft) {
  DLTensor t[7];
  int32_t status = -1;
  MS_TENSOR(t[0], arg0, 2, ms_shape_input, kDLInt, 8);
  MS_TENSOR(t[1], __tvm_param__p0, 0, ms_shape_scalar, kDLInt, 16);
  MS_TENSOR(t[2], sid_in16, 4, ms_shape_nhwc_in, kDLInt, 16);
  if (ms_call(tvmgen_default_fused_reshape_cast_subtract, t, 3) != 0) goto done;
  MS_TENSOR(t[0], sid_in16, 4, ms_shape_nhwc_in, kDLInt, 16);
  MS_TENSOR(t[1], __tvm_param__p1, 4, ms_shape_weights, kDLInt, 16);
  MS_TENSOR(t[2], __tvm_param__p2, 4, ms_shape_channel, kDLInt, 32);
  MS_TENSOR(t[3], __tvm_param__p3, 4, ms_shape_channel, kDLInt, 64);
  MS_TENSOR(t[4], __tvm_param__p4, 4, ms_shape_channel, kDLInt, 64);
  MS_TENSOR(t[5], __tvm_param__p5, 4, ms_shape_channel, kDLInt, 64);
  MS_TENSOR(t[6], sid_conv, 4, ms_shape_conv, kDLInt, 8);
  if (ms_call(tvmgen_default_fused_nn_conv2d_add_cast_multiply_add_right_shift_cast_add_clip_cast_clip, t, 7) != 0)
    goto done;
  MS_TENSOR(t[0], sid_conv, 4, ms_shape_conv, kDLInt, 8);
  MS_TENSOR(t[1], __tvm_param__p6, 0, ms_shape_scalar, kDLInt, 16);
  MS_TENSOR(t[2], sid_flat, 2, ms_shape_flat, kDLInt, 16);
  if (ms_call(tvmgen_default_fused_reshape_cast_subtract_1, t, 3) != 0) goto done;
  MS_TENSOR(t[0], sid_flat, 2, ms_shape_flat, kDLInt, 16);
  MS_TENSOR(t[1], __tvm_param__p7, 3, ms_shape_packed, kDLInt, 16);
  MS_TENSOR(t[2], __tvm_param__p8, 1, ms_shape_bias, kDLInt, 32);
  MS_TENSOR(t[3], sid_dense, 2, ms_shape_out, kDLFloat, 32);
  if (ms_call(tvmgen_default_fused_nn_contrib_dense_pack_add_fixed_point_multiply_add_clip_cast_cast_subtract_14669711146056581479_,
              t, 4) != 0)
    goto done;
  MS_TENSOR(t[0], sid_dense, 2, ms_shape_out, kDLFloat, 32);
  MS_TENSOR(t[1], sid_soft, 2, ms_shape_out, kDLFloat, 32);
  if (ms_call(tvmgen_default_fused_nn_softmax, t, 2) != 0) goto done;
  MS_TENSOR(t[0], sid_soft, 2, ms_shape_out, kDLFloat, 32);
  MS_TENSOR(t[1], arg1, 2, ms_shape_out, kDLInt, 8);
  status = ms_call(tvmgen_default_fused_divide_add_round_cast_clip_cast, t, 2);
done:
  return status;
}
