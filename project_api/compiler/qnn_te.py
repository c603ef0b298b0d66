"""Integer TE kernels for the int8 operators without a TVMScript loop nest: ADD, pooling, SOFTMAX,
dilated convolutions and copies. Bit-exact with tflite-micro's reference kernels.

Each builder takes shapes and compile-time quantization parameters (``qnn.py`` computes them) and
returns ``(tirx.PrimFunc, constants)``: the PrimFunc's parameters are, in order, the tensors the
kernel reads (activations, then constants) and the one it writes; ``constants`` are the values of
the per-channel requantization arrays it reads after the ones ``qnn.py`` passes. Arithmetic is
TFLite's: int8 x int8 products summed in int32 with the input zero point folded into the bias at
compile time (padding is filled with the input zero point, so padded taps contribute exactly 0 as
tflite-micro's skipped taps do), then the requantization of ``qnn_requant.py`` plus the output zero
point, clamped to the fused activation's range. The schedules (``qnn_schedule.py``) decide loop
structure; these builders only state the math.
"""

from __future__ import annotations

from tvm import te, tirx

from .qnn_choices import ConvLayer
from .qnn_requant import (clamp_to_int8, requantize_right_or_general, rounding_divide_by_pot,
                          saturating_shift_left, srdhm)

I32, I64 = "int32", "int64"


def _i64(value: int):
    return tirx.const(value, I64)


def _i32(value: int):
    return tirx.const(value, I32)


def _padded(data, pad_top: int, pad_left: int, height: int, width: int, fill: int, name: str):
    """The input seen through zero-point padding (inlined by the schedule, never stored)."""
    n, h, w, c = data.shape
    out_shape = (n, height, width, c)

    def value(b, y, x, ch):
        inside = tirx.all(y >= pad_top, y < pad_top + h, x >= pad_left, x < pad_left + w)
        return tirx.if_then_else(inside, data[b, y - pad_top, x - pad_left, ch],
                                 tirx.const(fill, data.dtype))

    if pad_top == pad_left == 0 and height <= h and width <= w:
        return data
    return te.compute(out_shape, value, name=name)


def _convolution(layer: ConvLayer, out_channels: int, kernel_size, channel_axes, product):
    """What conv2d and depthwise_conv2d share: zero-point padding, a window sum over ``ky``, ``kx``
    and ``channel_axes`` (name, extent) of ``product(tap, weight, o, ky, kx, *channel_axes)``, where
    ``tap(ch)`` is the padded input under the window as int32, then bias and requantization."""
    _, height, width, _ = layer.input_shape
    kernel_h, kernel_w = kernel_size
    _, out_h, out_w, _ = layer.output_shape
    stride_h, stride_w = layer.strides
    dil_h, dil_w = layer.dilations
    pad_top, pad_left = layer.padding
    input_zero_point, requant = layer.input_zero_point, layer.requant
    data = te.placeholder(tuple(layer.input_shape), "int8", name="input")
    weight = te.placeholder(tuple(layer.weight_shape), "int8", name="weight")
    bias = te.placeholder((out_channels,), I32, name="bias")
    req_tensors, req_values = requant.placeholders(out_channels)
    padded_h = max((out_h - 1) * stride_h + (kernel_h - 1) * dil_h + 1, height + pad_top)
    padded_w = max((out_w - 1) * stride_w + (kernel_w - 1) * dil_w + 1, width + pad_left)
    padded = _padded(data, pad_top, pad_left, padded_h, padded_w, input_zero_point, "padded")
    ky = te.reduce_axis((0, kernel_h), name="ky")
    kx = te.reduce_axis((0, kernel_w), name="kx")
    extra = [te.reduce_axis((0, extent), name=name) for name, extent in channel_axes]

    def window_sum(b, y, x, o):
        def tap(ch):
            return padded[b, y * stride_h + ky * dil_h, x * stride_w + kx * dil_w, ch].astype(I32)
        return te.sum(product(tap, weight, o, ky, kx, *extra), axis=[ky, kx] + extra)

    acc = te.compute((1, out_h, out_w, out_channels), window_sum, name="acc")
    out = te.compute((1, out_h, out_w, out_channels),
                     lambda b, y, x, o: requant.apply(acc[b, y, x, o] + bias[o], o, req_tensors), name="output")
    params = [data, weight, bias] + req_tensors + [out]
    return te.create_prim_func(params), req_values


