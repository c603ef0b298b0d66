"""The int8 TFLite operators beyond the convolutional core, bit-exact with tflite-micro's reference
kernels: activations (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU), requantization (QUANTIZE,
DEQUANTIZE), MEAN, and data movement (PAD, PADV2, CONCATENATION, STRIDED_SLICE, SLICE, SPLIT,
SPLIT_V, TRANSPOSE).

An elementwise int8 operator's output depends on one int8 value, so it is a 256-entry table
computed here at compile time by a Python emulation of tflite-micro's fixed-point arithmetic
(gemmlowp's logistic/tanh, the int16 hard-swish, MultiplyByQuantizedMultiplier); at run time one
load per element (``lookup``). The tests compare every one of the 256 inputs with tflite-micro.
Data movement copies raw bytes as tflite-micro does. Each converter takes the ``qnn._Graph`` and the
operator and returns one ``qnn.KernelSpec`` (a list for SPLIT); ``qnn._CONVERTERS`` registers them.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from tvm import te, tirx

from . import fixed_point as fp

I32 = "int32"
_INT8, _INT16, _INT32, _FLOAT32 = 9, 7, 2, 0
_INT8_RANGE = (-128, 127)


def _qnn():
    from . import qnn  # qnn registers this module's converters: import it late

    return qnn


def _i32(value: int):
    return tirx.const(value, I32)


def _clamp(value: int, low: int = -128, high: int = 127) -> int:
    return max(low, min(high, value))


# ---------------------------------------------------------------------------------- fixed point
# gemmlowp's FixedPoint<int32, integer_bits> operations on raw Python ints (fixed_point.py has the
# primitives); the functions below follow gemmlowp's fixedpoint.h step by step.

def _mul(a: int, b: int) -> int:
    return fp.saturating_rounding_doubling_high_mul(a, b)


def _rounding_half_sum(a: int, b: int) -> int:
    total = a + b
    sign = 1 if total >= 0 else -1
    return _truncdiv(total + sign, 2)


def _truncdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _newton_reciprocal_f2(half_denominator: int) -> int:
    """x ~ 1 / half_denominator in Q2.29 after gemmlowp's three Newton-Raphson steps."""
    x = fp._wrap32(1515870810 + _mul(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = fp._wrap32((1 << 29) - _mul(half_denominator, x))
        x = fp._wrap32(x + fp.saturating_rounding_multiply_by_pot(_mul(x, one_minus), 2))
    return x


def _logistic_q0(a: int, integer_bits: int) -> int:
    """gemmlowp::logistic of a raw Q(integer_bits) value: a raw Q0.31 result."""
    if a == 0:
        return 1 << 30
    magnitude = a if a > 0 else fp._wrap32(-a)
    exp = fp.exp_on_negative_values(fp._wrap32(-magnitude), integer_bits)
    half_denominator = _rounding_half_sum(exp, fp.INT32_MAX)
    positive = fp.saturating_rounding_multiply_by_pot(_newton_reciprocal_f2(half_denominator), 1)
    return positive if a > 0 else fp._wrap32(fp.INT32_MAX - positive)


def _tanh_q0(a: int, integer_bits: int) -> int:
    """gemmlowp::tanh of a raw Q(integer_bits) value: a raw Q0.31 result."""
    if a == 0:
        return 0
    negative_magnitude = a if a < 0 else fp._wrap32(-a)
    # ExactMulByPot<1>: the same raw value read with one more integer bit.
    exp = fp.exp_on_negative_values(negative_magnitude, integer_bits + 1)
    half_denominator = _rounding_half_sum(exp, fp.INT32_MAX)
    x = _newton_reciprocal_f2(half_denominator)
    t = fp.saturating_rounding_multiply_by_pot(fp._wrap32(x - (1 << 29)), 2)
    return fp._wrap32(-t) if a < 0 else t


def _input_rescaling(scale: float, integer_bits: int = 4) -> Tuple[int, int, int]:
    """tflite-micro's logistic/tanh Prepare: (multiplier, left shift, input range radius)."""
    import math

    real = float(scale) * float(1 << (31 - integer_bits))
    fraction, left_shift = math.frexp(real)
    multiplier = fp._round_half_away(fraction * (1 << 31))
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift)) \
        if left_shift >= 0 else math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) * (1 << -left_shift))
    return multiplier, left_shift, radius


