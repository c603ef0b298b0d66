"""Integer kernels over the C micro-kernels, written loop by loop in TVMScript: CONV_2D, DEPTHWISE_CONV_2D
and FULLY_CONNECTED (dilation 1). Bit-exact with tflite-micro's reference kernels.

Each output element is one micro-kernel call (``c/mtp_micro_kernels.h``) over its window, clipped
to the input at run time (the clip is a few integer operations per output, not a test per
multiply-accumulate), followed by the requantization (``Requant.script_expr``). Buffers are flat;
indices are computed in TIR. Each builder returns ``(tirx.PrimFunc, constants)`` as the TE builders
do (``qnn_te.py``); which builder a layer takes is ``qnn_choices.py``'s decision. Register
blocking and the loop structure are the schedule: docs/int8-kernels.md.
"""

from __future__ import annotations

import re
from typing import Tuple

from .qnn_choices import ConvLayer, depthwise_per_pixel, is_pointwise
from .qnn_requant import Requant


def _parse(source: str):
    import tvm

    return tvm.script.from_source(source)


def _clip(origin: str, extent: int, size: int) -> Tuple[str, str]:
    """First valid tap and count of valid taps of a window starting at ``origin`` (may be < 0)."""
    first = f"T.max(0, 0 - ({origin}))"
    count = f"(T.min({extent}, {size} - ({origin})) - {first})"
    return first, count


def conv2d_gathered(layer: ConvLayer, widened: bool = False):
    """CONV_2D (dilation 1) over gathered windows: output pixels in pairs along the whole image
    (row-major), both windows copied by ``mtp_gather_window_s8`` to a stack buffer, then two
    pixels x two channels per ``mtp_dot2x2_s8`` call over the contiguous windows (one pixel:
    ``mtp_dot2_s8``; an odd last channel: ``mtp_dot_s8``). Raw bias, the input offset applied in
    the micro-kernels (gathered padding holds the zero point, so it contributes 0).
    ``widened`` (a tuning knob): the pair's two windows are widened once to int16 lanes with the
    input offset (``mtp_widen_s8``, c/mtp_widened.h) and each channel pair takes
    ``mtp_dot2x2_widened_s8`` (CMSIS-NN's im2col to q15)."""
    _, height, width, channels = (int(d) for d in layer.input_shape)
    out_channels, kernel_h, kernel_w, _ = (int(d) for d in layer.weight_shape)
    _, out_h, out_w, _ = (int(d) for d in layer.output_shape)
    (stride_h, stride_w), (pad_top, pad_left) = layer.strides, layer.padding
    input_zero_point, requant = layer.input_zero_point, layer.requant
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
                            f"{requant.script_expr(f'acc[{index}]', f'c + {dc}')}")
        if out_channels % 2:
            body += [f"    {out(f'pp * 2 + {slot}', str(last))} = {requant.script_expr(single(slot), str(last))}"
                     for slot in (0, 1)]
    if pixels % 2:
        pixel = str(pixels - 1)
        body.append(gather(pixel, 0))
        if out_channels >= 2:
            body += [f"for pair in range({out_channels // 2}):",
                     "    acc[0] = bias[c]", "    acc[1] = bias[c + 1]",
                     f'    T.evaluate(T.call_extern("int32", "mtp_dot2_s8", T.address_of(windows[0]), '
                     f'T.address_of(weight[c * {size}]), {size}, {size}, {offset}, T.address_of(acc[0])))',
                     f"    {out(pixel, 'c')} = {requant.script_expr('acc[0]', 'c')}",
                     f"    {out(pixel, 'c + 1')} = {requant.script_expr('acc[1]', 'c + 1')}"]
        if out_channels % 2:
            body.append(f"{out(pixel, str(last))} = {requant.script_expr(single(0), str(last))}")
    body = [re.sub(r"\bc\b", "(pair * 2)", line) for line in body]
    source = "\n".join(
        ["@T.prim_func",
         f'def conv2d(input: T.Buffer(({height * width * channels},), "int8"), '
         f'weight: T.Buffer(({out_channels * size},), "int8"),',
         f'           bias: T.Buffer(({out_channels},), "int32"){requant.script_params(out_channels)},',
         f'           output: T.Buffer(({pixels * out_channels},), "int8")):',
         '    acc = T.alloc_buffer((4,), "int32")',
         f'    windows = T.alloc_buffer(({2 * size},), "int8")',
         # TVM sizes a local buffer by the elements its TIR touches, and the micro-kernels'
         # pointers name only each window's first byte: one store to the last gives the extent.
         f'    windows[{2 * size - 1}] = T.int8({input_zero_point})']
        + ([f'    wide = T.alloc_buffer(({2 * size},), "int16")', f'    wide[{2 * size - 1}] = T.int16(0)']
           if widened and pixels >= 2 and out_channels >= 2 else [])
        + ["    " + line for line in body]) + "\n"
    return _parse(source), requant.script_values()


