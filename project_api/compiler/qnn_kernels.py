"""Integer TIR kernels for int8 TFLite operators, bit-exact with tflite-micro's reference kernels.

Each builder takes shapes and compile-time quantization parameters (``qnn.py`` computes them) and
returns a TE-built ``tirx.PrimFunc`` whose parameters are, in order, the tensors the kernel reads
(activations, then constants) and the one it writes. Arithmetic is TFLite's: int8 x int8 products
summed in int32 with the input zero point folded into the bias at compile time (padding is filled
with the input zero point, so padded taps contribute exactly 0 as tflite-micro's skipped taps do),
then ``MultiplyByQuantizedMultiplier`` — gemmlowp's SaturatingRoundingDoublingHighMul followed by
RoundingDivideByPOT — plus the output zero point, clamped to the fused activation's range.
Per-tensor multipliers and shifts are immediates in the code; per-channel ones are constant arrays.
The schedules (``qnn_schedule.py``) decide loop structure; these builders only state the math.
"""

from __future__ import annotations

import re
from typing import Sequence, Tuple

from tvm import te, tirx

I32, I64 = "int32", "int64"


def _i64(value: int):
    return tirx.const(value, I64)


def _i32(value: int):
    return tirx.const(value, I32)


def _extern(name: str, *args):
    return tirx.call_pure_extern(I32, name, *[_i32(a) if isinstance(a, int) else a for a in args])


def srdhm(a, b):
    return _extern("mtp_srdhm", a, b)


def rounding_divide_by_pot(x, exponent):
    if isinstance(exponent, int) and exponent == 0:
        return x
    return _extern("mtp_rdbpot", x, exponent)


def multiply_by_quantized_multiplier(x, multiplier, left_shift, right_shift):
    """TFLite MultiplyByQuantizedMultiplier with its shift split into left and right parts."""
    return _extern("mtp_requantize", x, multiplier, left_shift, right_shift)


def clamp_to_int8(value, act_min: int, act_max: int):
    return tirx.max(tirx.min(value, _i32(act_max)), _i32(act_min)).astype("int8")


