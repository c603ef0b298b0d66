"""Small ONNX models built with onnx.helper for the compiler tests (not a test file), and the names
of the ../shared TFLite fixtures those tests compile.

Float and QDQ-int8 versions of a sine MLP ([1,1] -> 16 -> 16 -> 1, relu) and of a small CNN
(conv 3x3 + relu + maxpool + conv 3x3 + relu + global average pool + flatten + dense). Weights
are deterministic random (np.random.default_rng(seed)). The QDQ versions quantize every activation
(scales calibrated by running the float model in onnxruntime), use int8 weights with per-tensor
(MLP) or per-channel (CNN) scales, and int32 biases at input_scale * weight_scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
MLP_INPUT = "x"
MLP_OUTPUT = "y"
CNN_INPUT = "image"
CNN_OUTPUT = "logits"
CNN_INPUT_SHAPE = (1, 1, 16, 16)


# --------------------------------------------------------------------------------- layer lists
# A model is described once as a list of layers; the float and the QDQ builders both read it.

def _mlp_layers(seed: int) -> List[dict]:
    rng = np.random.default_rng(seed)
    sizes = [1, 16, 16, 1]
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append({
            "kind": "dense",
            "weight": rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32),
            "bias": rng.normal(0.0, 0.1, (n_out,)).astype(np.float32),
            "relu": index < len(sizes) - 2,
        })
    return layers


def _cnn_layers(seed: int) -> List[dict]:
    rng = np.random.default_rng(seed)

    def conv(c_out, c_in):
        return {
            "kind": "conv",
            "weight": rng.normal(0.0, 1.0 / np.sqrt(9 * c_in), (c_out, c_in, 3, 3)).astype(np.float32),
            "bias": rng.normal(0.0, 0.1, (c_out,)).astype(np.float32),
            "relu": True,
        }

    return [
        conv(4, CNN_INPUT_SHAPE[1]),
        {"kind": "maxpool"},
        conv(8, 4),
        {"kind": "global_avgpool"},
        {"kind": "flatten"},
        {
            "kind": "dense",
            "weight": rng.normal(0.0, 1.0 / np.sqrt(8), (10, 8)).astype(np.float32),
            "bias": rng.normal(0.0, 0.1, (10,)).astype(np.float32),
            "relu": False,
        },
    ]


# --------------------------------------------------------------------------------- float graphs

class _Graph:
    def __init__(self):
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.value_names: List[str] = []  # every activation, for calibration
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], output: Optional[str] = None, **attrs) -> str:
        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=f"{op_type}_{len(self.nodes)}", **attrs))
        return output


def _float_layer(graph: _Graph, layer: dict, x: str, output: Optional[str]) -> str:
    kind = layer["kind"]
    if kind == "dense":
        w = graph.const("w", layer["weight"])
        b = graph.const("b", layer["bias"])
        y = graph.node("Gemm", [x, w, b], None if layer["relu"] else output, transB=1)
        return graph.node("Relu", [y], output) if layer["relu"] else y
    if kind == "conv":
        w = graph.const("w", layer["weight"])
        b = graph.const("b", layer["bias"])
        y = graph.node("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        return graph.node("Relu", [y], output)
    if kind == "maxpool":
        return graph.node("MaxPool", [x], output, kernel_shape=[2, 2], strides=[2, 2])
    if kind == "global_avgpool":
        return graph.node("GlobalAveragePool", [x], output)
    if kind == "flatten":
        return graph.node("Flatten", [x], output, axis=1)
    raise ValueError(kind)


def _model(graph: _Graph, input_name: str, input_shape, output_name: str, output_shape, extra_outputs=()) -> onnx.ModelProto:
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output_shape))]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in extra_outputs]
    onnx_graph = helper.make_graph(
        graph.nodes, "model",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        outputs, graph.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="microtvm-projects tests")
    model.ir_version = 8
    if not extra_outputs:  # calibration outputs have no static shape, which the checker requires
        onnx.checker.check_model(model)
    return model


def _float_model(layers, input_name, input_shape, output_name, output_shape, expose=False) -> onnx.ModelProto:
    graph = _Graph()
    x = input_name
    for index, layer in enumerate(layers):
        x = _float_layer(graph, layer, x, output_name if index == len(layers) - 1 else None)
        if index < len(layers) - 1:
            graph.value_names.append(x)
    return _model(graph, input_name, input_shape, output_name, output_shape, graph.value_names if expose else ())


# --------------------------------------------------------------------------------- QDQ graphs

def _calibrate(layers, input_name, input_shape, output_name, output_shape, samples: np.ndarray) -> List[float]:
    """Max |value| of the input, each layer's output and the model output, over ``samples``."""
    import onnxruntime as ort

    model = _float_model(layers, input_name, input_shape, output_name, output_shape, expose=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    peaks = np.zeros(len(names) + 1)
    for sample in samples:
        results = session.run(names, {input_name: sample})
        peaks[0] = max(peaks[0], float(np.abs(sample).max()))
        for index, value in enumerate(results):
            peaks[index + 1] = max(peaks[index + 1], float(np.abs(value).max()))
    # graph outputs list the model output first, then the exposed layer outputs in order
    return [peaks[0]] + list(peaks[2:]) + [peaks[1]]


def _qdq(graph: _Graph, x: str, scale: float, zero_point: int = 0) -> str:
    s = graph.const("s", np.float32(scale))
    z = graph.const("z", np.int8(zero_point))
    q = graph.node("QuantizeLinear", [x, s, z])
    return graph.node("DequantizeLinear", [q, s, z])


def _quantized_weight(graph: _Graph, weight: np.ndarray, per_channel: bool) -> Tuple[str, np.ndarray]:
    axes = tuple(range(1, weight.ndim))
    peak = np.abs(weight).max(axis=axes) if per_channel else np.array(np.abs(weight).max())
    scale = np.maximum(peak, 1e-8).astype(np.float32) / 127.0
    shaped = scale.reshape((-1,) + (1,) * (weight.ndim - 1)) if per_channel else scale
    q = np.clip(np.round(weight / shaped), -127, 127).astype(np.int8)
    w = graph.const("wq", q)
    s = graph.const("ws", scale)
    z = graph.const("wz", np.zeros(scale.shape, np.int8))
    attrs = {"axis": 0} if per_channel else {}
    return graph.node("DequantizeLinear", [w, s, z], **attrs), scale


def _quantized_bias(graph: _Graph, bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> str:
    scale = (np.float32(input_scale) * weight_scale).astype(np.float32)
    scale = np.broadcast_to(scale, bias.shape).astype(np.float32)
    q = np.round(bias / scale).astype(np.int32)
    b = graph.const("bq", q)
    s = graph.const("bs", scale)
    z = graph.const("bz", np.zeros(bias.shape, np.int32))
    return graph.node("DequantizeLinear", [b, s, z], axis=0)


def _qdq_model(layers, input_name, input_shape, output_name, output_shape, per_channel: bool, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed + 1000)
    samples = rng.uniform(-1.0, 1.0, (16,) + tuple(input_shape)).astype(np.float32)
    peaks = _calibrate(layers, input_name, input_shape, output_name, output_shape, samples)
    scales = [max(p, 1e-3) / 127.0 for p in peaks]
    graph = _Graph()
    x = _qdq(graph, input_name, scales[0])
    for index, layer in enumerate(layers):
        last = index == len(layers) - 1
        in_scale = scales[index]
        kind = layer["kind"]
        if kind in ("dense", "conv"):
            w, w_scale = _quantized_weight(graph, layer["weight"], per_channel)
            b = _quantized_bias(graph, layer["bias"], in_scale, w_scale)
            if kind == "dense":
                y = graph.node("Gemm", [x, w, b], transB=1)
            else:
                y = graph.node("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
            if layer["relu"]:
                y = graph.node("Relu", [y])
        else:
            y = _float_layer(graph, layer, x, None)
        if kind in ("maxpool", "flatten"):
            scales[index + 1] = in_scale  # value-preserving ops keep their input's quantization
        x = _qdq(graph, y, scales[index + 1])
        if last:
            graph.nodes[-1].output[0] = output_name
    return _model(graph, input_name, input_shape, output_name, output_shape)


# --------------------------------------------------------------------------------- public helpers

def _save(model: onnx.ModelProto, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_sine_mlp(path, seed: int = 0) -> Path:
    """Float MLP [1,1] -> 16 -> 16 -> 1 with relu; input 'x', output 'y'."""
    return _save(_float_model(_mlp_layers(seed), MLP_INPUT, (1, 1), MLP_OUTPUT, (1, 1)), path)


def build_sine_mlp_qdq(path, seed: int = 0) -> Path:
    """The sine MLP in QDQ int8 form with per-tensor weight scales."""
    return _save(_qdq_model(_mlp_layers(seed), MLP_INPUT, (1, 1), MLP_OUTPUT, (1, 1), per_channel=False, seed=seed), path)


def build_small_cnn(path, seed: int = 0) -> Path:
    """Float CNN on [1,1,16,16]: conv3x3(4)+relu, maxpool 2x2, conv3x3(8)+relu, global avg pool,
    flatten, dense(10); input 'image', output 'logits'."""
    return _save(_float_model(_cnn_layers(seed), CNN_INPUT, CNN_INPUT_SHAPE, CNN_OUTPUT, (1, 10)), path)


def build_small_cnn_qdq(path, seed: int = 0) -> Path:
    """The small CNN in QDQ int8 form with per-channel weight scales."""
    return _save(
        _qdq_model(_cnn_layers(seed), CNN_INPUT, CNN_INPUT_SHAPE, CNN_OUTPUT, (1, 10), per_channel=True, seed=seed), path
    )


def build_sine_mlp_int8_output(path, seed: int = 0) -> Path:
    """The float sine MLP followed by one QuantizeLinear: a float network with an int8 output.
    Fusion must not pull the whole float network into the quantize's kernel."""
    graph = _Graph()
    x = MLP_INPUT
    for layer in _mlp_layers(seed):
        x = _float_layer(graph, layer, x, None)
    scale = graph.const("s", np.float32(0.01))
    zero_point = graph.const("z", np.int8(3))
    graph.node("QuantizeLinear", [x, scale, zero_point], MLP_OUTPUT)
    onnx_graph = helper.make_graph(
        graph.nodes, "model",
        [helper.make_tensor_value_info(MLP_INPUT, TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info(MLP_OUTPUT, TensorProto.INT8, [1, 1])], graph.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return _save(model, path)


def build_unsupported_op_model(path, op_type: str = "Det", node_name: str = "determinant_node") -> Path:
    """A float model whose only node uses an operator the TVM ONNX frontend cannot import."""
    node = helper.make_node(op_type, ["m"], ["d"], name=node_name)
    graph = helper.make_graph(
        [node], "unsupported",
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return _save(model, path)


# The ../shared TFLite fixtures the compiler tests compile: every one but the hybrid (float weights,
# int8 activations) model, which lowering refuses.
TFLITE_FIXTURES = [
    "tflm_hello_world_float",
    "tflm_hello_world_int8",
    "tflm_micro_speech_quantized",
    "mlperf_tiny_kws_ref_model_int8",
    "mlperf_tiny_ic_resnet8_pretrainedResnet_quant",
    "mlperf_tiny_ad01_int8",
]
INT8_TFLITE_FIXTURES = [name for name in TFLITE_FIXTURES if "float" not in name]

ALL_BUILDERS: Dict[str, object] = {
    "sine_mlp": build_sine_mlp,
    "sine_mlp_qdq": build_sine_mlp_qdq,
    "small_cnn": build_small_cnn,
    "small_cnn_qdq": build_small_cnn_qdq,
    "sine_mlp_int8_output": build_sine_mlp_int8_output,
}


def build_passthrough_model(path) -> Path:
    """Outputs that alias other tensors: 'same' is the input itself, 'flat' a reshape of it and
    'weights' a constant. Lowering must give each its own copy kernel."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 6])
    weights = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(1, 6), "table")
    nodes = [
        helper.make_node("Identity", ["x"], ["same"], name="identity"),
        helper.make_node("Reshape", ["x", "shape"], ["flat"], name="reshape"),
        helper.make_node("Identity", ["table"], ["weights"], name="constant_out"),
    ]
    graph = helper.make_graph(
        nodes, "passthrough",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, [1, 2, 3]),
         helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 6]),
         helper.make_tensor_value_info("weights", TensorProto.FLOAT, [1, 6])],
        [shape, weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return _save(model, path)


def build_awkward_names_model(path) -> Path:
    """Two inputs whose names are no C identifiers, '1st:input/x-1' and 'in.2', and outputs
    'out put:0' = sigmoid(relu(x) + in.2) and 'diff-0' = relu(x) - in.2."""
    nodes = [
        helper.make_node("Relu", ["1st:input/x-1"], ["r.2"], name="relu:1"),
        helper.make_node("Add", ["r.2", "in.2"], ["s/3"], name="add 2"),
        helper.make_node("Sigmoid", ["s/3"], ["out put:0"], name="sigmoid 3"),
        helper.make_node("Sub", ["r.2", "in.2"], ["diff-0"], name="sub-4"),
    ]
    graph = helper.make_graph(
        nodes, "awkward names",
        [helper.make_tensor_value_info("1st:input/x-1", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("in.2", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("out put:0", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("diff-0", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return _save(model, path)


def build_keyword_names_model(path) -> Path:
    """Tensors named like C keywords: 'int' -> Sigmoid -> 'float'."""
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["int"], ["float"], name="return")], "keywords",
        [helper.make_tensor_value_info("int", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("float", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return _save(model, path)


# --------------------------------------------------------------------------------- build and compile once

_BUILT: Dict[str, Path] = {}


def shared_model_dir(tmp_path_factory) -> Path:
    """A session-wide folder holding every model of ALL_BUILDERS, 'passthrough.onnx',
    'awkward_names.onnx', 'dw_pool_fc.tflite' and its LiteRT twin 'dw_pool_fc_qdim0.tflite',
    built once, at the same path for every test file (so ``lower_once`` compiles each model once)."""
    directory = tmp_path_factory.getbasetemp() / "built_models"
    key = str(directory)
    if key not in _BUILT:
        directory.mkdir(parents=True, exist_ok=True)
        for name, build in ALL_BUILDERS.items():
            build(directory / f"{name}.onnx")
        build_passthrough_model(directory / "passthrough.onnx")
        build_awkward_names_model(directory / "awkward_names.onnx")
        build_tflite_dw_pool_fc_int8(directory / "dw_pool_fc.tflite")
        build_tflite_dw_pool_fc_int8(directory / "dw_pool_fc_qdim0.tflite", bias_quantized_dimension=0)
        _BUILT[key] = directory
    return _BUILT[key]


_LOWERED: Dict[Tuple[str, str], object] = {}


def lower_once(path, model_name: str = "default"):
    """``lower_model(path, model_name)``, computed once per test session (the tests share it)."""
    from project_api.compiler.lowering import lower_model

    key = (str(path), model_name)
    if key not in _LOWERED:
        _LOWERED[key] = lower_model(str(path), model_name=model_name)
    return _LOWERED[key]


# --------------------------------------------------------------------------------- TFLite

TFLITE_INPUT = "input:0"
TFLITE_OUTPUT = "Identity:0"


def _tfl(module: str):
    """A generated module of the ``tflite`` package (the package re-exports classes by the same names)."""
    import importlib

    return importlib.import_module(f"tflite.{module}")


def build_tflite_dw_pool_fc_int8(path, seed: int = 0, bias_quantized_dimension: int = 3, names: bool = True) -> Path:
    """A full-integer TFLite model that hits the three TFLite frontend bugs real models hit:
    int8 [1,8,8,4] -> DEPTHWISE_CONV_2D 3x3 (int8 weights, int32 bias whose quantized_dimension
    is 3 as in person_detect, relu) -> AVERAGE_POOL_2D 2x2 (int8) ->
    FULLY_CONNECTED on the rank-4 pooled tensor (as in micro_speech) -> int8 [1,10].
    The bias is quantized per tensor, so its quantized_dimension means nothing; LiteRT's verifier
    refuses 3 on a 1-D tensor, so LiteRT references use ``bias_quantized_dimension=0``.
    ``names=False`` leaves every tensor and the subgraph unnamed, as converters that strip names
    (and tflite-micro's own test models) do.
    Written with the flatbuffers builder of the ``tflite`` package (no TensorFlow needed)."""
    import flatbuffers
    from tflite.ActivationFunctionType import ActivationFunctionType
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.BuiltinOptions import BuiltinOptions
    from tflite.Padding import Padding
    from tflite.TensorType import TensorType

    rng = np.random.default_rng(seed)
    channels = 4
    in_scale, in_zp = 0.05, -3
    dw_weights = rng.integers(-127, 128, (1, 3, 3, channels)).astype(np.int8)
    dw_scales = np.array([0.006], np.float32)
    dw_bias = rng.integers(-2000, 2000, channels).astype(np.int32)
    act_scale, act_zp = 0.03, -128  # relu output: zero point at the bottom of the range
    fc_weights = rng.integers(-127, 128, (10, 4 * 4 * channels)).astype(np.int8)
    fc_scale = 0.004
    fc_bias = rng.integers(-3000, 3000, 10).astype(np.int32)
    out_scale, out_zp = 0.08, 5

    b = flatbuffers.Builder(4096)
    buffers = [b""]  # buffer 0 is the empty sentinel

    def add_buffer(array) -> int:
        buffers.append(np.ascontiguousarray(array).tobytes())
        return len(buffers) - 1

    def quantization(scales, zero_points, dimension=0):
        Q = _tfl("QuantizationParameters")
        scale_vec = b.CreateNumpyVector(np.asarray(scales, np.float32).ravel())
        zp_vec = b.CreateNumpyVector(np.asarray(zero_points, np.int64).ravel())
        Q.QuantizationParametersStart(b)
        Q.QuantizationParametersAddScale(b, scale_vec)
        Q.QuantizationParametersAddZeroPoint(b, zp_vec)
        Q.QuantizationParametersAddQuantizedDimension(b, dimension)
        return Q.QuantizationParametersEnd(b)

    tensors = []

    def tensor(name, shape, dtype, quant, buffer=0) -> int:
        T = _tfl("Tensor")
        name_off = b.CreateString(name) if names else None
        shape_vec = b.CreateNumpyVector(np.asarray(shape, np.int32))
        T.TensorStart(b)
        T.TensorAddShape(b, shape_vec)
        T.TensorAddType(b, dtype)
        T.TensorAddBuffer(b, buffer)
        if name_off is not None:
            T.TensorAddName(b, name_off)
        T.TensorAddQuantization(b, quant)
        tensors.append(T.TensorEnd(b))
        return len(tensors) - 1

    t_in = tensor(TFLITE_INPUT, [1, 8, 8, channels], TensorType.INT8, quantization([in_scale], [in_zp]))
    t_dw_w = tensor("dw/weights", [1, 3, 3, channels], TensorType.INT8,
                    quantization(dw_scales, [0], 0), add_buffer(dw_weights))
    t_dw_b = tensor("dw/bias", [channels], TensorType.INT32,
                    quantization(dw_scales * in_scale, [0], bias_quantized_dimension), add_buffer(dw_bias))
    t_dw = tensor("dw/relu", [1, 8, 8, channels], TensorType.INT8, quantization([act_scale], [act_zp]))
    t_pool = tensor("pool", [1, 4, 4, channels], TensorType.INT8, quantization([act_scale], [act_zp]))
    t_fc_w = tensor("fc/weights", [10, 4 * 4 * channels], TensorType.INT8,
                    quantization([fc_scale], [0]), add_buffer(fc_weights))
    t_fc_b = tensor("fc/bias", [10], TensorType.INT32, quantization([fc_scale * act_scale], [0]), add_buffer(fc_bias))
    t_out = tensor(TFLITE_OUTPUT, [1, 10], TensorType.INT8, quantization([out_scale], [out_zp]))

    D = _tfl("DepthwiseConv2DOptions")
    D.DepthwiseConv2DOptionsStart(b)
    D.DepthwiseConv2DOptionsAddPadding(b, Padding.SAME)
    D.DepthwiseConv2DOptionsAddStrideW(b, 1)
    D.DepthwiseConv2DOptionsAddStrideH(b, 1)
    D.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
    D.DepthwiseConv2DOptionsAddFusedActivationFunction(b, ActivationFunctionType.RELU)
    D.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
    D.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
    dw_options = D.DepthwiseConv2DOptionsEnd(b)
    P = _tfl("Pool2DOptions")
    P.Pool2DOptionsStart(b)
    P.Pool2DOptionsAddPadding(b, Padding.VALID)
    P.Pool2DOptionsAddStrideW(b, 2)
    P.Pool2DOptionsAddStrideH(b, 2)
    P.Pool2DOptionsAddFilterWidth(b, 2)
    P.Pool2DOptionsAddFilterHeight(b, 2)
    pool_options = P.Pool2DOptionsEnd(b)
    F = _tfl("FullyConnectedOptions")
    F.FullyConnectedOptionsStart(b)
    F.FullyConnectedOptionsAddFusedActivationFunction(b, ActivationFunctionType.NONE)
    fc_options = F.FullyConnectedOptionsEnd(b)

    operators = []

    def operator(opcode_index, inputs, outputs, options_type, options):
        O = _tfl("Operator")
        in_vec = b.CreateNumpyVector(np.asarray(inputs, np.int32))
        out_vec = b.CreateNumpyVector(np.asarray(outputs, np.int32))
        O.OperatorStart(b)
        O.OperatorAddOpcodeIndex(b, opcode_index)
        O.OperatorAddInputs(b, in_vec)
        O.OperatorAddOutputs(b, out_vec)
        O.OperatorAddBuiltinOptionsType(b, options_type)
        O.OperatorAddBuiltinOptions(b, options)
        operators.append(O.OperatorEnd(b))

    operator(0, [t_in, t_dw_w, t_dw_b], [t_dw], BuiltinOptions.DepthwiseConv2DOptions, dw_options)
    operator(1, [t_dw], [t_pool], BuiltinOptions.Pool2DOptions, pool_options)
    operator(2, [t_pool, t_fc_w, t_fc_b], [t_out], BuiltinOptions.FullyConnectedOptions, fc_options)

    codes = []
    C = _tfl("OperatorCode")
    for builtin, version in ((BuiltinOperator.DEPTHWISE_CONV_2D, 3), (BuiltinOperator.AVERAGE_POOL_2D, 2),
                             (BuiltinOperator.FULLY_CONNECTED, 4)):
        C.OperatorCodeStart(b)
        C.OperatorCodeAddDeprecatedBuiltinCode(b, builtin)
        C.OperatorCodeAddBuiltinCode(b, builtin)
        C.OperatorCodeAddVersion(b, version)
        codes.append(C.OperatorCodeEnd(b))

    def offsets_vector(start, items):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    S = _tfl("SubGraph")
    tensors_vec = offsets_vector(S.SubGraphStartTensorsVector, tensors)
    operators_vec = offsets_vector(S.SubGraphStartOperatorsVector, operators)
    inputs_vec = b.CreateNumpyVector(np.asarray([t_in], np.int32))
    outputs_vec = b.CreateNumpyVector(np.asarray([t_out], np.int32))
    name = b.CreateString("main") if names else None
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, tensors_vec)
    S.SubGraphAddInputs(b, inputs_vec)
    S.SubGraphAddOutputs(b, outputs_vec)
    S.SubGraphAddOperators(b, operators_vec)
    if name is not None:
        S.SubGraphAddName(b, name)
    subgraph = S.SubGraphEnd(b)

    B = _tfl("Buffer")
    buffer_offsets = []
    for data in buffers:
        data_vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
        B.BufferStart(b)
        if data_vec is not None:
            B.BufferAddData(b, data_vec)
        buffer_offsets.append(B.BufferEnd(b))

    M = _tfl("Model")
    codes_vec = offsets_vector(M.ModelStartOperatorCodesVector, codes)
    subgraphs_vec = offsets_vector(M.ModelStartSubgraphsVector, [subgraph])
    buffers_vec = offsets_vector(M.ModelStartBuffersVector, buffer_offsets)
    description = b.CreateString("microtvm-projects test model")
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes_vec)
    M.ModelAddSubgraphs(b, subgraphs_vec)
    M.ModelAddDescription(b, description)
    M.ModelAddBuffers(b, buffers_vec)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(b.Output()))
    return path
