"""Lower a fully-int8 TFLite model straight to integer kernels, bit-exact with tflite-micro.

TVM's TFLite frontend imports int8 operators as dequantize -> float op -> quantize, which rounds
differently from tflite-micro (fixed-point requantization) and is slow on microcontrollers. For a
model whose activations are all int8 and whose operators are all listed in ``_CONVERTERS``, this
module reads the flatbuffer itself, computes every quantization parameter at compile time exactly
as tflite-micro's Prepare functions do (``fixed_point.py``), states each operator as an integer
kernel (TVMScript loop nests over the C micro-kernels in ``qnn_tvmscript.py``, TE in ``qnn_te.py``,
their requantization in ``qnn_requant.py``; ``qnn_choices.py`` picks which), schedules it
(``qnn_schedule.py``) and prints it with the same TIR -> plain C path as every other kernel
(``_tvm_c_kernels.py``). RESHAPE is an alias, as in the
Relax path. Any other model returns ``None`` and takes the Relax path (``lowering.py``).
See docs/int8-kernels.md.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from . import fixed_point, ir, qnn_choices
from .errors import CompileError
from .frontend import tflite_tensor_name

_INT8 = 9  # tflite TensorType.INT8
_INT32 = 2


@dataclasses.dataclass
class _TensorInfo:
    index: int
    name: str
    shape: Tuple[int, ...]
    type: int
    scales: np.ndarray
    zero_points: np.ndarray
    data: Optional[np.ndarray]  # constants only
    variable: bool = False  # a state that persists across invocations (SVDF's activation state)

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if len(self.zero_points) else 0


@dataclasses.dataclass
class KernelSpec:
    """One operator, lowered: a PrimFunc and the tensors it reads (activations, then constants)."""

    op_name: str
    func: object  # tirx.PrimFunc, scheduled
    reads: List[object]  # _TensorInfo of activations, or np.ndarray constants
    output: _TensorInfo
    # Convolutions with dilation 1 only (patching.py): the vertical window geometry, and the same
    # kernel rebuilt over a band of rows, ``band_kernel(input_rows, output_rows, pad_top) -> func``.
    rows: Optional["RowGeometry"] = None
    band_kernel: Optional[Callable] = None
    # The schedule's table entry (qnn_choices.py): kernel kind, what determines its code, its knobs.
    kind: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    knobs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RowGeometry:
    """How a convolution maps output rows to input rows: ``y * stride - pad_top + ky``, ky < kernel."""

    kernel: int
    stride: int
    pad_top: int


class _Graph:
    def __init__(self, model, subgraph, chooser: Optional[qnn_choices.Chooser] = None):
        self.model = model
        self.subgraph = subgraph
        self.chooser = chooser  # tuned knobs by kernel signature (tvmc compile --tuning-records)

    def choose(self, kind: str, params: dict) -> dict:
        return qnn_choices.choose(kind, params, self.chooser)

    def tensor(self, index: int) -> _TensorInfo:
        tensor = self.subgraph.Tensors(index)
        quant = tensor.Quantization()
        scales = quant.ScaleAsNumpy() if quant is not None and quant.ScaleLength() else np.zeros(0, np.float32)
        zeros = quant.ZeroPointAsNumpy() if quant is not None and quant.ZeroPointLength() else np.zeros(0, np.int64)
        buffer = self.model.Buffers(tensor.Buffer())
        data = None
        if buffer is not None and buffer.DataLength():
            dtype = {_INT8: np.int8, _INT32: np.int32, 7: np.int16, 0: np.float32}.get(tensor.Type(), np.uint8)
            data = buffer.DataAsNumpy().view(dtype).reshape(tuple(int(d) for d in tensor.ShapeAsNumpy()))
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        return _TensorInfo(index, tflite_tensor_name(self.subgraph, index), shape, tensor.Type(),
                           np.asarray(scales, np.float32), np.asarray(zeros, np.int64), data,
                           bool(tensor.IsVariable()))


def _activation_range(activation: int, output: _TensorInfo) -> Tuple[int, int]:
    """tflite CalculateActivationRangeQuantized for int8 (RELU, RELU6, RELU_N1_TO_1 or none)."""
    def quantize(value: float) -> int:
        ratio = float(np.float32(value) / np.float32(output.scale))
        return output.zero_point + (int(np.floor(abs(ratio) + 0.5)) * (1 if ratio >= 0 else -1))

    low, high = -128, 127
    if activation == 1:
        return max(low, quantize(0.0)), high
    if activation == 3:
        return max(low, quantize(0.0)), min(high, quantize(6.0))
    if activation == 2:
        return max(low, quantize(-1.0)), min(high, quantize(1.0))
    if activation == 0:
        return low, high
    raise _Unsupported(f"fused activation {activation}")


def _padding(kind: int, stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    if kind == 1:  # VALID
        return 0
    effective = (filter_size - 1) * dilation + 1
    return max(((out_size - 1) * stride + effective - in_size) // 2, 0)


class _Unsupported(Exception):
    """This model is not for the integer path (it then takes the Relax path)."""


def _options(op, cls):
    table = op.BuiltinOptions()
    options = cls()
    if table is not None:
        options.Init(table.Bytes, table.Pos)
    return options


def _channel_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float, channels: int):
    """PopulateConvolutionQuantizationParams: per-channel effective scales in double precision."""
    scales = filter_scales if len(filter_scales) > 1 else np.repeat(filter_scales, channels)
    pairs = [fixed_point.quantize_multiplier(float(input_scale) * float(s) / float(output_scale)) for s in scales]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _folded_bias(bias: Optional[np.ndarray], weights: np.ndarray, channel_axis: int, input_offset: int) -> np.ndarray:
    """bias + input_offset * sum(weights) per output channel, so the inner loop multiplies raw int8."""
    moved = np.moveaxis(weights.astype(np.int64), channel_axis, 0).reshape(weights.shape[channel_axis], -1)
    folded = moved.sum(axis=1) * input_offset
    if bias is not None:
        folded = folded + bias.astype(np.int64)
    if folded.min(initial=0) < fixed_point.INT32_MIN or folded.max(initial=0) > fixed_point.INT32_MAX:
        raise _Unsupported("folded bias overflows int32")
    return folded.astype(np.int32)


def _check_int8(*tensors: _TensorInfo) -> None:
    for tensor in tensors:
        if tensor.type != _INT8 or not len(tensor.scales):
            raise _Unsupported(f"tensor '{tensor.name}' is not quantized int8")


def _conv(graph: _Graph, op, depthwise: bool, band: Optional[Tuple[int, int, int]] = None) -> KernelSpec:
    """``band = (input_rows, output_rows, pad_top)``: the same operator over a band of full-width
    rows (patch-based inference, patching.py); the kernel's arguments are the same constants."""
    import tflite

    from .qnn_requant import Requant

    inputs = [int(i) for i in op.InputsAsNumpy()]
    data, weight = graph.tensor(inputs[0]), graph.tensor(inputs[1])
    bias = graph.tensor(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
    output = graph.tensor(int(op.OutputsAsNumpy()[0]))
    _check_int8(data, weight, output)
    if weight.data is None or (bias is not None and (bias.data is None or bias.type != _INT32)):
        raise _Unsupported("non-constant weights or a non-int32 bias")
    if np.any(weight.zero_points != 0):
        raise _Unsupported("asymmetric weights")
    options = _options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
    strides = (options.StrideH(), options.StrideW())
    dilations = (options.DilationHFactor(), options.DilationWFactor())
    kh, kw = weight.shape[1], weight.shape[2]
    padding = (_padding(options.Padding(), strides[0], dilations[0], data.shape[1], kh, output.shape[1]),
               _padding(options.Padding(), strides[1], dilations[1], data.shape[2], kw, output.shape[2]))
    geometry = RowGeometry(kh, strides[0], padding[0]) if dilations == (1, 1) else None
    if band is not None:
        data = dataclasses.replace(data, shape=(1, band[0]) + tuple(data.shape[2:]))
        output = dataclasses.replace(output, shape=(1, band[1]) + tuple(output.shape[2:]))
        padding = (band[2], padding[1])
    channels = output.shape[3]
    multipliers, shifts = _channel_multipliers(data.scale, weight.scales, output.scale, channels)
    requant = Requant(multipliers, shifts, output.zero_point,
                      *_activation_range(options.FusedActivationFunction(), output))
    bias_data = bias.data if bias is not None else None
    raw_bias = bias_data.astype(np.int32) if bias_data is not None else np.zeros(channels, np.int32)
    multiplier = (options.DepthMultiplier() or channels // data.shape[3]) if depthwise else 1
    weight_data = weight.data
    if depthwise and data.shape[3] == 1:
        # One input channel: a depthwise convolution is an ordinary one with the channel
        # multiplier as output channels (weights [1,KH,KW,M] -> OHWI [M,KH,KW,1]), whose window
        # rows are contiguous and take the SIMD dot products (micro_speech).
        weight_data = np.ascontiguousarray(np.transpose(weight.data, (3, 1, 2, 0)))
        depthwise = False
    kind = "depthwise_conv2d" if depthwise else "conv2d"
    if dilations != (1, 1):
        kind += "_dilated"
    layer = qnn_choices.ConvLayer(data.shape, weight_data.shape, output.shape, strides, dilations, padding,
                                  multiplier, data.zero_point, requant)
    params = layer.params
    knobs = graph.choose(kind, params)
    build, folded_bias = qnn_choices.conv_kernel(kind, knobs)
    func, req = build(layer)
    if folded_bias:
        folded = _folded_bias(bias_data, weight_data, 3 if depthwise else 0, -data.zero_point)
    else:
        folded = raw_bias
    name = "depthwise_conv2d" if depthwise else "conv2d"

    def band_kernel(rows_in: int, rows_out: int, pad_top: int):
        return _conv(graph, op, depthwise, (rows_in, rows_out, pad_top)).func

    return KernelSpec(name, func, [data, weight_data, folded] + req, output, rows=geometry,
                      band_kernel=band_kernel if geometry is not None else None, kind=kind, params=params,
                      knobs=knobs)


def _fully_connected(graph: _Graph, op) -> KernelSpec:
    import tflite

    from . import qnn_tvmscript
    from .qnn_requant import Requant

    inputs = [int(i) for i in op.InputsAsNumpy()]
    data, weight = graph.tensor(inputs[0]), graph.tensor(inputs[1])
    bias = graph.tensor(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
    output = graph.tensor(int(op.OutputsAsNumpy()[0]))
    _check_int8(data, weight, output)
    options = _options(op, tflite.FullyConnectedOptions)
    if weight.data is None or options.WeightsFormat() != 0 or np.any(weight.zero_points != 0):
        raise _Unsupported("FULLY_CONNECTED needs constant, symmetric, unshuffled weights")
    if bias is not None and (bias.data is None or bias.type != _INT32):
        raise _Unsupported("FULLY_CONNECTED with a non-int32 bias")
    units, depth = weight.shape
    batches = int(np.prod(data.shape)) // depth
    if len(weight.scales) > 1:
        multipliers, shifts = _channel_multipliers(data.scale, weight.scales, output.scale, units)
    else:
        # GetQuantizedConvolutionMultipler: the scale product is taken in float32.
        real = float(np.float32(data.scale) * np.float32(weight.scale)) / float(output.scale)
        multiplier, shift = fixed_point.quantize_multiplier(real)
        multipliers, shifts = [multiplier], [shift]
    requant = Requant(multipliers, shifts, output.zero_point,
                      *_activation_range(options.FusedActivationFunction(), output))
    folded = _folded_bias(bias.data if bias is not None else None, weight.data, 0, -data.zero_point)
    weight_data = weight.data
    params = {"batches": batches, "depth": depth, "units": units, "requant": requant.form}
    knobs = graph.choose("fully_connected", params)
    if knobs["interleaved"]:
        func, req = qnn_tvmscript.fully_connected_interleaved(batches, depth, units, requant)
        weight_data = qnn_tvmscript.interleave_by_four(weight.data)
    else:
        func, req = qnn_tvmscript.fully_connected_dot(batches, depth, units, requant)
    return KernelSpec("fully_connected", func, [data, weight_data, folded] + req, output,
                      kind="fully_connected", params=params, knobs=knobs)


def _add(graph: _Graph, op) -> KernelSpec:
    import tflite

    from . import qnn_te

    a, b = (graph.tensor(int(i)) for i in op.InputsAsNumpy())
    output = graph.tensor(int(op.OutputsAsNumpy()[0]))
    _check_int8(a, b, output)
    if a.data is not None or b.data is not None:
        raise _Unsupported("ADD of a constant")
    options = _options(op, tflite.AddOptions)
    left_shift = 20
    twice_max = 2 * max(float(a.scale), float(b.scale))
    pairs = [fixed_point.quantize_multiplier(float(a.scale) / twice_max),
             fixed_point.quantize_multiplier(float(b.scale) / twice_max),
             fixed_point.quantize_multiplier(twice_max / ((1 << left_shift) * float(output.scale)))]
    if any(shift > 0 for _, shift in pairs):
        raise _Unsupported("ADD rescale above one")
    act_min, act_max = _activation_range(options.FusedActivationFunction(), output)
    tables = [np.array([fixed_point.multiply_by_quantized_multiplier((v - zero_point) * (1 << left_shift), m, shift)
                        for v in range(-128, 128)], np.int32)
              for zero_point, (m, shift) in ((a.zero_point, pairs[0]), (b.zero_point, pairs[1]))]
    func, _ = qnn_te.add(a.shape, b.shape, output.shape, pairs[2][0], pairs[2][1], output.zero_point, act_min,
                         act_max)
    return _with_knobs(graph, KernelSpec("add", func, [a, b] + tables, output),
                       {"shapes": [list(a.shape), list(b.shape), list(output.shape)]})


def _pool(graph: _Graph, op, kind: str) -> KernelSpec:
    import tflite

    from . import qnn_te

    data = graph.tensor(int(op.InputsAsNumpy()[0]))
    output = graph.tensor(int(op.OutputsAsNumpy()[0]))
    _check_int8(data, output)
    if (data.scale, data.zero_point) != (output.scale, output.zero_point):
        raise _Unsupported("pooling that requantizes")
    options = _options(op, tflite.Pool2DOptions)
    filter_size = (options.FilterHeight(), options.FilterWidth())
    strides = (options.StrideH(), options.StrideW())
    padding = (_padding(options.Padding(), strides[0], 1, data.shape[1], filter_size[0], output.shape[1]),
               _padding(options.Padding(), strides[1], 1, data.shape[2], filter_size[1], output.shape[2]))
    act_min, act_max = _activation_range(options.FusedActivationFunction(), output)
    func, req = qnn_te.pool2d(kind, data.shape, output.shape, filter_size, strides, padding, act_min, act_max)
    return _with_knobs(graph, KernelSpec(f"{kind}_pool2d", func, [data], output),
                       {"input_shape": list(data.shape), "output_shape": list(output.shape),
                        "filter": list(filter_size), "strides": list(strides), "padding": list(padding)})


def _softmax(graph: _Graph, op) -> KernelSpec:
    import tflite

    from . import qnn_te

    data = graph.tensor(int(op.InputsAsNumpy()[0]))
    output = graph.tensor(int(op.OutputsAsNumpy()[0]))
    _check_int8(data, output)
    if output.zero_point != -128 or abs(output.scale - 1.0 / 256) > 1e-8:
        raise _Unsupported("int8 SOFTMAX with an output other than scale 1/256, zero point -128")
    beta = _options(op, tflite.SoftmaxOptions).Beta()
    table = np.array(fixed_point.softmax_exp_table(float(beta), float(data.scale)), np.int32)
    depth = data.shape[-1]
    rows = int(np.prod(data.shape)) // depth
    func, _ = qnn_te.softmax(rows, depth, fixed_point.SOFTMAX_ACCUMULATION_INTEGER_BITS)
    return _with_knobs(graph, KernelSpec("softmax", func, [data, table], output), {"rows": rows, "depth": depth})


def _with_knobs(graph: _Graph, spec: KernelSpec, params: dict) -> KernelSpec:
    """A kernel whose only knobs act on its C (qnn_choices.OTHER_KNOBS)."""
    return dataclasses.replace(spec, kind=spec.op_name, params=params, knobs=graph.choose(spec.op_name, params))


_CONVERTERS: Dict[str, Callable] = {
    "CONV_2D": lambda g, op: _conv(g, op, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda g, op: _conv(g, op, depthwise=True),
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "AVERAGE_POOL_2D": lambda g, op: _pool(g, op, "average"),
    "MAX_POOL_2D": lambda g, op: _pool(g, op, "max"),
    "SOFTMAX": _softmax,
}
_ALIASES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def _register_more_operators() -> None:
    from .qnn_ops import CONVERTERS

    _CONVERTERS.update(CONVERTERS)


_register_more_operators()
_FLOAT32 = 0
_INT16 = 7
_DTYPES = {_INT8: "int8", _INT16: "int16", _FLOAT32: "float32"}


def is_int8_model(model, subgraph, op_names: Optional[List[str]] = None) -> bool:
    """int8 inputs and outputs, or float32 ones that only a QUANTIZE reads / a DEQUANTIZE writes
    (a converter's float interface around an int8 network)."""
    inputs = [int(i) for i in subgraph.InputsAsNumpy()]
    outputs = [int(i) for i in subgraph.OutputsAsNumpy()]
    if not inputs or not outputs:
        return False
    boundary = {}
    for index, name in enumerate(op_names or []):
        op = subgraph.Operators(index)
        for tensor in op.InputsAsNumpy():
            boundary.setdefault(("read", int(tensor)), set()).add(name)
        for tensor in op.OutputsAsNumpy():
            boundary.setdefault(("write", int(tensor)), set()).add(name)

    def ok(index: int, role: str, op_name: str) -> bool:
        kind = subgraph.Tensors(index).Type()
        return kind == _INT8 or (kind == _FLOAT32 and boundary.get((role, index)) == {op_name})

    return all(ok(i, "read", "QUANTIZE") for i in inputs) and all(ok(i, "write", "DEQUANTIZE") for i in outputs)


def lower_tflite_int8(model, subgraph, op_names: List[str], input_names, output_names,
                      prefix: str, chooser: Optional[qnn_choices.Chooser] = None) -> Optional["_Builder"]:
    """The integer kernels of an int8 model (a _Builder: tensors, calls, PrimFuncs), or None when
    the model is not for this path. ``chooser`` gives tuned knobs by kernel signature."""
    if not is_int8_model(model, subgraph, op_names):
        return None
    if any(name not in _CONVERTERS and name not in _ALIASES for name in op_names):
        return None
    graph = _Graph(model, subgraph, chooser)
    builder = _Builder(graph, input_names, output_names, prefix)
    try:
        for index, name in enumerate(op_names):
            op = subgraph.Operators(index)
            if name in _ALIASES:
                builder.alias(index, op)
                continue
            specs = _CONVERTERS[name](graph, op)
            for spec in specs if isinstance(specs, list) else [specs]:
                builder.kernel(index, spec)
    except _Unsupported:
        return None
    return builder


class _Builder(ir.PartsBuilder):
    """Storage tensors and kernel calls of the integer path (the LoweredModel's parts)."""

    def __init__(self, graph: _Graph, input_names, output_names, prefix: str):
        super().__init__(input_names, output_names)
        self.graph = graph
        self.prefix = prefix
        self.funcs: Dict[str, object] = {}
        self.specs: List[KernelSpec] = []  # one per call, in call order (patching.py reads them)
        self.kernel_specs: Dict[str, KernelSpec] = {}  # symbol -> its spec (kind, params, knobs: the tuner's tasks)
        self._storage: Dict[int, str] = {}  # TFLite tensor index -> storage tensor name
        self._outputs = {int(i): name for i, name in zip(graph.subgraph.OutputsAsNumpy(), output_names)}
        for index, name in zip(graph.subgraph.InputsAsNumpy(), input_names):
            info = graph.tensor(int(index))
            self._storage[int(index)] = name
            self.tensors[name] = ir.Tensor(name, info.shape, _DTYPES[info.type], ir.INPUT)

    def _read(self, item) -> str:
        if isinstance(item, _TensorInfo):
            if item.index not in self._storage and item.variable and item.data is None:
                name = self._fresh("state")
                self.tensors[name] = ir.Tensor(name, item.shape, _DTYPES[item.type], ir.STATE)
                self._storage[item.index] = name
            if item.index not in self._storage:
                if item.data is None:
                    raise CompileError(f"internal error: tensor '{item.name}' is read before it is written")
                self._storage[item.index] = self._constant(item.data)
            return self._storage[item.index]
        return self._constant(np.ascontiguousarray(item))

    def _constant(self, data: np.ndarray) -> str:
        name = self._fresh("constant")
        self.tensors[name] = ir.Tensor(name, tuple(int(d) for d in data.shape), str(data.dtype), ir.CONSTANT, data)
        return name

    def _write(self, info: _TensorInfo) -> str:
        if info.index in self._outputs:
            name, kind = self._outputs[info.index], ir.OUTPUT
        else:
            name, kind = self._fresh("intermediate"), ir.INTERMEDIATE
        self.tensors[name] = ir.Tensor(name, info.shape, _DTYPES[info.type], kind)
        self._storage[info.index] = name
        return name

    def kernel(self, op_index: int, spec: KernelSpec) -> None:
        symbol = f"{self.prefix}q{op_index}_{spec.op_name}"
        args = [self._read(item) for item in spec.reads]
        out = self._write(spec.output)
        self.funcs[symbol] = spec.func
        self.specs.append(spec)
        self.kernel_specs[symbol] = spec
        states = [a for a in args if self.tensors[a].kind == ir.STATE]  # read, then updated in place
        self.calls.append(ir.KernelCall(symbol, args + [out], [out] + states))

    def alias(self, op_index: int, op) -> None:
        from . import qnn_te

        source = self.graph.tensor(int(op.InputsAsNumpy()[0]))
        target = self.graph.tensor(int(op.OutputsAsNumpy()[0]))
        if source.index in self._storage and target.index not in self._outputs:
            self._storage[target.index] = self._storage[source.index]
            return
        # A model output (or a constant) behind a reshape gets its own copy.
        count = int(np.prod(target.shape))
        func, _ = qnn_te.reshape_copy(count)
        self.kernel(op_index, KernelSpec("copy", func, [source], target))


def lower_layer(model, subgraph, op_names: List[str], op_index: int, knobs: dict) -> KernelSpec:
    """One operator's kernel with the given knobs (the tuner's candidates; invalid knobs fall back
    to the defaults, as in a compile)."""
    forced = _Graph(model, subgraph)
    forced.choose = lambda kind, params: qnn_choices.choose(kind, params, lambda signature: knobs)
    return _CONVERTERS[op_names[op_index]](forced, subgraph.Operators(op_index))