def conv2d(layer: ConvLayer):
    """NHWC int8 input, OHWI int8 weights, folded int32 bias -> NHWC int8 (any dilation)."""
    out_channels, kernel_h, kernel_w, channels = layer.weight_shape
    return _convolution(layer, out_channels, (kernel_h, kernel_w), [("kc", channels)],
                        lambda tap, weight, o, ky, kx, kc: tap(kc) * weight[o, ky, kx, kc].astype(I32))


def depthwise_conv2d(layer: ConvLayer):
    """NHWC int8 input, [1, KH, KW, C*M] int8 weights, folded int32 bias -> NHWC int8 (any dilation)."""
    _, kernel_h, kernel_w, out_channels = layer.weight_shape
    depth_multiplier = layer.depth_multiplier
    return _convolution(layer, out_channels, (kernel_h, kernel_w), [],
                        lambda tap, weight, o, ky, kx: tap(o // depth_multiplier) * weight[0, ky, kx, o].astype(I32))


def add(shape_a, shape_b, output_shape, output_multiplier: int, output_shift: int, output_zero_point: int,
        act_min: int, act_max: int):
    """tflite-micro's int8 ADD (numpy broadcasting). Each input's rescaling to the common scale
    (offset, 20 bits of headroom, its own multiplier) depends on one int8 value only, so it is a
    256-entry table computed at compile time (``qnn._add``); at run time the two table values
    are summed and rescaled to the output."""
    a = te.placeholder(tuple(shape_a), "int8", name="input_a")
    b = te.placeholder(tuple(shape_b), "int8", name="input_b")
    table_a = te.placeholder((256,), I32, name="scaled_a")
    table_b = te.placeholder((256,), I32, name="scaled_b")
    rank = len(output_shape)

    def load(tensor, index):
        offset = rank - len(tensor.shape)
        return tensor[tuple(0 if int(dim) == 1 else index[offset + i] for i, dim in enumerate(tensor.shape))]

    def value(*index):
        raw = (table_a[load(a, index).astype(I32) + _i32(128)] + table_b[load(b, index).astype(I32) + _i32(128)])
        scaled = requantize_right_or_general(raw, output_multiplier, output_shift)
        return clamp_to_int8(scaled + _i32(output_zero_point), act_min, act_max)

    out = te.compute(tuple(output_shape), value, name="output")
    return te.create_prim_func([a, b, table_a, table_b, out]), []


def pool2d(kind: str, input_shape, output_shape, filter_size, strides, padding, act_min: int, act_max: int):
    """int8 AVERAGE_POOL_2D (sum of the taps inside the input, divided by their count, rounded
    half away from zero) or MAX_POOL_2D (maximum of the taps inside the input)."""
    _, height, width, channels = input_shape
    _, out_h, out_w, _ = output_shape
    filter_h, filter_w = filter_size
    stride_h, stride_w = strides
    pad_top, pad_left = padding
    data = te.placeholder(tuple(input_shape), "int8", name="input")
    ky = te.reduce_axis((0, filter_h), name="ky")
    kx = te.reduce_axis((0, filter_w), name="kx")

    def tap(b, y, x, c):
        iy = y * stride_h - pad_top + ky
        ix = x * stride_w - pad_left + kx
        inside = tirx.all(iy >= 0, iy < height, ix >= 0, ix < width)
        return inside, data[b, tirx.max(tirx.min(iy, height - 1), 0), tirx.max(tirx.min(ix, width - 1), 0), c]

    if kind == "max":
        def reduce_value(b, y, x, c):
            inside, value = tap(b, y, x, c)
            return te.max(tirx.if_then_else(inside, value, tirx.const(-128, "int8")), axis=[ky, kx])

        best = te.compute((1, out_h, out_w, channels), reduce_value, name="best")
        out = te.compute((1, out_h, out_w, channels),
                         lambda b, y, x, c: clamp_to_int8(best[b, y, x, c].astype(I32), act_min, act_max),
                         name="output")
        return te.create_prim_func([data, out]), []

    def reduce_sum(b, y, x, c):
        inside, value = tap(b, y, x, c)
        return te.sum(tirx.if_then_else(inside, value.astype(I32), _i32(0)), axis=[ky, kx])

    total = te.compute((1, out_h, out_w, channels), reduce_sum, name="total")

    def count(y, x):
        y0, x0 = y * stride_h - pad_top, x * stride_w - pad_left
        rows = tirx.min(y0 + filter_h, height) - tirx.max(y0, 0)
        cols = tirx.min(x0 + filter_w, width) - tirx.max(x0, 0)
        return (rows * cols).astype(I32)

    def average(b, y, x, c):
        acc = total[b, y, x, c]
        n = count(y, x)
        half = tirx.truncdiv(n, _i32(2))
        rounded = tirx.Select(acc > _i32(0), tirx.truncdiv(acc + half, n), tirx.truncdiv(acc - half, n))
        return clamp_to_int8(rounded, act_min, act_max)

    out = te.compute((1, out_h, out_w, channels), average, name="output")
    return te.create_prim_func([data, out]), []

def softmax(rows: int, depth: int, accumulation_bits: int):
    """tflite-micro's reference int8 softmax (output scale 1/256, zero point -128). ``exp_table``
    [256] holds exp of (x - row max) in Q0.31 for differences 0..-255 (``fixed_point.py``); the sum
    of the exponentials and its reciprocal (gemmlowp Newton-Raphson) are computed at run time."""
    data = te.placeholder((rows, depth), "int8", name="input")
    table = te.placeholder((256,), I32, name="exp_table")
    c = te.reduce_axis((0, depth), name="c")
    row_max = te.compute((rows,), lambda i: te.max(data[i, c].astype(I32), axis=[c]), name="row_max")

    def exp_of(i, col):
        return table[row_max[i] - data[i, col].astype(I32)]

    c2 = te.reduce_axis((0, depth), name="c2")
    total = te.compute((rows,), lambda i: te.sum(rounding_divide_by_pot(exp_of(i, c2), accumulation_bits), axis=[c2]),
                       name="sum_of_exps")
    j = te.reduce_axis((0, 32), name="j")
    # Count leading zeros of the (positive) sum: the number of powers 2^j, j < 32, above it.
    leading = te.compute((rows,), lambda i: te.sum(
        tirx.Select(total[i].astype(I64) < tirx.shift_left(_i64(1), j.var.astype(I64)), _i32(1), _i32(0)), axis=[j]),
        name="leading_zeros")
    half_den = te.compute((rows,), lambda i: tirx.truncdiv(
        tirx.shift_left(total[i].astype(I64), leading[i].astype(I64)) - _i64(1 << 31) + _i64(2**31 - 1) + _i64(1),
        _i64(2)).astype(I32), name="half_denominator")
    estimate = te.compute((rows,), lambda i: _i32(1515870810) + srdhm(half_den[i], _i32(-1010580540)),
                          name="estimate0")
    def refine(previous):
        def step(i):
            x = previous[i]
            one_minus = _i32(1 << 29) - srdhm(half_den[i], x)
            return x + saturating_shift_left(srdhm(x, one_minus), 2)
        return step

    for step in range(3):
        estimate = te.compute((rows,), refine(estimate), name=f"estimate{step + 1}")
    scale = te.compute((rows,), lambda i: saturating_shift_left(estimate[i], 1), name="reciprocal")

    def value(i, col):
        exponent = _i32(accumulation_bits + 31 - 8) - leading[i]
        unsat = rounding_divide_by_pot(srdhm(scale[i], exp_of(i, col)), exponent)
        return clamp_to_int8(unsat - _i32(128), -128, 127)

    out = te.compute((rows, depth), value, name="output")
    return te.create_prim_func([data, table, out]), []


def reshape_copy(count: int):
    data = te.placeholder((count,), "int8", name="input")
    out = te.compute((count,), lambda i: data[i], name="output")
    return te.create_prim_func([data, out]), []