def _saturating_table(input_scale: float, input_zero_point: int, q0_of_q4, output_shift: int,
                      output_offset: int) -> np.ndarray:
    """The 256-entry table of an S-shaped function (logistic, tanh) as tflite-micro computes it:
    saturated beyond its input radius, else the Q0.31 value of the Q4.27 input, rescaled."""
    multiplier, left_shift, radius = _input_rescaling(input_scale)
    table = []
    for value in range(-128, 128):
        x = value - input_zero_point
        if x <= -radius:
            table.append(-128)
        elif x >= radius:
            table.append(127)
        else:
            q4 = fp.multiply_by_quantized_multiplier(x, multiplier, left_shift)
            table.append(_clamp(fp.rounding_divide_by_pot(q0_of_q4(q4, 4), output_shift) + output_offset))
    return np.array(table, np.int8)


def logistic_table(input_scale: float, input_zero_point: int) -> np.ndarray:
    return _saturating_table(input_scale, input_zero_point, _logistic_q0, 23, -128)


def tanh_table(input_scale: float, input_zero_point: int) -> np.ndarray:
    return _saturating_table(input_scale, input_zero_point, _tanh_q0, 24, 0)


def _wrap16(value: int) -> int:
    return (value + (1 << 15)) % (1 << 16) - (1 << 15)


def _srdhm16(a: int, b: int) -> int:
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    product = a * b
    nudge = (1 << 14) if product >= 0 else 1 - (1 << 14)
    return _wrap16(_truncdiv(product + nudge, 1 << 15))


def _saturating_shift_left16(x: int, exponent: int) -> int:
    """gemmlowp's int16 ShiftLeft, which saturates."""
    return max(-(1 << 15), min((1 << 15) - 1, x * (1 << exponent)))


def _rdbpot16(x: int, exponent: int) -> int:
    return _wrap16(fp.rounding_divide_by_pot(x, exponent))


def _down_scale_to_int16(multiplier: int) -> int:
    """tflite DownScaleInt32ToInt16Multiplier."""
    if multiplier >= fp.INT32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (multiplier + (1 << 15)) >> 16


def hard_swish_table(input_scale: float, input_zero_point: int, output_scale: float,
                     output_zero_point: int) -> np.ndarray:
    """tflite's int8 HardSwish (int16 fixed point, parameters from float32 scales)."""
    f32 = np.float32
    hires_input_scale = f32(1.0 / 128.0) * f32(input_scale)
    output_multiplier, output_exponent = fp.quantize_multiplier(float(hires_input_scale / f32(output_scale)))
    reluish_multiplier, reluish_exponent = fp.quantize_multiplier(float(hires_input_scale / f32(3.0 / 32768.0)))
    if output_exponent > 0:
        raise _qnn()._Unsupported("HARD_SWISH with an output multiplier above one")
    output_m16 = _down_scale_to_int16(output_multiplier)
    reluish_m16 = _down_scale_to_int16(reluish_multiplier)
    table = []
    for value in range(-128, 128):
        hires = _wrap16((value - input_zero_point) * 128)
        preshift_output = _srdhm16(hires, output_m16)
        reluish = hires
        if reluish_exponent > 0:
            reluish = _saturating_shift_left16(reluish, reluish_exponent - 1)
        reluish = _srdhm16(reluish, reluish_m16)
        if reluish_exponent > 0:
            reluish = _saturating_shift_left16(reluish, 1)
        if reluish_exponent < 0:
            reluish = _rdbpot16(reluish, -reluish_exponent)
        reluish = (reluish + (1 << 15)) >> 1
        overflow = reluish == preshift_output == -(1 << 15)
        preshift = (1 << 15) - 1 if overflow else _wrap16(_truncdiv(reluish * preshift_output, 1 << 15))
        out = _rdbpot16(preshift, -output_exponent) + output_zero_point
        table.append(_clamp(out))
    return np.array(table, np.int8)


def rescale_table(input_zero_point: int, output_zero_point: int, multiplier: int, shift: int,
                  negative_multiplier: Tuple[int, int] = None) -> np.ndarray:
    """zp_out + MultiplyByQuantizedMultiplier(x - zp_in), with another multiplier below zero when
    given (LEAKY_RELU), clamped to int8: tflite's Requantize and QuantizeLeakyRelu."""
    table = []
    for value in range(-128, 128):
        x = value - input_zero_point
        m, s = negative_multiplier if (negative_multiplier is not None and x < 0) else (multiplier, shift)
        table.append(_clamp(output_zero_point + fp.multiply_by_quantized_multiplier(x, m, s)))
    return np.array(table, np.int8)


