"""ONNX QDQ int8 models (onnxruntime's static quantization, PyTorch's QDQ export) on the integer path.

TVM imports a QDQ model as dequantize -> float op -> quantize: float arithmetic and a float
requantization, slow on an FPU-less core. Each quantized operator of such a model is the pattern
``DequantizeLinear(x), DequantizeLinear(w), DequantizeLinear(b) -> Conv/Gemm [-> Relu] ->
QuantizeLinear``, which is exactly what a TFLite int8 operator states. ``to_tflite`` rewrites the
graph as that TFLite model (NCHW -> NHWC: OIHW weights to OHWI, a TRANSPOSE after the input, one
before a Flatten of a spatial tensor), which then takes qnn.py's integer kernels: int32
accumulation and TFLite's fixed-point requantization, identical on host and device. It differs from
onnxruntime only in rounding (fixed point, half away from zero, vs float and half to even): within
one LSB per layer. Any model or node outside these patterns returns ``None`` (the Relax path).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .tflite_writer import FLOAT32, INT8, INT32, TFLiteWriter


class _NotQdq(Exception):
    """This ONNX model is not for the integer path."""


class _Activation:
    """An int8 activation of the TFLite graph: tensor index, NHWC (or 2-D) shape, quantization."""

    def __init__(self, index: int, shape, scale: float, zero_point: int, nchw: bool):
        self.index, self.shape, self.scale, self.zero_point, self.nchw = index, list(shape), scale, zero_point, nchw


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
    """TFLite SAME padding (before, after) along one axis; the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Converter:
    def __init__(self, model):
        from onnx import numpy_helper

        self.graph = model.graph
        self.constants = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant":
                self.constants[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
        self.consumers: Dict[str, List] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.w = TFLiteWriter()
        self.values: Dict[str, _Activation] = {}  # ONNX int8 value name -> activation
        self.dequantized: Dict[str, str] = {}  # ONNX float value name -> the int8 value it dequantizes
        self.done = set()
        self.count = 0

    # -- helpers
    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def _quantization(self, node) -> Tuple[np.ndarray, np.ndarray, int]:
        scale = np.asarray(self.constants[node.input[1]], np.float32)
        if len(node.input) < 3 or not node.input[2]:
            raise _NotQdq("no zero point")
        zero = self.constants[node.input[2]]
        return scale, np.asarray(zero), int(_attrs(node).get("axis", 1))

    def _single_consumer(self, name: str, op_type: Optional[str] = None):
        users = self.consumers.get(name, [])
        if len(users) != 1 or (op_type and users[0].op_type != op_type):
            raise _NotQdq(f"'{name}' is not consumed by one {op_type or 'node'}")
        return users[0]

    def _activation_input(self, name: str) -> _Activation:
        if name not in self.dequantized:
            raise _NotQdq(f"'{name}' is not a dequantized activation")
        return self.values[self.dequantized[name]]

    def _weight(self, name: str):
        """int8 (or int32 bias) constant behind a DequantizeLinear: (data, scales)."""
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in self.constants:
            raise _NotQdq(f"'{name}' is not a dequantized constant")
        scale, zero, _ = self._quantization(node)
        if np.any(zero != 0):
            raise _NotQdq("asymmetric weights")
        return self.constants[node.input[0]], scale

    def _output_quantize(self, name: str):
        """The QuantizeLinear ending a quantized operator (after an optional Relu): (node, relu)."""
        user = self._single_consumer(name)
        relu = user.op_type == "Relu"
        if relu:
            user = self._single_consumer(user.output[0])
        if user.op_type != "QuantizeLinear":
            raise _NotQdq(f"'{name}' is not requantized")
        return user, relu

    def _new_activation(self, quantize_node, shape, nchw: bool) -> _Activation:
        scale, zero, _ = self._quantization(quantize_node)
        if zero.dtype != np.int8 or scale.size != 1:
            raise _NotQdq("activations must be int8, quantized per tensor")
        name = quantize_node.output[0]
        index = self.w.tensor(name, shape, INT8, float(scale), int(zero))
        act = _Activation(index, shape, float(scale), int(zero), nchw)
        self.values[name] = act
        return act

    # -- operators
    def quantize_input(self, node) -> None:
        source = node.input[0]
        graph_inputs = {v.name: v for v in self.graph.input}
        if source not in graph_inputs:
            raise _NotQdq("QuantizeLinear of a computed float value")
        dims = [d.dim_value or 1 for d in graph_inputs[source].type.tensor_type.shape.dim]
        self.input_index = self.w.tensor(source, dims, FLOAT32)
        self.input_name = source
        scale, zero, _ = self._quantization(node)
        if zero.dtype != np.int8:
            raise _NotQdq("uint8 activations")
        quantized = self.w.tensor(self._name("quantized"), dims, INT8, float(scale), int(zero))
        self.w.operator("QUANTIZE", [self.input_index], [quantized])
        if len(dims) == 4:  # NCHW -> NHWC
            nhwc = [dims[0], dims[2], dims[3], dims[1]]
            out = self.w.tensor(self._name("nhwc"), nhwc, INT8, float(scale), int(zero))
            self.w.operator("TRANSPOSE", [quantized, self.w.const(self._name("perm"), [0, 2, 3, 1])], [out])
            act = _Activation(out, nhwc, float(scale), int(zero), nchw=True)
        else:
            act = _Activation(quantized, dims, float(scale), int(zero), nchw=False)
        self.values[node.output[0]] = act

    def dequantize(self, node) -> None:
        source = node.input[0]
        if source in self.constants:
            return  # a weight, read by its consumer
        if source not in self.values:
            raise _NotQdq(f"DequantizeLinear of '{source}'")
        graph_outputs = {v.name for v in self.graph.output}
        if node.output[0] in graph_outputs:
            act = self.values[source]
            if act.nchw and len(act.shape) == 4:
                raise _NotQdq("a 4-D model output")
            out = self.w.tensor(node.output[0], act.shape, FLOAT32)
            self.w.operator("DEQUANTIZE", [act.index], [out])
            self.outputs.append(out)
        else:
            self.dequantized[node.output[0]] = source

    def conv(self, node) -> None:
        act = self._activation_input(node.input[0])
        weights, w_scale = self._weight(node.input[1])
        attrs = _attrs(node)
        out_channels, in_per_group, kh, kw = weights.shape
        group = int(attrs.get("group", 1))
        strides = list(attrs.get("strides", [1, 1]))
        dilations = list(attrs.get("dilations", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _NotQdq("auto_pad")
        _, height, width, channels = act.shape
        depthwise = group > 1
        if depthwise and (group != channels or in_per_group != 1):
            raise _NotQdq("grouped convolution")
        quantize, relu = self._output_quantize(node.output[0])
        same = [_same_padding(size, k, s, d) for size, k, s, d in zip((height, width), (kh, kw), strides, dilations)]
        padding = 1  # VALID
        if any(pads) and pads == [same[0][0], same[1][0], same[0][1], same[1][1]]:
            padding = 0  # SAME: the convolution clips its windows, no padded copy
            out_h, out_w = -(-height // strides[0]), -(-width // strides[1])
        else:
            if any(pads):
                act = self._pad(act, pads)
                _, height, width, _ = act.shape
            out_h = (height - (kh - 1) * dilations[0] - 1) // strides[0] + 1
            out_w = (width - (kw - 1) * dilations[1] - 1) // strides[1] + 1
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias_data, bias_scale = self._weight(node.input[2])
            bias = self.w.const(self._name("bias"), bias_data.astype(np.int32), INT32,
                                scale=np.broadcast_to(bias_scale, (out_channels,)), zero_point=np.zeros(out_channels))
        per_channel = np.broadcast_to(w_scale, (out_channels,))
        if depthwise:
            data = np.transpose(weights, (1, 2, 3, 0))  # [C, 1, KH, KW] -> [1, KH, KW, C]
            weight = self.w.const(self._name("weights"), data, INT8, scale=per_channel,
                                  zero_point=np.zeros(out_channels), dimension=3)
        else:
            data = np.transpose(weights, (0, 2, 3, 1))  # OIHW -> OHWI
            weight = self.w.const(self._name("weights"), data, INT8, scale=per_channel,
                                  zero_point=np.zeros(out_channels), dimension=0)
        out = self._new_activation(quantize, [1, out_h, out_w, out_channels], nchw=True)
        options = {"Padding": padding, "StrideH": strides[0], "StrideW": strides[1], "DilationHFactor": dilations[0],
                   "DilationWFactor": dilations[1], "FusedActivationFunction": 1 if relu else 0}
        inputs = [act.index, weight] + ([bias] if bias is not None else [-1])
        if depthwise:
            options["DepthMultiplier"] = out_channels // channels
            self.w.operator("DEPTHWISE_CONV_2D", inputs, [out.index], ("DepthwiseConv2DOptions", options))
        else:
            self.w.operator("CONV_2D", inputs, [out.index], ("Conv2DOptions", options))
        self._skip_chain(node, quantize)

    def _pad(self, act: _Activation, pads) -> _Activation:
        top, left, bottom, right = pads
        shape = [act.shape[0], act.shape[1] + top + bottom, act.shape[2] + left + right, act.shape[3]]
        out = self.w.tensor(self._name("padded"), shape, INT8, act.scale, act.zero_point)
        paddings = self.w.const(self._name("paddings"), [[0, 0], [top, bottom], [left, right], [0, 0]])
        self.w.operator("PAD", [act.index, paddings], [out])
        return _Activation(out, shape, act.scale, act.zero_point, act.nchw)

    def gemm(self, node) -> None:
        act = self._activation_input(node.input[0])
        attrs = _attrs(node)
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
            raise _NotQdq("Gemm with alpha, beta or transA")
        weights, w_scale = self._weight(node.input[1])
        if not attrs.get("transB", 0):
            weights = weights.T
        units = weights.shape[0]
        quantize, relu = self._output_quantize(node.output[0])
        weight = self.w.const(self._name("weights"), np.ascontiguousarray(weights), INT8,
                              scale=w_scale, zero_point=np.zeros(np.asarray(w_scale).size))
        bias = -1
        if len(node.input) > 2 and node.input[2]:
            bias_data, bias_scale = self._weight(node.input[2])
            bias = self.w.const(self._name("bias"), bias_data.astype(np.int32), INT32, scale=bias_scale,
                                zero_point=np.zeros(np.asarray(bias_scale).size))
        out = self._new_activation(quantize, [act.shape[0], units], nchw=False)
        self.w.operator("FULLY_CONNECTED", [act.index, weight, bias], [out.index],
                        ("FullyConnectedOptions", {"FusedActivationFunction": 1 if relu else 0}))
        self._skip_chain(node, quantize)

    def _same_quantization_op(self, node):
        act = self._activation_input(node.input[0])
        quantize = self._single_consumer(node.output[0], "QuantizeLinear")
        scale, zero, _ = self._quantization(quantize)
        return act, quantize, float(scale), int(zero)

    def max_pool(self, node) -> None:
        act, quantize, scale, zero = self._same_quantization_op(node)
        if (scale, zero) != (act.scale, act.zero_point):
            raise _NotQdq("MaxPool that requantizes")
        attrs = _attrs(node)
        kh, kw = attrs["kernel_shape"]
        strides = list(attrs.get("strides", [1, 1]))
        if any(attrs.get("pads", [0, 0, 0, 0])) or attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise _NotQdq("MaxPool with padding, ceil mode or dilation")
        _, height, width, channels = act.shape
        shape = [1, (height - kh) // strides[0] + 1, (width - kw) // strides[1] + 1, channels]
        out = self._new_activation(quantize, shape, nchw=True)
        self.w.operator("MAX_POOL_2D", [act.index], [out.index], ("Pool2DOptions", {
            "Padding": 1, "StrideH": strides[0], "StrideW": strides[1], "FilterHeight": kh, "FilterWidth": kw}))
        self._skip_chain(node, quantize)

    def global_average_pool(self, node) -> None:
        act, quantize, _, _ = self._same_quantization_op(node)
        out = self._new_activation(quantize, [1, 1, 1, act.shape[3]], nchw=True)
        self.w.operator("MEAN", [act.index, self.w.const(self._name("axes"), [1, 2])], [out.index],
                        ("ReducerOptions", {"KeepDims": True}))
        self._skip_chain(node, quantize)

    def flatten(self, node) -> None:
        act, quantize, scale, zero = self._same_quantization_op(node)
        if (scale, zero) != (act.scale, act.zero_point) or _attrs(node).get("axis", 1) != 1:
            raise _NotQdq("Flatten that requantizes")
        source = act
        if act.nchw and len(act.shape) == 4 and (act.shape[1], act.shape[2]) != (1, 1):
            nchw = [act.shape[0], act.shape[3], act.shape[1], act.shape[2]]
            index = self.w.tensor(self._name("nchw"), nchw, INT8, act.scale, act.zero_point)
            self.w.operator("TRANSPOSE", [act.index, self.w.const(self._name("perm"), [0, 3, 1, 2])], [index])
            source = _Activation(index, nchw, act.scale, act.zero_point, False)
        flat = [act.shape[0], int(np.prod(act.shape[1:]))]
        out = self._new_activation(quantize, flat, nchw=False)
        self.w.operator("RESHAPE", [source.index, self.w.const(self._name("shape"), flat)], [out.index])
        self._skip_chain(node, quantize)

    def _skip_chain(self, node, quantize) -> None:
        """Mark the nodes from ``node`` to its QuantizeLinear as converted."""
        current = node
        while current is not quantize:
            self.done.add(id(current))
            current = self._single_consumer(current.output[0])
        self.done.add(id(quantize))

    def convert(self) -> bytes:
        self.outputs: List[int] = []
        self.input_index = None
        handlers = {"Conv": self.conv, "Gemm": self.gemm, "MaxPool": self.max_pool,
                    "GlobalAveragePool": self.global_average_pool, "Flatten": self.flatten,
                    "DequantizeLinear": self.dequantize}
        graph_inputs = [v for v in self.graph.input if v.name not in self.constants]
        if len(graph_inputs) != 1 or len(self.graph.output) != 1:
            raise _NotQdq("one input and one output")
        for node in self.graph.node:
            if id(node) in self.done or node.op_type == "Constant":
                continue
            if node.op_type == "QuantizeLinear":
                self.quantize_input(node)
            elif node.op_type in handlers:
                handlers[node.op_type](node)
            else:
                raise _NotQdq(f"operator {node.op_type}")
        if self.input_index is None or len(self.outputs) != 1:
            raise _NotQdq("no quantized input or output")
        return self.w.finish([self.input_index], self.outputs)


def to_tflite(onnx_model) -> Optional[bytes]:
    """The integer TFLite graph of a QDQ int8 ONNX model, or None when it is not one we convert."""
    if not any(node.op_type == "QuantizeLinear" for node in onnx_model.graph.node):
        return None
    try:
        return _Converter(onnx_model).convert()
    except (_NotQdq, KeyError, ValueError, IndexError):
        return None


def file_as_tflite(path) -> Optional[bytes]:
    """``to_tflite`` of an .onnx file; None also for a file onnx cannot read (the Relax path then
    reports it)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception:  # noqa: BLE001 - DecodeError and friends: not ours to diagnose here
        return None
    return to_tflite(model)
