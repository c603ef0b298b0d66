/*
 * A hand-written TEST model for the RPC layer's own tests only (tests/test_device_runtime.py,
 * tests/test_rpc_*.py, the fuzz harness). Real projects get model_glue.c from project_gen.py.
 *   out_f32 = 2 * in_f32 + 1          (float32 [4, 700]: larger than one packet, so chunked)
 *   out_i8[i] = -in_i8[4 - i]         (int8 [5]); run() returns 7 when in_i8[0] == -128,
 *                                     after saying why on the log channel
 */
#include "mtp_model.h"
#include "mtp_rpc.h"

static float in_f32[4 * 700];
static int8_t in_i8[5];
static float out_f32[4 * 700];
static int8_t out_i8[5];

static const int32_t shape_f32[2] = {4, 700};
static const int32_t shape_i8[1] = {5};

static const mtp_tensor_t inputs[2] = {
    {"in_f32", MTP_DTYPE_FLOAT, 32, 2, shape_f32, sizeof(in_f32), (uint8_t *)in_f32},
    {"in_i8", MTP_DTYPE_INT, 8, 1, shape_i8, sizeof(in_i8), (uint8_t *)in_i8},
};
static const mtp_tensor_t outputs[2] = {
    {"out_f32", MTP_DTYPE_FLOAT, 32, 2, shape_f32, sizeof(out_f32), (uint8_t *)out_f32},
    {"out_i8", MTP_DTYPE_INT, 8, 1, shape_i8, sizeof(out_i8), (uint8_t *)out_i8},
};

static int32_t run_test_model(void) {
  unsigned i;
  if (in_i8[0] == -128) {
    mtp_log("rpc_test_model: in_i8[0] is -128, failing with code 7");
    return 7;
  }
  for (i = 0; i < 4u * 700u; ++i) out_f32[i] = 2.0f * in_f32[i] + 1.0f;
  for (i = 0; i < 5u; ++i) out_i8[i] = (int8_t)(-in_i8[4u - i]);
  return 0;
}

const mtp_model_t mtp_model = {"rpc_test_model", 2, 2, inputs, outputs, 1234, run_test_model, 0};