# ---------------------------------------------------------------------------------- kernels

def lookup(count: int, table_dtype: str):
    """out[i] = table[in[i] + 128]: any elementwise function of one int8 value."""
    data = te.placeholder((count,), "int8", name="input")
    table = te.placeholder((256,), table_dtype, name="table")
    out = te.compute((count,), lambda i: table[data[i].astype(I32) + _i32(128)], name="output")
    return te.create_prim_func([data, table, out])


def dequantize_int8(count: int, scale: float, zero_point: int):
    """tflite's Dequantize: float(x - zero point) * scale in float32 (no table: 1 KiB of flash)."""
    data = te.placeholder((count,), "int8", name="input")
    out = te.compute((count,), lambda i: (data[i].astype(I32) - _i32(zero_point)).astype("float32")
                     * tirx.const(np.float32(scale), "float32"), name="output")
    return te.create_prim_func([data, out])


def quantize_float(count: int, scale: float, zero_point: int):
    """tflite AffineQuantize: round(x / scale) half away from zero (roundf), + zero point, clamped."""
    data = te.placeholder((count,), "float32", name="input")

    def value(i):
        # roundf in arithmetic, not a call: avr-libc's <math.h> makes roundf a macro for the double
        # round(), so the declaration TVM emits for an extern would conflict there. Clamped first so
        # the truncating cast is defined; x - trunc(x) is exact in float32, so this is roundf exactly.
        limit = tirx.const(1.0e9, "float32")
        scaled = tirx.max(tirx.min(data[i] / tirx.const(np.float32(scale), "float32"), limit), -limit)
        truncated = scaled.astype(I32)
        fraction = scaled - truncated.astype("float32")
        away = tirx.Select(fraction >= tirx.const(0.5, "float32"), _i32(1),
                           tirx.Select(fraction <= tirx.const(-0.5, "float32"), _i32(-1), _i32(0)))
        rounded = truncated + away + _i32(zero_point)
        return tirx.max(tirx.min(rounded, _i32(127)), _i32(-128)).astype("int8")

    out = te.compute((count,), value, name="output")
    return te.create_prim_func([data, out])


def gather_copy(inputs: Sequence[Tuple[Tuple[int, ...], str]], output_shape, source):
    """A copy whose output element comes from ``source(index) -> (input number, input index) or
    (None, fill value)``, chosen per axis range at compile time (transpose, slice, pad, concat)."""
    placeholders = [te.placeholder(tuple(shape), dtype, name=f"input{k}") for k, (shape, dtype) in enumerate(inputs)]
    out = te.compute(tuple(output_shape), lambda *index: source(placeholders, index), name="output")
    return te.create_prim_func(placeholders + [out])


def pad_kernel(shape, paddings, fill: int):
    output_shape = [d + before + after for d, (before, after) in zip(shape, paddings)]

    def source(inputs, index):
        data = inputs[0]
        clipped = [tirx.max(tirx.min(i - before, d - 1), 0) for i, d, (before, _) in zip(index, shape, paddings)]
        inside = [tirx.all(i >= before, i < before + d) for i, d, (before, after) in zip(index, shape, paddings)
                  if before or after]
        if not inside:
            return data[tuple(clipped)]
        return tirx.if_then_else(tirx.all(*inside), data[tuple(clipped)], tirx.const(fill, "int8"))

    return gather_copy([(tuple(shape), "int8")], output_shape, source)


def concatenation_kernel(shapes, axis: int):
    output_shape = list(shapes[0])
    output_shape[axis] = sum(s[axis] for s in shapes)
    starts = np.cumsum([0] + [s[axis] for s in shapes]).tolist()

    def source(inputs, index):
        i = index[axis]
        value = None
        for k in reversed(range(len(shapes))):
            moved = list(index)
            moved[axis] = tirx.max(tirx.min(i - starts[k], shapes[k][axis] - 1), 0)
            load = inputs[k][tuple(moved)]
            value = load if value is None else tirx.if_then_else(i < starts[k + 1], load, value)
        return value

    return gather_copy([(tuple(s), "int8") for s in shapes], output_shape, source)