def conv2d_windows(layer: ConvLayer, pixel_pairs: bool = True, widened: bool = False):
    """CONV_2D (dilation 1), raw bias, windows clipped to the input. Output pixels go in pairs
    along x: when both pixels' windows clip alike (always, away from the left and right borders),
    ``mtp_window2x2_s8`` computes two pixels x two channels per call; otherwise each pixel takes
    ``mtp_window2_s8`` per pair of channels. An odd last channel takes ``mtp_window_s8``.
    Pointwise convolutions (1x1, unpadded) use the contiguous-run forms ``mtp_dot2x2_s8`` /
    ``mtp_dot2_s8``. Tuning knobs: ``pixel_pairs=False`` takes one pixel per call everywhere;
    ``widened`` (pointwise, channels a multiple of 4) widens each pixel pair's inputs once
    (``mtp_widen_s8``) and takes ``mtp_dot2x2_widened_s8`` per channel pair."""
    _, height, width, channels = (int(d) for d in layer.input_shape)
    out_channels, kernel_h, kernel_w, _ = (int(d) for d in layer.weight_shape)
    _, out_h, out_w, _ = (int(d) for d in layer.output_shape)
    (stride_h, stride_w), (pad_top, pad_left) = layer.strides, layer.padding
    input_zero_point, requant = layer.input_zero_point, layer.requant
    pointwise = is_pointwise(layer.weight_shape, layer.padding)
    if pointwise and (stride_h, stride_w) == (1, 1):
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
                      f"    {out('x', 'c')} = {requant.script_expr('acc[0]', 'c')}",
                      f"    {out('x', 'c + 1')} = {requant.script_expr('acc[1]', 'c + 1')}"]
        if out_channels % 2:
            lines.append(f"{out('x', last)} = {requant.script_expr(single, str(last))}")
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
                lines.append(f"    {out(f'x + {dx}', channel)} = {requant.script_expr(f'acc[{index}]', channel)}")
        lines = [_substitute(line, x) for line in lines]
        if out_channels % 2:
            lines += [_substitute(line, x) for line in pixel_lines("x")[-1:]]
            lines += [_substitute(line, f"({x} + 1)") for line in pixel_lines("x")[-1:]]
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
         f'           bias: T.Buffer(({out_channels},), "int32"){requant.script_params(out_channels)},',
         f'           output: T.Buffer(({out_h * out_w * out_channels},), "int8")):',
         '    acc = T.alloc_buffer((4,), "int32")'] + wide + ["    " + line for line in body]) + "\n"
    return _parse(source), requant.script_values()


def _substitute(line: str, x: str) -> str:
    """``x`` -> the pixel's expression, ``c`` -> the pair's first channel (spelled out: a scalar
    binding would become a local allocation, which the unpacked-ABI lowering refuses)."""
    return re.sub(r"\bc\b", "(pair * 2)", re.sub(r"\bx\b", x, line))


def _paired_source(name, input_size, weight_size, channels, output_size, requant, loops, pair, single, out_base):
    """A kernel over output pixels (``loops``) and pairs of output channels ``c``, ``c + 1``."""
    indent = "    " * (len(loops) + 1)
    lines = ["@T.prim_func",
             f'def {name}(input: T.Buffer(({input_size},), "int8"), weight: T.Buffer(({weight_size},), "int8"),',
             f'         bias: T.Buffer(({channels},), "int32"){requant.script_params(channels)},',
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
                f"output[{out_base} + c] = {requant.script_expr('acc[0]', 'c')}",
                f"output[{out_base} + c + 1] = {requant.script_expr('acc[1]', 'c + 1')}"]
        lines.append(indent + f"for pair in range({channels // 2}):")
        lines += [indent + "    " + re.sub(r"\bc\b", "(pair * 2)", line) for line in body]
    if channels % 2:
        last = channels - 1
        lines.append(indent + f"output[{out_base} + {last}] = {requant.script_expr(single, str(last))}")
    return "\n".join(lines) + "\n"