def negative_below(multiplier: int) -> int:
    """The accumulators below which acc * multiplier + 2^30 is negative (mtp_requantize_right)."""
    return ((-(1 << 30) - 1) // multiplier + 1) if multiplier else -(1 << 31)


def requantize_right_or_general(x, multiplier: int, shift: int):
    """Per-tensor MultiplyByQuantizedMultiplier with immediates: the one-step form for right shifts."""
    if shift <= -1:
        return _extern("mtp_requantize_right", x, multiplier, -shift, negative_below(multiplier))
    return multiply_by_quantized_multiplier(x, multiplier, max(shift, 0), max(-shift, 0))


class Requant:
    """Per-tensor (immediates) or per-channel (constant arrays) requantization parameters."""

    def __init__(self, multipliers: Sequence[int], shifts: Sequence[int], output_zero_point: int,
                 act_min: int, act_max: int):
        self.multipliers = [int(m) for m in multipliers]
        self.shifts = [int(s) for s in shifts]
        self.output_zero_point = int(output_zero_point)
        self.act_min, self.act_max = int(act_min), int(act_max)

    @property
    def per_channel(self) -> bool:
        return len(set(zip(self.multipliers, self.shifts))) > 1

    @property
    def any_left_shift(self) -> bool:
        return any(s > 0 for s in self.shifts)

    def placeholders(self, channels: int):
        """The constant parameters a per-channel kernel takes, and their numpy values."""
        import numpy as np

        if not self.per_channel:
            return [], []
        tensors = [te.placeholder((channels,), I32, name="multiplier"),
                   te.placeholder((channels,), I32, name="right_shift")]
        values = [np.array(self.multipliers, np.int32), np.array([max(-s, 0) for s in self.shifts], np.int32)]
        if self.any_left_shift:
            tensors.append(te.placeholder((channels,), I32, name="left_shift"))
            values.append(np.array([max(s, 0) for s in self.shifts], np.int32))
        return tensors, values

    @property
    def right_shifts_only(self) -> bool:
        """Every channel shifts right (real multipliers below 0.5, as in nearly every layer)."""
        return all(s <= -1 for s in self.shifts)

    def negative_below(self, index: int) -> int:
        return negative_below(self.multipliers[index])

    @property
    def negatives_clamp(self) -> bool:
        """Every negative requantized value clamps to act_min (act_min at or above the output zero
        point, as after a ReLU), so the one-step ``mtp_requantize_floor`` serves (right shifts)."""
        return self.right_shifts_only and self.act_min >= self.output_zero_point

    @property
    def form(self) -> str:
        """Which requantization the kernels emit (what their code depends on, not the values)."""
        step = ("floor" if self.negatives_clamp else "right" if self.right_shifts_only
                else "left" if self.any_left_shift else "general")
        return f"{step}_{'per_channel' if self.per_channel else 'per_tensor'}_{self.act_min}_{self.act_max}"

    def floor_rounding(self, index: int) -> int:
        """``mtp_requantize_floor``'s rounding: 2^30 + 2^(30 + e), e the right shift."""
        return (1 << 30) + (1 << (30 - self.shifts[index]))

    def script_arrays(self):
        """Names and values (int32, int64) of the per-channel constant arrays of the TVMScript kernels."""
        import numpy as np

        if not self.per_channel:
            return []
        if self.negatives_clamp:
            return [("multiplier", np.array(self.multipliers, np.int32)),
                    ("rounding", np.array([self.floor_rounding(i) for i in range(len(self.shifts))], np.int64)),
                    ("shift_minus_one", np.array([-s - 1 for s in self.shifts], np.int32))]
        if self.right_shifts_only:
            return [("multiplier", np.array(self.multipliers, np.int32)),
                    ("right_shift", np.array([-s for s in self.shifts], np.int32)),
                    ("negative_below", np.array([self.negative_below(i) for i in range(len(self.shifts))], np.int32))]
        arrays = [("multiplier", np.array(self.multipliers, np.int32)),
                  ("right_shift", np.array([max(-s, 0) for s in self.shifts], np.int32))]
        if self.any_left_shift:
            arrays.append(("left_shift", np.array([max(s, 0) for s in self.shifts], np.int32)))
        return arrays

    def apply(self, acc, channel, tensors):
        if tensors:
            left = tensors[2][channel] if len(tensors) > 2 else 0
            value = multiply_by_quantized_multiplier(acc, tensors[0][channel], left, tensors[1][channel])
        else:
            shift = self.shifts[0]
            value = multiply_by_quantized_multiplier(acc, self.multipliers[0], max(shift, 0), max(-shift, 0))
        return clamp_to_int8(value + _i32(self.output_zero_point), self.act_min, self.act_max)


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


def _convolution(input_shape, weight_shape, output_shape, strides, dilations, padding, input_zero_point: int,
                 requant: Requant, out_channels: int, kernel_size, channel_axes, product):
    """What conv2d and depthwise_conv2d share: zero-point padding, a window sum over ``ky``, ``kx``
    and ``channel_axes`` (name, extent) of ``product(tap, weight, o, ky, kx, *channel_axes)``, where
    ``tap(ch)`` is the padded input under the window as int32, then bias and requantization."""
    _, height, width, _ = input_shape
    kernel_h, kernel_w = kernel_size
    _, out_h, out_w, _ = output_shape
    stride_h, stride_w = strides
    dil_h, dil_w = dilations
    pad_top, pad_left = padding
    data = te.placeholder(tuple(input_shape), "int8", name="input")
    weight = te.placeholder(tuple(weight_shape), "int8", name="weight")
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


def conv2d(input_shape, weight_shape, output_shape, strides, dilations, padding: Tuple[int, int],
           input_zero_point: int, requant: Requant):
    """NHWC int8 input, OHWI int8 weights, folded int32 bias -> NHWC int8."""
    out_channels, kernel_h, kernel_w, channels = weight_shape
    return _convolution(input_shape, weight_shape, output_shape, strides, dilations, padding, input_zero_point,
                        requant, out_channels, (kernel_h, kernel_w), [("kc", channels)],
                        lambda tap, weight, o, ky, kx, kc: tap(kc) * weight[o, ky, kx, kc].astype(I32))


def depthwise_conv2d(input_shape, weight_shape, output_shape, strides, dilations, padding, depth_multiplier: int,
                     input_zero_point: int, requant: Requant):
    """NHWC int8 input, [1, KH, KW, C*M] int8 weights, folded int32 bias -> NHWC int8."""
    _, kernel_h, kernel_w, out_channels = weight_shape
    return _convolution(input_shape, weight_shape, output_shape, strides, dilations, padding, input_zero_point,
                        requant, out_channels, (kernel_h, kernel_w), [],
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


def _saturating_shift_left(x, exponent: int):
    return _extern("mtp_saturating_shift_left", x, exponent)


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
            return x + _saturating_shift_left(srdhm(x, one_minus), 2)
        return step

    for step in range(3):
        estimate = te.compute((rows,), refine(estimate), name=f"estimate{step + 1}")
    scale = te.compute((rows,), lambda i: _saturating_shift_left(estimate[i], 1), name="reciprocal")

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



# ---- kernels over the C micro-kernels (TVMScript) -----------------------------------------------
# Each output element is one micro-kernel call over its window, clipped to the input at run time
# (the clip is a few integer operations per output, not a test per multiply-accumulate), followed
# by the requantization. Buffers are flat; indices are computed in TIR.


def _requant_expr(acc: str, requant: Requant, channel: str) -> str:
    if requant.per_channel and requant.negatives_clamp:
        call = (f'T.call_extern("int32", "mtp_requantize_floor", {acc}, multiplier[{channel}], '
                f'rounding[{channel}], shift_minus_one[{channel}])')
    elif requant.negatives_clamp:
        call = (f'T.call_extern("int32", "mtp_requantize_floor", {acc}, {requant.multipliers[0]}, '
                f'T.int64({requant.floor_rounding(0)}), {-requant.shifts[0] - 1})')
    elif requant.per_channel and requant.right_shifts_only:
        call = (f'T.call_extern("int32", "mtp_requantize_right", {acc}, multiplier[{channel}], '
                f'right_shift[{channel}], negative_below[{channel}])')
    elif requant.per_channel:
        left = f"left_shift[{channel}]" if requant.any_left_shift else "0"
        call = f'T.call_extern("int32", "mtp_requantize", {acc}, multiplier[{channel}], {left}, right_shift[{channel}])'
    elif requant.right_shifts_only:
        call = (f'T.call_extern("int32", "mtp_requantize_right", {acc}, {requant.multipliers[0]}, '
                f'{-requant.shifts[0]}, {requant.negative_below(0)})')
    else:
        shift = requant.shifts[0]
        call = (f'T.call_extern("int32", "mtp_requantize", {acc}, {requant.multipliers[0]}, {max(shift, 0)}, '
                f'{max(-shift, 0)})')
    return (f'T.Cast("int8", T.call_extern("int32", "mtp_clamp", {call} + {requant.output_zero_point}, '
            f'{requant.act_min}, {requant.act_max}))')


def _requant_params(requant: Requant, channels: int) -> str:
    return "".join(f', {name}: T.Buffer(({channels},), "{values.dtype}")' for name, values in requant.script_arrays())


def _requant_values(requant: Requant):
    return [values for _, values in requant.script_arrays()]


def _parse(source: str):
    import tvm

    return tvm.script.from_source(source)


def _clip(origin: str, extent: int, size: int) -> Tuple[str, str]:
    """First valid tap and count of valid taps of a window starting at ``origin`` (may be < 0)."""
    first = f"T.max(0, 0 - ({origin}))"
    count = f"(T.min({extent}, {size} - ({origin})) - {first})"
    return first, count


def gathers_windows(input_shape, weight_shape, padding) -> bool:
    """Short window rows (one or two SIMD words, as in first layers over one input channel) cost
    more in per-row overhead than in products: such convolutions copy each window to a contiguous
    buffer first (``conv2d_gathered``). The window must be a whole number of words."""
    channels = int(input_shape[3])
    _, kernel_h, kernel_w, _ = (int(d) for d in weight_shape)
    size = kernel_h * kernel_w * channels
    return kernel_w * channels < 8 and kernel_h > 1 and size % 4 == 0 and size <= 256


def conv2d_gathered(input_shape, weight_shape, output_shape, strides, padding, input_zero_point: int,
                    requant: Requant, widened: bool = False):
    """CONV_2D (dilation 1) over gathered windows: output pixels in pairs along the whole image
    (row-major), both windows copied by ``mtp_gather_window_s8`` to a stack buffer, then two
    pixels x two channels per ``mtp_dot2x2_s8`` call over the contiguous windows (one pixel:
    ``mtp_dot2_s8``; an odd last channel: ``mtp_dot_s8``). Raw bias, the input offset applied in
    the micro-kernels (gathered padding holds the zero point, so it contributes 0).
    ``widened`` (a tuning knob): the pair's two windows are widened once to int16 lanes with the
    input offset (``mtp_widen_s8``, c/mtp_widened.h) and each channel pair takes
    ``mtp_dot2x2_widened_s8`` (CMSIS-NN's im2col to q15)."""
    _, height, width, channels = (int(d) for d in input_shape)
    out_channels, kernel_h, kernel_w, _ = (int(d) for d in weight_shape)
    _, out_h, out_w, _ = (int(d) for d in output_shape)
    (stride_h, stride_w), (pad_top, pad_left) = strides, padding
    size = kernel_h * kernel_w * channels
    pixels = out_h * out_w
    offset = -input_zero_point
    last = out_channels - 1

    def gather(pixel: str, slot: int) -> str:
        y0 = f"T.floordiv({pixel}, {out_w}) * {stride_h} - {pad_top}"
        x0 = f"T.floormod({pixel}, {out_w}) * {stride_w} - {pad_left}"
        return (f'T.evaluate(T.call_extern("int32", "mtp_gather_window_s8", T.address_of(input[0]), {height}, '
                f'{width}, {channels}, {y0}, {x0}, {kernel_h}, {kernel_w}, {input_zero_point}, '
                f'T.address_of(windows[{slot * size}])))')

    def out(pixel: str, channel: str) -> str:
        return f"output[({pixel}) * {out_channels} + {channel}]"

    def single(slot: int) -> str:
        return (f'T.call_extern("int32", "mtp_dot_s8", T.address_of(windows[{slot * size}]), '
                f'T.address_of(weight[{last * size}]), {size}, {offset}, bias[{last}])')

    body = []
    if pixels >= 2:
        body += [f"for pp in range({pixels // 2}):", "    " + gather("pp * 2", 0), "    " + gather("pp * 2 + 1", 1)]
        if out_channels >= 2:
            if widened:
                body.append(f'    T.evaluate(T.call_extern("int32", "mtp_widen_s8", T.address_of(windows[0]), '
                            f'{2 * size}, {offset}, T.address_of(wide[0])))')
                dot = (f'T.call_extern("int32", "mtp_dot2x2_widened_s8", T.address_of(wide[0]), {size}, '
                       f'T.address_of(weight[c * {size}]), {size}, {size}, T.address_of(acc[0]))')
            else:
                dot = (f'T.call_extern("int32", "mtp_dot2x2_s8", T.address_of(windows[0]), {size}, '
                       f'T.address_of(weight[c * {size}]), {size}, {size}, {offset}, T.address_of(acc[0]))')
            body += [f"    for pair in range({out_channels // 2}):",
                     "        acc[0] = bias[c]", "        acc[1] = bias[c + 1]",
                     "        acc[2] = bias[c]", "        acc[3] = bias[c + 1]",
                     f'        T.evaluate({dot})']
            for index, (dp, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                body.append(f"        {out(f'pp * 2 + {dp}', f'c + {dc}')} = "
                            f"{_requant_expr(f'acc[{index}]', requant, f'c + {dc}')}")
        if out_channels % 2:
            body += [f"    {out(f'pp * 2 + {slot}', str(last))} = {_requant_expr(single(slot), requant, str(last))}"
                     for slot in (0, 1)]
    if pixels % 2:
        pixel = str(pixels - 1)
        body.append(gather(pixel, 0))
        if out_channels >= 2:
            body += [f"for pair in range({out_channels // 2}):",
                     "    acc[0] = bias[c]", "    acc[1] = bias[c + 1]",
                     f'    T.evaluate(T.call_extern("int32", "mtp_dot2_s8", T.address_of(windows[0]), '
                     f'T.address_of(weight[c * {size}]), {size}, {size}, {offset}, T.address_of(acc[0])))',
                     f"    {out(pixel, 'c')} = {_requant_expr('acc[0]', requant, 'c')}",
                     f"    {out(pixel, 'c + 1')} = {_requant_expr('acc[1]', requant, 'c + 1')}"]
        if out_channels % 2:
            body.append(f"{out(pixel, str(last))} = {_requant_expr(single(0), requant, str(last))}")
    body = [re.sub(r"\bc\b", "(pair * 2)", line) for line in body]
    source = "\n".join(
        ["@T.prim_func",
         f'def conv2d(input: T.Buffer(({height * width * channels},), "int8"), '
         f'weight: T.Buffer(({out_channels * size},), "int8"),',
         f'           bias: T.Buffer(({out_channels},), "int32"){_requant_params(requant, out_channels)},',
         f'           output: T.Buffer(({pixels * out_channels},), "int8")):',
         '    acc = T.alloc_buffer((4,), "int32")',
         f'    windows = T.alloc_buffer(({2 * size},), "int8")',
         # TVM sizes a local buffer by the elements its TIR touches, and the micro-kernels'
         # pointers name only each window's first byte: one store to the last gives the extent.
         f'    windows[{2 * size - 1}] = T.int8({input_zero_point})']
        + ([f'    wide = T.alloc_buffer(({2 * size},), "int16")', f'    wide[{2 * size - 1}] = T.int16(0)']
           if widened and pixels >= 2 and out_channels >= 2 else [])
        + ["    " + line for line in body]) + "\n"
    return _parse(source), _requant_values(requant)


def conv2d_windows(input_shape, weight_shape, output_shape, strides, padding, input_zero_point: int,
                   requant: Requant, pixel_pairs: bool = True, widened: bool = False):
    """CONV_2D (dilation 1), raw bias, windows clipped to the input. Output pixels go in pairs
    along x: when both pixels' windows clip alike (always, away from the left and right borders),
    ``mtp_window2x2_s8`` computes two pixels x two channels per call; otherwise each pixel takes
    ``mtp_window2_s8`` per pair of channels. An odd last channel takes ``mtp_window_s8``.
    Pointwise convolutions (1x1, unpadded) use the contiguous-run forms ``mtp_dot2x2_s8`` /
    ``mtp_dot2_s8``. Tuning knobs: ``pixel_pairs=False`` takes one pixel per call everywhere;
    ``widened`` (pointwise, channels a multiple of 4) widens each pixel pair's inputs once
    (``mtp_widen_s8``) and takes ``mtp_dot2x2_widened_s8`` per channel pair."""
    _, height, width, channels = (int(d) for d in input_shape)
    out_channels, kernel_h, kernel_w, _ = (int(d) for d in weight_shape)
    _, out_h, out_w, _ = (int(d) for d in output_shape)
    (stride_h, stride_w), (pad_top, pad_left) = strides, padding
    pointwise = kernel_h == kernel_w == 1 and padding == (0, 0)
    if pointwise and strides == (1, 1):
        # Input and output pixels correspond one to one: pair them along the whole image, not
        # row by row (an odd row width would leave one pixel per row to the one-pixel kernel).
        height, width, out_h, out_w = 1, height * width, 1, out_h * out_w
    ky0, rows = _clip(f"y * {stride_h} - {pad_top}", kernel_h, height)
    kx0, cols = _clip(f"x * {stride_w} - {pad_left}", kernel_w, width)
    if pointwise:
        ky0 = kx0 = "0"
    a = f"((y * {stride_h} - {pad_top} + {ky0}) * {width} + x * {stride_w} - {pad_left} + {kx0}) * {channels}"
    filter_size = kernel_h * kernel_w * channels
    offset = -input_zero_point

    def b(channel):
        return f"(({channel} * {kernel_h} + {ky0}) * {kernel_w} + {kx0}) * {channels}"

    def out(x, channel):
        return f"output[(y * {out_w} + {x}) * {out_channels} + {channel}]"

    window = f"{rows}, {cols} * {channels}, {width * channels}, {kernel_w * channels}, {offset}"
    if pointwise:
        pair_call = (f'mtp_dot2_s8", T.address_of(input[{a}]), T.address_of(weight[{b("c")}]), {filter_size}, '
                     f'{channels}, {offset}')
        quad_call = (f'mtp_dot2x2_s8", T.address_of(input[{a}]), {stride_w * channels}, '
                     f'T.address_of(weight[{b("c")}]), {filter_size}, {channels}, {offset}')
    else:
        pair_call = f'mtp_window2_s8", T.address_of(input[{a}]), T.address_of(weight[{b("c")}]), {filter_size}, {window}'
        quad_call = (f'mtp_window2x2_s8", T.address_of(input[{a}]), {stride_w * channels}, '
                     f'T.address_of(weight[{b("c")}]), {filter_size}, {window}')
    last = out_channels - 1
    single = (f'T.call_extern("int32", "mtp_window_s8", T.address_of(input[{a}]), T.address_of(weight[{b(last)}]), '
              f'{window}, bias[{last}])')

    def pixel_lines(x: str):
        """One output pixel: pairs of channels, then an odd last channel."""
        lines = []
        if out_channels >= 2:
            lines += [f"for pair in range({out_channels // 2}):",
                      "    acc[0] = bias[c]", "    acc[1] = bias[c + 1]",
                      f'    T.evaluate(T.call_extern("int32", "{pair_call}, T.address_of(acc[0])))',
                      f"    {out('x', 'c')} = {_requant_expr('acc[0]', requant, 'c')}",
                      f"    {out('x', 'c + 1')} = {_requant_expr('acc[1]', requant, 'c + 1')}"]
        if out_channels % 2:
            lines.append(f"{out('x', last)} = {_requant_expr(single, requant, str(last))}")
        return [_substitute(line, x) for line in lines]

    if widened:
        quad_call = (f'mtp_dot2x2_widened_s8", T.address_of(wide[0]), {channels}, '
                     f'T.address_of(weight[{b("c")}]), {filter_size}, {channels}')

    def pixel_pair_lines(x: str):
        """Output pixels x and x + 1 whose windows clip alike: two pixels x two channels per call."""
        lines = []
        if out_channels >= 2:
            if widened:
                second = _substitute(a, "(x + 1)")
                lines += [f'T.evaluate(T.call_extern("int32", "mtp_widen_s8", T.address_of(input[{a}]), {channels}, '
                          f'{offset}, T.address_of(wide[0])))',
                          f'T.evaluate(T.call_extern("int32", "mtp_widen_s8", T.address_of(input[{second}]), '
                          f'{channels}, {offset}, T.address_of(wide[{channels}])))']
            lines += [f"for pair in range({out_channels // 2}):",
                      "    acc[0] = bias[c]", "    acc[1] = bias[c + 1]", "    acc[2] = bias[c]", "    acc[3] = bias[c + 1]",
                      f'    T.evaluate(T.call_extern("int32", "{quad_call}, T.address_of(acc[0])))']
            for index, (dx, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                channel = f"c + {dc}"
                lines.append(f"    {out(f'x + {dx}', channel)} = {_requant_expr(f'acc[{index}]', requant, channel)}")
        lines = [_substitute(line, x) for line in lines]
        if out_channels % 2:
            lines += [_substitute(line, x) for line in pixel_lines("x")[-1:]]
            lines += [_substitute(line, f"{x} + 1") for line in pixel_lines("x")[-1:]]
        return lines

    body = [f"for y in range({out_h}):"]
    if not pixel_pairs:
        body.append(f"    for x in range({out_w}):")
        body += ["        " + line for line in pixel_lines("x")]
    elif out_w >= 2:
        body.append(f"    for xp in range({out_w // 2}):")
        if pointwise:
            body += ["        " + line for line in pixel_pair_lines("(xp * 2)")]
        else:
            same = (f"{_substitute(kx0, '(xp * 2)')} == {_substitute(kx0, '(xp * 2 + 1)')} and "
                    f"{_substitute(cols, '(xp * 2)')} == {_substitute(cols, '(xp * 2 + 1)')}")
            body.append(f"        if {same}:")
            body += ["            " + line for line in pixel_pair_lines("(xp * 2)")]
            body.append("        else:")
            body += ["            " + line for line in pixel_lines("(xp * 2)") + pixel_lines("(xp * 2 + 1)")]
    if out_w % 2 and pixel_pairs:
        body += ["    " + line for line in pixel_lines(str(out_w - 1))]
    wide = ([f'    wide = T.alloc_buffer(({2 * channels},), "int16")', f'    wide[{2 * channels - 1}] = T.int16(0)']
            if widened and pixel_pairs and out_w >= 2 and out_channels >= 2 else [])
    source = "\n".join(
        ["@T.prim_func",
         f'def conv2d(input: T.Buffer(({height * width * channels},), "int8"), '
         f'weight: T.Buffer(({out_channels * filter_size},), "int8"),',
         f'           bias: T.Buffer(({out_channels},), "int32"){_requant_params(requant, out_channels)},',
         f'           output: T.Buffer(({out_h * out_w * out_channels},), "int8")):',
         '    acc = T.alloc_buffer((4,), "int32")'] + wide + ["    " + line for line in body]) + "\n"
    return _parse(source), _requant_values(requant)


def _substitute(line: str, x: str) -> str:
    """``x`` -> the pixel's expression, ``c`` -> the pair's first channel (spelled out: a scalar
    binding would become a local allocation, which the unpacked-ABI lowering refuses)."""
    return re.sub(r"\bc\b", "(pair * 2)", re.sub(r"\bx\b", x, line))


def _paired_source(name, input_size, weight_size, channels, output_size, requant, loops, pair, single, out_base):
    """A kernel over output pixels (``loops``) and pairs of output channels ``c``, ``c + 1``."""
    indent = "    " * (len(loops) + 1)
    lines = ["@T.prim_func",
             f'def {name}(input: T.Buffer(({input_size},), "int8"), weight: T.Buffer(({weight_size},), "int8"),',
             f'         bias: T.Buffer(({channels},), "int32"){_requant_params(requant, channels)},',
             f'         output: T.Buffer(({output_size},), "int8")):',
             '    acc = T.alloc_buffer((2,), "int32")']
    for depth, (var, extent) in enumerate(loops):
        lines.append("    " * (depth + 1) + f"for {var} in range({extent}):")
    if channels >= 2:
        # ``c``, the pair's first channel, is spelled out: a scalar binding would become a local
        # allocation, which the unpacked-ABI lowering refuses.
        body = ["acc[0] = bias[c]",
                "acc[1] = bias[c + 1]",
                f"T.evaluate({pair})",
                f"output[{out_base} + c] = {_requant_expr('acc[0]', requant, 'c')}",
                f"output[{out_base} + c + 1] = {_requant_expr('acc[1]', requant, 'c + 1')}"]
        lines.append(indent + f"for pair in range({channels // 2}):")
        lines += [indent + "    " + re.sub(r"\bc\b", "(pair * 2)", line) for line in body]
    if channels % 2:
        last = channels - 1
        lines.append(indent + f"output[{out_base} + {last}] = {_requant_expr(single, requant, str(last))}")
    return "\n".join(lines) + "\n"


def depthwise_conv2d_windows(input_shape, weight_shape, output_shape, strides, padding, depth_multiplier: int,
                             input_zero_point: int, requant: Requant, interior: bool = False):
    """DEPTHWISE_CONV_2D (dilation 1): per output pixel and four channels, ``mtp_depthwise4_s8``
    over the clipped window (depth multiplier 1, channels a multiple of 4); otherwise per output
    ``mtp_depthwise_window_s8``. ``interior`` (a tuning knob): pixels whose window is inside the
    input call the micro-kernel with the window's size as constants (once inlined, at opt O2, gcc
    unrolls the taps and addresses them by immediate offsets); the border pixels as before."""
    _, height, width, channels = (int(d) for d in input_shape)
    _, kernel_h, kernel_w, out_channels = (int(d) for d in weight_shape)
    _, out_h, out_w, _ = (int(d) for d in output_shape)
    (stride_h, stride_w), (pad_top, pad_left) = strides, padding
    ky0, rows = _clip(f"y * {stride_h} - {pad_top}", kernel_h, height)
    kx0, cols = _clip(f"x * {stride_w} - {pad_left}", kernel_w, width)
    if depth_multiplier == 1 and channels % 4 == 0:
        a = f"((y * {stride_h} - {pad_top} + {ky0}) * {width} + x * {stride_w} - {pad_left} + {kx0}) * {channels}"
        b = f"({ky0} * {kernel_w} + {kx0}) * {channels}"
        call = (f'T.call_extern("int32", "mtp_depthwise_pixel_s8", T.address_of(input[{a}]), '
                f'T.address_of(weight[{b}]), T.address_of(bias[0]), {rows}, {cols}, {width * channels}, '
                f'{kernel_w * channels}, {channels}, {-input_zero_point}, T.address_of(acc[0]))')
        lines = ["@T.prim_func",
                 f'def depthwise_conv2d(input: T.Buffer(({height * width * channels},), "int8"),',
                 f'                     weight: T.Buffer(({kernel_h * kernel_w * channels},), "int8"),',
                 f'                     bias: T.Buffer(({channels},), "int32"){_requant_params(requant, channels)},',
                 f'                     output: T.Buffer(({out_h * out_w * channels},), "int8")):',
                 f'    acc = T.alloc_buffer(({channels},), "int32")',
                 f"    for y in range({out_h}):",
                 f"        for x in range({out_w}):"]
        if interior:
            inside = (f"y * {stride_h} - {pad_top} >= 0 and y * {stride_h} - {pad_top} + {kernel_h} <= {height} and "
                      f"x * {stride_w} - {pad_left} >= 0 and x * {stride_w} - {pad_left} + {kernel_w} <= {width}")
            whole = call.replace(f"{rows}, {cols}, {width * channels}", f"{kernel_h}, {kernel_w}, {width * channels}")
            lines += [f"            if {inside}:", f"                T.evaluate({whole})", "            else:",
                      f"                T.evaluate({call})"]
        else:
            lines.append(f"            T.evaluate({call})")
        lines += [f"            for c in range({channels}):",
                 f"                output[(y * {out_w} + x) * {channels} + c] = {_requant_expr('acc[c]', requant, 'c')}"]
        return _parse("\n".join(lines) + "\n"), _requant_values(requant)
    a = (f"((y * {stride_h} - {pad_top} + {ky0}) * {width} + x * {stride_w} - {pad_left} + {kx0}) * {channels}"
         f" + T.floordiv(o, {depth_multiplier})")
    b = f"({ky0} * {kernel_w} + {kx0}) * {out_channels} + o"
    acc = (f'T.call_extern("int32", "mtp_depthwise_window_s8", T.address_of(input[{a}]), T.address_of(weight[{b}]), '
           f'{rows}, {cols}, {width * channels}, {channels}, {kernel_w * out_channels}, {out_channels}, '
           f'{-input_zero_point}, bias[o])')
    source = f'''
@T.prim_func
def depthwise_conv2d(input: T.Buffer(({height * width * channels},), "int8"),
                     weight: T.Buffer(({kernel_h * kernel_w * out_channels},), "int8"),
                     bias: T.Buffer(({out_channels},), "int32"){_requant_params(requant, out_channels)},
                     output: T.Buffer(({out_h * out_w * out_channels},), "int8")):
    for y in range({out_h}):
        for x in range({out_w}):
            for o in range({out_channels}):
                output[(y * {out_w} + x) * {out_channels} + o] = {_requant_expr(acc, requant, "o")}
'''
    return _parse(source), _requant_values(requant)


def interleave_by_four(weights):
    """[U, D] weights (U and D multiples of 4) in mtp_dot4_interleaved_s8's order: per group of
    four units and per four inputs, the four units' four bytes in turn."""
    units, depth = weights.shape
    return weights.reshape(units // 4, 4, depth // 4, 4).transpose(0, 2, 1, 3).reshape(units, depth).copy()


def fully_connected_interleaved(batches: int, depth: int, units: int, requant: Requant):
    """FULLY_CONNECTED with U and D multiples of 4: per group of four units, one
    ``mtp_dot4_interleaved_s8`` over weights laid out by ``interleave_by_four``; folded bias."""
    lines = ["@T.prim_func",
             f'def fully_connected(input: T.Buffer(({batches * depth},), "int8"), '
             f'weight: T.Buffer(({units * depth},), "int8"),',
             f'                    bias: T.Buffer(({units},), "int32"){_requant_params(requant, units)},',
             f'                    output: T.Buffer(({batches * units},), "int8")):',
             '    acc = T.alloc_buffer((4,), "int32")',
             f"    for b in range({batches}):",
             f"        for g in range({units // 4}):"]
    lines += [f"            acc[{j}] = bias[g * 4 + {j}]" for j in range(4)]
    lines.append(f'            T.evaluate(T.call_extern("int32", "mtp_dot4_interleaved_s8", '
                 f'T.address_of(input[b * {depth}]), T.address_of(weight[g * {4 * depth}]), {depth}, '
                 f'T.address_of(acc[0])))')
    lines += [f"            output[b * {units} + g * 4 + {j}] = {_requant_expr(f'acc[{j}]', requant, f'g * 4 + {j}')}"
              for j in range(4)]
    return _parse("\n".join(lines) + "\n"), _requant_values(requant)


def fully_connected_dot(batches: int, depth: int, units: int, requant: Requant):
    """FULLY_CONNECTED: per pair of output units, ``mtp_dot2_s8`` over the input row and the two
    weight rows; the input offset is folded into the bias (``bias`` here is the folded one)."""
    return _parse(_paired_source(
        "fully_connected", batches * depth, units * depth, units, batches * units, requant, [("b", batches)],
        pair=(f'T.call_extern("int32", "mtp_dot2_s8", T.address_of(input[b * {depth}]), '
              f'T.address_of(weight[c * {depth}]), {depth}, {depth}, 0, T.address_of(acc[0]))'),
        single=(f'T.call_extern("int32", "mtp_dot_s8", T.address_of(input[b * {depth}]), '
                f'T.address_of(weight[{(units - 1) * depth}]), {depth}, 0, bias[{units - 1}])'),
        out_base=f"b * {units}")), _requant_values(requant)
