"""Hand-built LoweredModels with small hand-written C kernels, and their numpy references.

They test the planner, the static-runtime generator, the MLF writer and the native runner without
TVM: a float32 MLP (dense + relu, two inputs, two outputs, names that need sanitizing) and an int8
dense layer whose int32 accumulator is a WORKSPACE tensor.
"""

import numpy as np

from project_api.compiler.ir import CONSTANT, INPUT, INTERMEDIATE, OUTPUT, WORKSPACE, KernelCall, LoweredModel, Tensor

FLOAT_KERNELS = r"""
#include <stdint.h>

/* y[1,N] = x[1,K] . w[N,K]^T + b[N] */
static int32_t dense_f32(const float* x, const float* w, const float* b, float* y, int k, int n) {
  int i, j;
  for (j = 0; j < n; ++j) {
    float acc = b[j];
    for (i = 0; i < k; ++i) acc += x[i] * w[j * k + i];
    y[j] = acc;
  }
  return 0;
}

int32_t sample_dense_8x16(float* x, float* w, float* b, float* y) { return dense_f32(x, w, b, y, 8, 16); }
int32_t sample_dense_16x4(float* x, float* w, float* b, float* y) { return dense_f32(x, w, b, y, 16, 4); }

int32_t sample_add_16(float* a, float* b, float* y) {
  int i;
  for (i = 0; i < 16; ++i) y[i] = a[i] + b[i];
  return 0;
}

/* Returns 42 when x[0] < -10000: lets tests see a kernel's status come out of tvmgen_<c>_run. */
int32_t sample_relu_16(float* x, float* y) {
  int i;
  if (x[0] < -10000.0f) return 42;
  for (i = 0; i < 16; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  return 0;
}
"""

INT8_KERNELS = r"""
#include <stdint.h>

/* int32 accumulation into the workspace, then y = clamp(round(acc / 2^7), -128, 127). */
int32_t sample_dense_i8(int8_t* x, int8_t* w, int32_t* bias, int8_t* y, int32_t* acc) {
  int i, j;
  for (j = 0; j < 32; ++j) {
    acc[j] = bias[j];
    for (i = 0; i < 64; ++i) acc[j] += (int32_t)x[i] * (int32_t)w[j * 64 + i];
  }
  for (j = 0; j < 32; ++j) {
    int32_t v = (acc[j] + 64) >> 7;
    y[j] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
  }
  return 0;
}

int32_t sample_relu_i8(int8_t* x, int8_t* y) {
  int i;
  for (i = 0; i < 32; ++i) y[i] = x[i] > 0 ? x[i] : 0;
  return 0;
}
"""


def float_mlp(name="sample-mlp"):
    """x["input:0"][1,8], bias_in[1,16] -> dense -> +bias_in -> relu -> dense -> "out/logits"[1,4];
    the relu result is also the output "out relu"[1,16]."""
    rng = np.random.default_rng(0)
    t = {}

    def add(n, shape, dtype, kind, data=None):
        t[n] = Tensor(n, tuple(shape), dtype, kind, data)

    add("input:0", (1, 8), "float32", INPUT)
    add("bias_in", (1, 16), "float32", INPUT)
    add("w1", (16, 8), "float32", CONSTANT, rng.standard_normal((16, 8)).astype(np.float32))
    add("b1", (16,), "float32", CONSTANT, rng.standard_normal(16).astype(np.float32))
    add("w2", (4, 16), "float32", CONSTANT, rng.standard_normal((4, 16)).astype(np.float32))
    add("b2", (4,), "float32", CONSTANT, np.array([0.5, -np.float32(1e-30), 3.25, 0.0], dtype=np.float32))
    add("h1", (1, 16), "float32", INTERMEDIATE)
    add("h2", (1, 16), "float32", INTERMEDIATE)
    add("out relu", (1, 16), "float32", OUTPUT)
    add("out/logits", (1, 4), "float32", OUTPUT)
    calls = [
        KernelCall("sample_dense_8x16", ["input:0", "w1", "b1", "h1"], ["h1"]),
        KernelCall("sample_add_16", ["h1", "bias_in", "h2"], ["h2"]),
        KernelCall("sample_relu_16", ["h2", "out relu"], ["out relu"]),
        KernelCall("sample_dense_16x4", ["out relu", "w2", "b2", "out/logits"], ["out/logits"]),
    ]
    return LoweredModel(
        name=name,
        tensors=t,
        inputs=["input:0", "bias_in"],
        outputs=["out/logits", "out relu"],
        calls=calls,
        kernels_c=FLOAT_KERNELS,
        source_text="# hand-written sample\n",
        target="c",
    )


def float_mlp_reference(model, x, bias_in):
    c = {n: tensor.data for n, tensor in model.tensors.items() if tensor.kind == CONSTANT}
    h = x.astype(np.float32) @ c["w1"].T + c["b1"]
    relu = np.maximum(h + bias_in, 0).astype(np.float32)
    logits = (relu @ c["w2"].T + c["b2"]).astype(np.float32)
    return [logits, relu]


def int8_dense(name="default"):
    """x[1,64] int8 -> dense (int32 acc in a workspace, requantize) -> relu -> y[1,32] int8."""
    rng = np.random.default_rng(1)
    t = {
        "x": Tensor("x", (1, 64), "int8", INPUT),
        "w": Tensor("w", (32, 64), "int8", CONSTANT, rng.integers(-128, 128, (32, 64), dtype=np.int8)),
        "bias": Tensor("bias", (32,), "int32", CONSTANT, rng.integers(-2000, 2000, 32).astype(np.int32)),
        "acc": Tensor("acc", (32,), "int32", WORKSPACE),
        "dense_out": Tensor("dense_out", (1, 32), "int8", INTERMEDIATE),
        "y": Tensor("y", (1, 32), "int8", OUTPUT),
    }
    calls = [
        KernelCall("sample_dense_i8", ["x", "w", "bias", "dense_out", "acc"], ["dense_out", "acc"]),
        KernelCall("sample_relu_i8", ["dense_out", "y"], ["y"]),
    ]
    return LoweredModel(name, t, ["x"], ["y"], calls, INT8_KERNELS, "# int8 sample\n", "c")


def int8_dense_reference(model, x):
    w = model.tensors["w"].data.astype(np.int64)
    bias = model.tensors["bias"].data.astype(np.int64)
    acc = x.astype(np.int64) @ w.T + bias  # never beyond int32 for these sizes
    y = np.clip((acc + 64) >> 7, -128, 127)
    return [np.maximum(y, 0).astype(np.int8)]