def depthwise_conv2d_windows(layer: ConvLayer, interior: bool = False):
    """DEPTHWISE_CONV_2D (dilation 1): per output pixel and four channels, ``mtp_depthwise4_s8``
    over the clipped window (depth multiplier 1, channels a multiple of 4); otherwise per output
    ``mtp_depthwise_window_s8``. ``interior`` (a tuning knob): pixels whose window is inside the
    input call the micro-kernel with the window's size as constants (once inlined, at opt O2, gcc
    unrolls the taps and addresses them by immediate offsets); the border pixels as before."""
    _, height, width, channels = (int(d) for d in layer.input_shape)
    _, kernel_h, kernel_w, out_channels = (int(d) for d in layer.weight_shape)
    _, out_h, out_w, _ = (int(d) for d in layer.output_shape)
    (stride_h, stride_w), (pad_top, pad_left) = layer.strides, layer.padding
    depth_multiplier, input_zero_point, requant = layer.depth_multiplier, layer.input_zero_point, layer.requant
    ky0, rows = _clip(f"y * {stride_h} - {pad_top}", kernel_h, height)
    kx0, cols = _clip(f"x * {stride_w} - {pad_left}", kernel_w, width)
    if depthwise_per_pixel(layer.input_shape, depth_multiplier):
        a = f"((y * {stride_h} - {pad_top} + {ky0}) * {width} + x * {stride_w} - {pad_left} + {kx0}) * {channels}"
        b = f"({ky0} * {kernel_w} + {kx0}) * {channels}"
        call = (f'T.call_extern("int32", "mtp_depthwise_pixel_s8", T.address_of(input[{a}]), '
                f'T.address_of(weight[{b}]), T.address_of(bias[0]), {rows}, {cols}, {width * channels}, '
                f'{kernel_w * channels}, {channels}, {-input_zero_point}, T.address_of(acc[0]))')
        lines = ["@T.prim_func",
                 f'def depthwise_conv2d(input: T.Buffer(({height * width * channels},), "int8"),',
                 f'                     weight: T.Buffer(({kernel_h * kernel_w * channels},), "int8"),',
                 f'                     bias: T.Buffer(({channels},), "int32"){requant.script_params(channels)},',
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
                 f"                output[(y * {out_w} + x) * {channels} + c] = {requant.script_expr('acc[c]', 'c')}"]
        return _parse("\n".join(lines) + "\n"), requant.script_values()
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
                     bias: T.Buffer(({out_channels},), "int32"){requant.script_params(out_channels)},
                     output: T.Buffer(({out_h * out_w * out_channels},), "int8")):
    for y in range({out_h}):
        for x in range({out_w}):
            for o in range({out_channels}):
                output[(y * {out_w} + x) * {out_channels} + o] = {requant.script_expr(acc, "o")}
'''
    return _parse(source), requant.script_values()


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
             f'                    bias: T.Buffer(({units},), "int32"){requant.script_params(units)},',
             f'                    output: T.Buffer(({batches * units},), "int8")):',
             '    acc = T.alloc_buffer((4,), "int32")',
             f"    for b in range({batches}):",
             f"        for g in range({units // 4}):"]
    lines += [f"            acc[{j}] = bias[g * 4 + {j}]" for j in range(4)]
    lines.append(f'            T.evaluate(T.call_extern("int32", "mtp_dot4_interleaved_s8", '
                 f'T.address_of(input[b * {depth}]), T.address_of(weight[g * {4 * depth}]), {depth}, '
                 f'T.address_of(acc[0])))')
    lines += [f"            output[b * {units} + g * 4 + {j}] = {requant.script_expr(f'acc[{j}]', f'g * 4 + {j}')}"
              for j in range(4)]
    return _parse("\n".join(lines) + "\n"), requant.script_values()


def fully_connected_dot(batches: int, depth: int, units: int, requant: Requant):
    """FULLY_CONNECTED: per pair of output units, ``mtp_dot2_s8`` over the input row and the two
    weight rows; the input offset is folded into the bias (``bias`` here is the folded one)."""
    return _parse(_paired_source(
        "fully_connected", batches * depth, units * depth, units, batches * units, requant, [("b", batches)],
        pair=(f'T.call_extern("int32", "mtp_dot2_s8", T.address_of(input[b * {depth}]), '
              f'T.address_of(weight[c * {depth}]), {depth}, {depth}, 0, T.address_of(acc[0]))'),
        single=(f'T.call_extern("int32", "mtp_dot_s8", T.address_of(input[b * {depth}]), '
                f'T.address_of(weight[{(units - 1) * depth}]), {depth}, 0, bias[{units - 1}])'),
        out_base=f"b * {units}")), requant.script_values()