def strided_kernel(shape, starts, strides, full_shape):
    """out = in[start + i * stride per axis], computed over ``full_shape`` (one entry per input
    axis); the output tensor's own shape (shrunk axes removed) has the same elements in order."""
    def source(inputs, index):
        return inputs[0][tuple(s + i * st for i, s, st in zip(index, starts, strides))]

    return gather_copy([(tuple(shape), "int8")], full_shape, source)


def transpose_kernel(shape, perm):
    output_shape = [shape[p] for p in perm]

    def source(inputs, index):
        source_index = [None] * len(shape)
        for out_axis, in_axis in enumerate(perm):
            source_index[in_axis] = index[out_axis]
        return inputs[0][tuple(source_index)]

    return gather_copy([(tuple(shape), "int8")], output_shape, source)


def _requantize(x, multiplier: int, shift: int):
    from .qnn_requant import multiply_by_quantized_multiplier

    return multiply_by_quantized_multiplier(x, _i32(multiplier), _i32(max(shift, 0)), _i32(max(-shift, 0)))


def prelu_kernel(shape, alpha_shape, input_offset: int, alpha_offset: int, output_offset: int,
                 positive: Tuple[int, int], negative: Tuple[int, int]):
    """tflite's BroadcastPrelu4DSlow for int8: alpha is a constant broadcast against the input."""
    data = te.placeholder(tuple(shape), "int8", name="input")
    alpha = te.placeholder(tuple(alpha_shape), "int8", name="alpha")
    offset = len(shape) - len(alpha_shape)

    def value(*index):
        x = data[index].astype(I32) + _i32(input_offset)
        a = alpha[tuple(0 if d == 1 else index[offset + k] for k, d in enumerate(alpha_shape))].astype(I32) \
            + _i32(alpha_offset)
        scaled = tirx.Select(x >= _i32(0), _requantize(x, *positive), _requantize(x * a, *negative))
        return tirx.max(tirx.min(scaled + _i32(output_offset), _i32(127)), _i32(-128)).astype("int8")

    out = te.compute(tuple(shape), value, name="output")
    return te.create_prim_func([data, alpha, out])


