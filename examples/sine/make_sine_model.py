"""Train the classic TFLM "hello world" sine model (1 -> 16 -> 16 -> 1, ReLU) with numpy and save
it as ONNX: float32, or int8 in QDQ form with --int8. Deterministic (fixed seed), about a second.

    python examples/sine/make_sine_model.py -o sine.onnx [--int8]
"""

import argparse
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def train(seed: int = 0, steps: int = 15000):
    rng = np.random.default_rng(seed)
    sizes = [1, 16, 16, 1]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params.append(rng.normal(0, math.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    x = np.linspace(0, 2 * math.pi, 512, dtype=np.float32)[:, None]
    y = np.sin(x)
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    for step in range(1, steps + 1):
        w1, b1, w2, b2, w3, b3 = params
        h1 = np.maximum(x @ w1 + b1, 0)
        h2 = np.maximum(h1 @ w2 + b2, 0)
        out = h2 @ w3 + b3
        grad_out = 2 * (out - y) / len(x)
        g_w3, g_b3 = h2.T @ grad_out, grad_out.sum(0)
        grad_h2 = (grad_out @ w3.T) * (h2 > 0)
        g_w2, g_b2 = h1.T @ grad_h2, grad_h2.sum(0)
        grad_h1 = (grad_h2 @ w2.T) * (h1 > 0)
        g_w1, g_b1 = x.T @ grad_h1, grad_h1.sum(0)
        for i, grad in enumerate((g_w1, g_b1, g_w2, g_b2, g_w3, g_b3)):
            m, v = moments[i]
            m[:] = beta1 * m + (1 - beta1) * grad
            v[:] = beta2 * v + (1 - beta2) * grad * grad
            m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
            params[i] -= (lr * m_hat / (np.sqrt(v_hat) + 1e-8)).astype(np.float32)
    return params


def _float_graph(params):
    w1, b1, w2, b2, w3, b3 = params
    inits = [numpy_helper.from_array(a, n) for a, n in zip(params, ["w1", "b1", "w2", "b2", "w3", "b3"])]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1_pre"], name="dense1"),
        helper.make_node("Relu", ["h1_pre"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "w2", "b2"], ["h2_pre"], name="dense2"),
        helper.make_node("Relu", ["h2_pre"], ["h2"], name="relu2"),
        helper.make_node("Gemm", ["h2", "w3", "b3"], ["y"], name="dense3"),
    ]
    return nodes, inits


def _int8_graph(params):
    """QDQ form: activations and weights quantized to int8 (symmetric weights, int32 bias)."""
    w1, b1, w2, b2, w3, b3 = params
    x_scale = 2 * math.pi / 255.0
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def qdq(src, dst, scale, zero_point):
        s = const(f"{dst}_scale", np.float32(scale))
        z = const(f"{dst}_zp", np.int8(zero_point))
        nodes.append(helper.make_node("QuantizeLinear", [src, s, z], [f"{dst}_q"], name=f"{dst}_quant"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{dst}_q", s, z], [dst], name=f"{dst}_dequant"))

    # Activation ranges from a float forward pass over the training interval.
    x = np.linspace(0, 2 * math.pi, 512, dtype=np.float32)[:, None]
    h1 = np.maximum(x @ w1 + b1, 0)
    h2 = np.maximum(h1 @ w2 + b2, 0)
    out = h2 @ w3 + b3
    qdq("x", "xq", x_scale, -128)
    prev, prev_scale = "xq", x_scale
    for i, (w, b, act, relu) in enumerate(((w1, b1, h1, True), (w2, b2, h2, True), (w3, b3, out, False)), 1):
        w_scale = float(np.abs(w).max()) / 127.0
        w_q = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        const(f"w{i}_q", w_q)
        const(f"w{i}_scale", np.float32(w_scale))
        const(f"w{i}_zp", np.int8(0))
        nodes.append(helper.make_node("DequantizeLinear", [f"w{i}_q", f"w{i}_scale", f"w{i}_zp"], [f"w{i}"], name=f"w{i}_dequant"))
        b_scale = prev_scale * w_scale
        const(f"b{i}_q", np.round(b / b_scale).astype(np.int32))
        const(f"b{i}_scale", np.float32(b_scale))
        const(f"b{i}_zp", np.int32(0))
        nodes.append(helper.make_node("DequantizeLinear", [f"b{i}_q", f"b{i}_scale", f"b{i}_zp"], [f"b{i}"], name=f"b{i}_dequant"))
        pre = f"h{i}_pre" if i < 3 else "y_f"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [pre], name=f"dense{i}"))
        if relu:
            nodes.append(helper.make_node("Relu", [pre], [f"h{i}"], name=f"relu{i}"))
            pre = f"h{i}"
        lo, hi = (0.0, float(act.max())) if relu else (float(act.min()), float(act.max()))
        scale = (hi - lo) / 255.0
        zero_point = int(round(-128 - lo / scale))
        dst = f"h{i}q" if i < 3 else "y"
        qdq(pre, dst, scale, zero_point)
        prev, prev_scale = dst, scale
    return nodes, inits


def make_model(int8: bool = False) -> onnx.ModelProto:
    params = train()
    nodes, inits = (_int8_graph if int8 else _float_graph)(params)
    graph = helper.make_graph(
        nodes,
        "sine_int8" if int8 else "sine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--int8", action="store_true", help="QDQ int8 instead of float32")
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(make_model(args.int8), str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