def mean_kernel(shape, axes: Sequence[int], input_zero_point: int, output_zero_point: int,
                multiplier: int, shift: int):
    """tflite's reference_integer_ops::Mean: sum of (x - zp_in) over the axes, requantized, then
    divided by the element count rounding half away from zero, + zp_out, clamped."""
    data = te.placeholder(tuple(shape), "int8", name="input")
    reduce_axes = [te.reduce_axis((0, shape[a]), name=f"r{a}") for a in axes]
    count = int(np.prod([shape[a] for a in axes]))
    kept = [a for a in range(len(shape)) if a not in axes]

    def total(*index):
        full = []
        kept_index = iter(index)
        for a in range(len(shape)):
            full.append(reduce_axes[axes.index(a)] if a in axes else next(kept_index))
        return te.sum(data[tuple(full)].astype(I32) - _i32(input_zero_point), axis=reduce_axes)

    sums = te.compute(tuple(shape[a] for a in kept), total, name="sum")

    def value(*index):
        acc = _requantize(sums[index], multiplier, shift)
        half = _i32(count // 2)
        divided = tirx.Select(acc > _i32(0), tirx.truncdiv(acc + half, _i32(count)),
                              tirx.truncdiv(acc - half, _i32(count)))
        return tirx.max(tirx.min(divided + _i32(output_zero_point), _i32(127)), _i32(-128)).astype("int8")

    out = te.compute(tuple(shape[a] for a in kept), value, name="output")
    return te.create_prim_func([data, out])


# ---------------------------------------------------------------------------------- converters

def _io(graph, op):
    inputs = [graph.tensor(int(i)) if i >= 0 else None for i in op.InputsAsNumpy()]
    outputs = [graph.tensor(int(i)) for i in op.OutputsAsNumpy()]
    return inputs, outputs


def _spec(name, func, reads, output):
    return _qnn().KernelSpec(name, func, reads, output)


def _count(tensor) -> int:
    return int(np.prod(tensor.shape)) if tensor.shape else 1


def _table_op(name: str, table_for):
    def convert(graph, op):
        (data, *_), (output,) = _io(graph, op)
        _qnn()._check_int8(data, output)
        table = table_for(graph, op, data, output)
        return _spec(name, lookup(_count(data), str(table.dtype)), [data, table], output)

    return convert


def _logistic(graph, op, data, output):
    if output.zero_point != -128 or abs(output.scale - 1.0 / 256) > 1e-9:
        raise _qnn()._Unsupported("int8 LOGISTIC with an output other than scale 1/256, zero point -128")
    return logistic_table(data.scale, data.zero_point)


def _tanh(graph, op, data, output):
    if output.zero_point != 0 or abs(output.scale - 1.0 / 128) > 1e-9:
        raise _qnn()._Unsupported("int8 TANH with an output other than scale 1/128, zero point 0")
    return tanh_table(data.scale, data.zero_point)


def _hard_swish(graph, op, data, output):
    return hard_swish_table(data.scale, data.zero_point, output.scale, output.zero_point)


def _leaky_relu(graph, op, data, output):
    import tflite

    alpha = float(np.float32(_qnn()._options(op, tflite.LeakyReluOptions).Alpha()))
    identity = fp.quantize_multiplier(float(data.scale) / float(output.scale))
    negative = fp.quantize_multiplier(float(data.scale) * alpha / float(output.scale))
    return rescale_table(data.zero_point, output.zero_point, *identity, negative_multiplier=negative)


def _quantize(graph, op):
    (data,), (output,) = _io(graph, op)
    if data.type == _FLOAT32 and output.type == _INT8:
        return _spec("quantize", quantize_float(_count(data), output.scale, output.zero_point), [data], output)
    _qnn()._check_int8(data, output)
    multiplier, shift = fp.quantize_multiplier(float(data.scale) / float(output.scale))
    table = rescale_table(data.zero_point, output.zero_point, multiplier, shift)
    return _spec("requantize", lookup(_count(data), "int8"), [data, table], output)


def _dequantize(graph, op):
    (data,), (output,) = _io(graph, op)
    if data.type != _INT8 or output.type != _FLOAT32:
        raise _qnn()._Unsupported("DEQUANTIZE other than int8 -> float32")
    return _spec("dequantize", dequantize_int8(_count(data), data.scale, data.zero_point), [data], output)


def _constant_ints(tensor) -> List[int]:
    if tensor is None or tensor.data is None:
        raise _qnn()._Unsupported("a non-constant shape operand")
    return [int(v) for v in np.asarray(tensor.data).view(np.int32).ravel()]


def _same_quantization(*tensors):
    first = tensors[0]
    for t in tensors[1:]:
        if (t.scale, t.zero_point) != (first.scale, first.zero_point):
            raise _qnn()._Unsupported("data movement between different quantizations")


def _pad(graph, op):
    inputs, (output,) = _io(graph, op)
    data, paddings = inputs[0], inputs[1]
    _qnn()._check_int8(data, output)
    pairs = np.array(_constant_ints(paddings)).reshape(-1, 2).tolist()
    fill = output.zero_point
    if len(inputs) > 2 and inputs[2] is not None:  # PADV2's constant value
        if inputs[2].data is None:
            raise _qnn()._Unsupported("PADV2 with a non-constant value")
        fill = int(np.asarray(inputs[2].data).view(np.int8).ravel()[0])
    return _spec("pad", pad_kernel(data.shape, pairs, fill), [data], output)


def _transpose(graph, op):
    (data, perm), (output,) = _io(graph, op)
    _qnn()._check_int8(data, output)
    return _spec("transpose", transpose_kernel(data.shape, _constant_ints(perm)), [data], output)


def _concatenation(graph, op):
    import tflite

    inputs, (output,) = _io(graph, op)
    _qnn()._check_int8(*inputs, output)
    options = _qnn()._options(op, tflite.ConcatenationOptions)
    if options.FusedActivationFunction() != 0:
        raise _qnn()._Unsupported("CONCATENATION with a fused activation")
    _same_quantization(*inputs, output)  # tflite-micro requires it for int8
    axis = options.Axis() % len(output.shape)
    return _spec("concatenation", concatenation_kernel([t.shape for t in inputs], axis), list(inputs), output)


def _slice_spec(name, data, output, starts, strides, full_shape):
    func = strided_kernel(data.shape, starts, strides, full_shape)
    return _spec(name, func, [data], output)


def _strided_slice(graph, op):
    import tflite

    (data, begin, end, strides), (output,) = _io(graph, op)
    _qnn()._check_int8(data, output)
    options = _qnn()._options(op, tflite.StridedSliceOptions)
    if options.EllipsisMask() or options.NewAxisMask():
        raise _qnn()._Unsupported("STRIDED_SLICE with ellipsis or new-axis masks")
    begins, ends, steps = _constant_ints(begin), _constant_ints(end), _constant_ints(strides)
    offset = bool(options.Offset()) if hasattr(options, "Offset") else False
    starts, full = [], []
    for axis, dim in enumerate(data.shape):
        step = steps[axis]
        shrink = options.ShrinkAxisMask() >> axis & 1
        # tflite's StartForAxis / StopForAxis (strided_slice_logic.h) with their clamping.
        if options.BeginMask() >> axis & 1:
            start = 0 if step > 0 else dim - 1
        else:
            start = begins[axis] + dim if begins[axis] < 0 else begins[axis]
            start = min(max(start, 0), dim) if step > 0 else min(max(start, -1), dim - 1)
        if shrink:
            stop = start + 1
        elif options.EndMask() >> axis & 1:
            stop = dim if step > 0 else -1
        else:
            stop = ends[axis] + (begins[axis] if offset else 0)
            stop = stop + dim if stop < 0 and not offset else stop
            stop = min(max(stop, 0), dim) if step > 0 else min(max(stop, -1), dim - 1)
        length = max(0, -(-(stop - start) // step)) if step > 0 else max(0, -(-(start - stop) // -step))
        starts.append(start)
        full.append(length)
    if int(np.prod(full)) != _count(output):
        raise _qnn()._Unsupported("STRIDED_SLICE whose computed shape disagrees with its output")
    return _slice_spec("strided_slice", data, output, starts, steps, full)


def _slice(graph, op):
    (data, begin, size), (output,) = _io(graph, op)
    _qnn()._check_int8(data, output)
    starts = _constant_ints(begin)
    sizes = [d - s if n == -1 else n for d, s, n in zip(data.shape, starts, _constant_ints(size))]
    return _slice_spec("slice", data, output, starts, [1] * len(starts), sizes)


def _split(graph, op, variable: bool):
    inputs, outputs = _io(graph, op)
    if variable:
        data, axis_tensor = inputs[0], inputs[2]
    else:
        axis_tensor, data = inputs[0], inputs[1]
    _qnn()._check_int8(data, *outputs)
    axis = _constant_ints(axis_tensor)[0] % len(data.shape)
    specs, start = [], 0
    for k, output in enumerate(outputs):
        starts = [0] * len(data.shape)
        starts[axis] = start
        full = list(data.shape)
        full[axis] = output.shape[axis]
        start += output.shape[axis]
        specs.append(_slice_spec(f"split{k}", data, output, starts, [1] * len(starts), full))
    return specs


def _prelu(graph, op):
    (data, alpha), (output,) = _io(graph, op)
    _qnn()._check_int8(data, alpha, output)
    if alpha.data is None:
        raise _qnn()._Unsupported("PRELU with a non-constant alpha")
    positive = fp.quantize_multiplier(float(data.scale) / float(output.scale))
    negative = fp.quantize_multiplier(float(data.scale) * float(alpha.scale) / float(output.scale))
    func = prelu_kernel(data.shape, alpha.shape, -data.zero_point, -alpha.zero_point, output.zero_point,
                        positive, negative)
    return _spec("prelu", func, [data, alpha], output)


def _mean(graph, op):
    (data, axis_tensor), (output,) = _io(graph, op)
    _qnn()._check_int8(data, output)
    axes = sorted({a % len(data.shape) for a in _constant_ints(axis_tensor)})
    # tflite-micro's integer Mean path: 4-D input averaged over height and width.
    if len(data.shape) != 4 or axes != [1, 2]:
        raise _qnn()._Unsupported("int8 MEAN other than over the height and width of a 4-D tensor")
    multiplier, shift = fp.quantize_multiplier(float(data.scale) / float(output.scale))
    func = mean_kernel(data.shape, axes, data.zero_point, output.zero_point, multiplier, shift)
    return _spec("mean", func, [data], output)


CONVERTERS = {
    "LOGISTIC": _table_op("logistic", _logistic),
    "TANH": _table_op("tanh", _tanh),
    "HARD_SWISH": _table_op("hard_swish", _hard_swish),
    "LEAKY_RELU": _table_op("leaky_relu", _leaky_relu),
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "PAD": _pad,
    "PADV2": _pad,
    "TRANSPOSE": _transpose,
    "CONCATENATION": _concatenation,
    "STRIDED_SLICE": _strided_slice,
    "SLICE": _slice,
    "SPLIT": lambda g, op: _split(g, op, variable=False),
    "SPLIT_V": lambda g, op: _split(g, op, variable=True),
    "PRELU": _prelu,
    "MEAN": _mean,
}


# ---------------------------------------------------------------------------------- SVDF

def svdf_kernel(batches: int, inputs: int, filters: int, memory: int, rank: int, time_dtype: str,
                input_zero_point: int, output_zero_point: int, feature: Tuple[int, int],
                time: Tuple[int, int]):
    """tflite-micro's integer SVDF. The int16 state [batch, filters x memory] (each filter's last
    ``memory`` activations) persists across invocations: shifted one place left, the newest
    feature activations (requantized, saturated to int16) written at each filter's end, then the
    time weights' dot product per filter, summed over ``rank`` filters per unit with the bias,
    requantized to the int8 output."""
    from .qnn_tvmscript import _parse

    units = filters // rank
    size = batches * filters * memory

    def requant(acc: str, pair: Tuple[int, int]) -> str:
        multiplier, shift = pair
        return (f'T.call_extern("int32", "mtp_requantize", {acc}, {multiplier}, {max(shift, 0)}, '
                f'{max(-shift, 0)})')

    source = f'''@T.prim_func
def svdf(input: T.Buffer(({batches * inputs},), "int8"), weights_feature: T.Buffer(({filters * inputs},), "int8"),
         weights_time: T.Buffer(({filters * memory},), "{time_dtype}"), bias: T.Buffer(({units},), "int32"),
         state: T.Buffer(({size},), "int16"), output: T.Buffer(({batches * units},), "int8")):
    acc = T.alloc_buffer((1,), "int32")
    for k in range({size - 1}):
        state[k] = state[k + 1]
    for b in range({batches}):
        for r in range({filters}):
            acc[0] = 0
            for c in range({inputs}):
                acc[0] = acc[0] + T.Cast("int32", weights_feature[r * {inputs} + c]) * (T.Cast("int32", input[b * {inputs} + c]) - {input_zero_point})
            state[b * {filters * memory} + r * {memory} + {memory - 1}] = T.Cast("int16", T.max(T.min({requant("acc[0]", feature)}, 32767), -32768))
    for b in range({batches}):
        for u in range({units}):
            acc[0] = bias[u]
            for j in range({rank}):
                for m in range({memory}):
                    acc[0] = acc[0] + T.Cast("int32", weights_time[(u * {rank} + j) * {memory} + m]) * T.Cast("int32", state[b * {filters * memory} + (u * {rank} + j) * {memory} + m])
            output[b * {units} + u] = T.Cast("int8", T.max(T.min({requant("acc[0]", time)} + {output_zero_point}, 127), -128))
'''
    return _parse(source)


def _svdf(graph, op):
    import tflite

    (data, weights_feature, weights_time, bias, state), (output,) = _io(graph, op)
    qnn = _qnn()
    qnn._check_int8(data, weights_feature, output)
    if not state.variable or state.type != _INT16 or state.zero_point != 0:
        raise qnn._Unsupported("SVDF whose state is not a symmetric int16 variable")
    if weights_time.type != _INT16 or weights_feature.data is None or weights_time.data is None:
        raise qnn._Unsupported("SVDF without constant int16 time weights (tflite-micro keeps them the state's type)")
    rank = _qnn()._options(op, tflite.SVDFOptions).Rank()
    batches, inputs = data.shape
    filters, memory = weights_time.shape
    units = filters // rank
    bias_data = bias.data.astype(np.int32) if bias is not None and bias.data is not None else np.zeros(units, np.int32)
    feature = fp.quantize_multiplier(float(data.scale) * float(weights_feature.scale) / float(state.scale))
    time = fp.quantize_multiplier(float(state.scale) * float(weights_time.scale) / float(output.scale))
    time_dtype = "int16" if weights_time.type == _INT16 else "int8"
    func = svdf_kernel(batches, inputs, filters, memory, rank, time_dtype, data.zero_point, output.zero_point,
                       feature, time)
    return _spec("svdf", func, [data, weights_feature.data, weights_time.data, bias_data, state], output)


CONVERTERS["SVDF"] = _svdf
