"""Integer kernels over the C micro-kernels, written loop by loop in TVMScript: CONV_2D, DEPTHWISE_CONV_2D
and FULLY_CONNECTED (dilation 1). Bit-exact with tflite-micro's reference kernels.

Each output element is one micro-kernel call (``c/mtp_micro_kernels.h``) over its window, clipped
to the input at run time (the clip is a few integer operations per output, not a test per
multiply-accumulate), followed by the requantization (``Requant.script_expr``). Buffers are flat;
indices are computed in TIR. Each builder returns ``(tirx.PrimFunc, constants)`` as the TE builders
do (``qnn_te.py``); which builder a layer takes is ``qnn_choices.py``'s decision. Register
blocking and the loop structure are the schedule: docs/int8-kernels.md.

The kernels are written with ``_Script``, statement by statement; every index is built by a small
function of the loop variables' expressions (``pixel`` for an output pixel, ``c`` for a pair's
first channel), never by rewriting text afterwards. Those expressions are spelled out where they
are used: a scalar binding would become a local allocation, which the unpacked-ABI lowering refuses.
"""

from __future__ import annotations

import contextlib
from typing import List, Sequence, Tuple

from .qnn_choices import ConvLayer, depthwise_per_pixel, is_pointwise
from .qnn_requant import Requant

PAIR = "(pair * 2)"  # the first channel (unit) of the pair of loop ``pair``


def _parse(source: str):
    import tvm

    return tvm.script.from_source(source)


class _Script:
    """One TVMScript PrimFunc: ``line`` adds statements at the current depth, ``block`` a compound
    statement (``for``, ``if``, ``else``) whose body the ``with`` block writes one level deeper."""

    def __init__(self, name: str, params: Sequence[Tuple[str, int, str]]):
        """``params``: (name, element count, dtype) of each flat buffer parameter, in order."""
        buffers = ", ".join(f'{param}: T.Buffer(({count},), "{dtype}")' for param, count, dtype in params)
        self._lines = ["@T.prim_func", f"def {name}({buffers}):"]
        self._depth = 1

    def line(self, *statements: str) -> None:
        self._lines += ["    " * self._depth + statement for statement in statements]

    @contextlib.contextmanager
    def block(self, header: str):
        self.line(header + ":")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def parse(self):
        return _parse("\n".join(self._lines) + "\n")


def _kernel_params(input_size: int, weight_size: int, channels: int, output_size: int, requant: Requant):
    return ([("input", input_size, "int8"), ("weight", weight_size, "int8"), ("bias", channels, "int32")]
            + requant.script_params(channels) + [("output", output_size, "int8")])


def _extern(name: str, *args) -> str:
    return f'T.call_extern("int32", "{name}", {", ".join(str(arg) for arg in args)})'


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
    c = PAIR

    def gather(pixel: str, slot: int) -> str:
        y0 = f"T.floordiv({pixel}, {out_w}) * {stride_h} - {pad_top}"
        x0 = f"T.floormod({pixel}, {out_w}) * {stride_w} - {pad_left}"
        gathered = _extern("mtp_gather_window_s8", "T.address_of(input[0])", height, width, channels, y0, x0, kernel_h,
                           kernel_w, input_zero_point, f"T.address_of(windows[{slot * size}])")
        return f"T.evaluate({gathered})"

    def out(pixel: str, channel) -> str:
        return f"output[({pixel}) * {out_channels} + {channel}]"

    def single(slot: int) -> str:
        return _extern("mtp_dot_s8", f"T.address_of(windows[{slot * size}])", f"T.address_of(weight[{last * size}])",
                       size, offset, f"bias[{last}]")

    script = _Script("conv2d", _kernel_params(height * width * channels, out_channels * size, out_channels,
                                              pixels * out_channels, requant))
    script.line('acc = T.alloc_buffer((4,), "int32")', f'windows = T.alloc_buffer(({2 * size},), "int8")',
                # TVM sizes a local buffer by the elements its TIR touches, and the micro-kernels'
                # pointers name only each window's first byte: one store to the last gives the extent.
                f"windows[{2 * size - 1}] = T.int8({input_zero_point})")
    if widened and pixels >= 2 and out_channels >= 2:
        script.line(f'wide = T.alloc_buffer(({2 * size},), "int16")', f"wide[{2 * size - 1}] = T.int16(0)")
    if pixels >= 2:
        with script.block(f"for pp in range({pixels // 2})"):
            script.line(gather("pp * 2", 0), gather("pp * 2 + 1", 1))
            if out_channels >= 2:
                if widened:
                    widen = _extern("mtp_widen_s8", "T.address_of(windows[0])", 2 * size, offset,
                                    "T.address_of(wide[0])")
                    script.line(f"T.evaluate({widen})")
                    dot = _extern("mtp_dot2x2_widened_s8", "T.address_of(wide[0])", size,
                                  f"T.address_of(weight[{c} * {size}])", size, size, "T.address_of(acc[0])")
                else:
                    dot = _extern("mtp_dot2x2_s8", "T.address_of(windows[0])", size,
                                  f"T.address_of(weight[{c} * {size}])", size, size, offset, "T.address_of(acc[0])")
                with script.block(f"for pair in range({out_channels // 2})"):
                    script.line(f"acc[0] = bias[{c}]", f"acc[1] = bias[{c} + 1]", f"acc[2] = bias[{c}]",
                                f"acc[3] = bias[{c} + 1]", f"T.evaluate({dot})")
                    for index, (dp, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                        script.line(f"{out(f'pp * 2 + {dp}', f'{c} + {dc}')} = "
                                    f"{requant.script_expr(f'acc[{index}]', f'{c} + {dc}')}")
            if out_channels % 2:
                script.line(*(f"{out(f'pp * 2 + {slot}', last)} = {requant.script_expr(single(slot), str(last))}"
                              for slot in (0, 1)))
    if pixels % 2:
        pixel = str(pixels - 1)
        script.line(gather(pixel, 0))
        if out_channels >= 2:
            dot = _extern("mtp_dot2_s8", "T.address_of(windows[0])", f"T.address_of(weight[{c} * {size}])", size,
                          size, offset, "T.address_of(acc[0])")
            with script.block(f"for pair in range({out_channels // 2})"):
                script.line(f"acc[0] = bias[{c}]", f"acc[1] = bias[{c} + 1]", f"T.evaluate({dot})",
                            f"{out(pixel, c)} = {requant.script_expr('acc[0]', c)}",
                            f"{out(pixel, f'{c} + 1')} = {requant.script_expr('acc[1]', f'{c} + 1')}")
        if out_channels % 2:
            script.line(f"{out(pixel, last)} = {requant.script_expr(single(0), str(last))}")
    return script.parse(), requant.script_values()


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
    if pointwise:
        ky0 = "0"
    filter_size = kernel_h * kernel_w * channels
    offset = -input_zero_point
    last = out_channels - 1
    c = PAIR

    # Expressions of the output pixel ``pixel`` (its x; y is the loop variable) and a channel.
    def kx0(pixel: str) -> str:
        return "0" if pointwise else _clip(f"{pixel} * {stride_w} - {pad_left}", kernel_w, width)[0]

    def cols(pixel: str) -> str:
        return _clip(f"{pixel} * {stride_w} - {pad_left}", kernel_w, width)[1]

    def a(pixel: str) -> str:
        return (f"((y * {stride_h} - {pad_top} + {ky0}) * {width} + {pixel} * {stride_w} - {pad_left} + "
                f"{kx0(pixel)}) * {channels}")

    def b(channel, pixel: str) -> str:
        return f"(({channel} * {kernel_h} + {ky0}) * {kernel_w} + {kx0(pixel)}) * {channels}"

    def out(pixel: str, channel) -> str:
        return f"output[(y * {out_w} + {pixel}) * {out_channels} + {channel}]"

    def window(pixel: str) -> List[str]:
        return [rows, f"{cols(pixel)} * {channels}", str(width * channels), str(kernel_w * channels), str(offset)]

    def address(buffer: str, index: str) -> str:
        return f"T.address_of({buffer}[{index}])"

    def pair_call(pixel: str) -> str:
        if pointwise:
            return _extern("mtp_dot2_s8", address("input", a(pixel)), address("weight", b(c, pixel)), filter_size,
                           channels, offset, "T.address_of(acc[0])")
        return _extern("mtp_window2_s8", address("input", a(pixel)), address("weight", b(c, pixel)), filter_size,
                       *window(pixel), "T.address_of(acc[0])")

    def quad_call(pixel: str) -> str:
        if widened:
            return _extern("mtp_dot2x2_widened_s8", "T.address_of(wide[0])", channels,
                           address("weight", b(c, pixel)), filter_size, channels, "T.address_of(acc[0])")
        if pointwise:
            return _extern("mtp_dot2x2_s8", address("input", a(pixel)), stride_w * channels,
                           address("weight", b(c, pixel)), filter_size, channels, offset, "T.address_of(acc[0])")
        return _extern("mtp_window2x2_s8", address("input", a(pixel)), stride_w * channels,
                       address("weight", b(c, pixel)), filter_size, *window(pixel), "T.address_of(acc[0])")

    def odd_channel(pixel: str) -> None:
        single = _extern("mtp_window_s8", address("input", a(pixel)), address("weight", b(last, pixel)),
                         *window(pixel), f"bias[{last}]")
        script.line(f"{out(pixel, last)} = {requant.script_expr(single, str(last))}")

    def one_pixel(pixel: str) -> None:
        """Pairs of channels, then an odd last channel."""
        if out_channels >= 2:
            with script.block(f"for pair in range({out_channels // 2})"):
                script.line(f"acc[0] = bias[{c}]", f"acc[1] = bias[{c} + 1]", f"T.evaluate({pair_call(pixel)})",
                            f"{out(pixel, c)} = {requant.script_expr('acc[0]', c)}",
                            f"{out(pixel, f'{c} + 1')} = {requant.script_expr('acc[1]', f'{c} + 1')}")
        if out_channels % 2:
            odd_channel(pixel)

    def two_pixels(pixel: str) -> None:
        """Output pixels ``pixel`` and ``pixel + 1``, whose windows clip alike: two pixels x two channels per call."""
        second = f"({pixel} + 1)"
        if out_channels >= 2:
            if widened:
                for slot, each in enumerate((pixel, second)):
                    widen = _extern("mtp_widen_s8", address("input", a(each)), channels, offset,
                                    f"T.address_of(wide[{slot * channels}])")
                    script.line(f"T.evaluate({widen})")
            with script.block(f"for pair in range({out_channels // 2})"):
                script.line(f"acc[0] = bias[{c}]", f"acc[1] = bias[{c} + 1]", f"acc[2] = bias[{c}]",
                            f"acc[3] = bias[{c} + 1]", f"T.evaluate({quad_call(pixel)})")
                for index, (dx, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                    channel = f"{c} + {dc}"
                    script.line(f"{out(f'{pixel} + {dx}', channel)} = {requant.script_expr(f'acc[{index}]', channel)}")
        if out_channels % 2:
            odd_channel(pixel)
            odd_channel(second)

    script = _Script("conv2d", _kernel_params(height * width * channels, out_channels * filter_size, out_channels,
                                              out_h * out_w * out_channels, requant))
    script.line('acc = T.alloc_buffer((4,), "int32")')
    if widened and pixel_pairs and out_w >= 2 and out_channels >= 2:
        script.line(f'wide = T.alloc_buffer(({2 * channels},), "int16")', f"wide[{2 * channels - 1}] = T.int16(0)")
    with script.block(f"for y in range({out_h})"):
        if not pixel_pairs:
            with script.block(f"for x in range({out_w})"):
                one_pixel("x")
        elif out_w >= 2:
            with script.block(f"for xp in range({out_w // 2})"):
                left, right = "(xp * 2)", "(xp * 2 + 1)"
                if pointwise:
                    two_pixels(left)
                else:
                    with script.block(f"if {kx0(left)} == {kx0(right)} and {cols(left)} == {cols(right)}"):
                        two_pixels(left)
                    with script.block("else"):
                        one_pixel(left)
                        one_pixel(right)
        if out_w % 2 and pixel_pairs:
            one_pixel(str(out_w - 1))
    return script.parse(), requant.script_values()


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
    a = f"((y * {stride_h} - {pad_top} + {ky0}) * {width} + x * {stride_w} - {pad_left} + {kx0}) * {channels}"
    if depthwise_per_pixel(layer.input_shape, depth_multiplier):
        b = f"({ky0} * {kernel_w} + {kx0}) * {channels}"

        def call(window_rows, window_cols) -> str:
            return _extern("mtp_depthwise_pixel_s8", f"T.address_of(input[{a}])", f"T.address_of(weight[{b}])",
                           "T.address_of(bias[0])", window_rows, window_cols, width * channels,
                           kernel_w * channels, channels, -input_zero_point, "T.address_of(acc[0])")

        script = _Script("depthwise_conv2d", _kernel_params(height * width * channels, kernel_h * kernel_w * channels,
                                                            channels, out_h * out_w * channels, requant))
        script.line(f'acc = T.alloc_buffer(({channels},), "int32")')
        with script.block(f"for y in range({out_h})"), script.block(f"for x in range({out_w})"):
            if interior:
                inside = (f"y * {stride_h} - {pad_top} >= 0 and y * {stride_h} - {pad_top} + {kernel_h} <= {height} "
                          f"and x * {stride_w} - {pad_left} >= 0 and x * {stride_w} - {pad_left} + {kernel_w} <= "
                          f"{width}")
                with script.block(f"if {inside}"):
                    script.line(f"T.evaluate({call(kernel_h, kernel_w)})")
                with script.block("else"):
                    script.line(f"T.evaluate({call(rows, cols)})")
            else:
                script.line(f"T.evaluate({call(rows, cols)})")
            with script.block(f"for c in range({channels})"):
                script.line(f"output[(y * {out_w} + x) * {channels} + c] = {requant.script_expr('acc[c]', 'c')}")
        return script.parse(), requant.script_values()
    b = f"({ky0} * {kernel_w} + {kx0}) * {out_channels} + o"
    acc = _extern("mtp_depthwise_window_s8", f"T.address_of(input[{a} + T.floordiv(o, {depth_multiplier})])",
                  f"T.address_of(weight[{b}])", rows, cols, width * channels, channels, kernel_w * out_channels,
                  out_channels, -input_zero_point, "bias[o]")
    script = _Script("depthwise_conv2d", _kernel_params(height * width * channels, kernel_h * kernel_w * out_channels,
                                                        out_channels, out_h * out_w * out_channels, requant))
    with script.block(f"for y in range({out_h})"), script.block(f"for x in range({out_w})"), \
            script.block(f"for o in range({out_channels})"):
        script.line(f"output[(y * {out_w} + x) * {out_channels} + o] = {requant.script_expr(acc, 'o')}")
    return script.parse(), requant.script_values()


def interleave_by_four(weights):
    """[U, D] weights (U and D multiples of 4) in mtp_dot4_interleaved_s8's order: per group of
    four units and per four inputs, the four units' four bytes in turn."""
    units, depth = weights.shape
    return weights.reshape(units // 4, 4, depth // 4, 4).transpose(0, 2, 1, 3).reshape(units, depth).copy()


def fully_connected_interleaved(batches: int, depth: int, units: int, requant: Requant):
    """FULLY_CONNECTED with U and D multiples of 4: per group of four units, one
    ``mtp_dot4_interleaved_s8`` over weights laid out by ``interleave_by_four``; folded bias."""
    script = _Script("fully_connected", _kernel_params(batches * depth, units * depth, units, batches * units, requant))
    script.line('acc = T.alloc_buffer((4,), "int32")')
    with script.block(f"for b in range({batches})"), script.block(f"for g in range({units // 4})"):
        script.line(*(f"acc[{j}] = bias[g * 4 + {j}]" for j in range(4)))
        dot = _extern("mtp_dot4_interleaved_s8", f"T.address_of(input[b * {depth}])",
                      f"T.address_of(weight[g * {4 * depth}])", depth, "T.address_of(acc[0])")
        script.line(f"T.evaluate({dot})")
        script.line(*(f"output[b * {units} + g * 4 + {j}] = {requant.script_expr(f'acc[{j}]', f'g * 4 + {j}')}"
                      for j in range(4)))
    return script.parse(), requant.script_values()


def fully_connected_dot(batches: int, depth: int, units: int, requant: Requant):
    """FULLY_CONNECTED: per pair of output units, ``mtp_dot2_s8`` over the input row and the two
    weight rows; the input offset is folded into the bias (``bias`` here is the folded one)."""
    c = PAIR
    last = units - 1
    script = _Script("fully_connected", _kernel_params(batches * depth, units * depth, units, batches * units, requant))
    script.line('acc = T.alloc_buffer((2,), "int32")')
    with script.block(f"for b in range({batches})"):
        if units >= 2:
            pair = _extern("mtp_dot2_s8", f"T.address_of(input[b * {depth}])", f"T.address_of(weight[{c} * {depth}])",
                           depth, depth, 0, "T.address_of(acc[0])")
            with script.block(f"for pair in range({units // 2})"):
                script.line(f"acc[0] = bias[{c}]", f"acc[1] = bias[{c} + 1]", f"T.evaluate({pair})",
                            f"output[b * {units} + {c}] = {requant.script_expr('acc[0]', c)}",
                            f"output[b * {units} + {c} + 1] = {requant.script_expr('acc[1]', f'{c} + 1')}")
        if units % 2:
            single = _extern("mtp_dot_s8", f"T.address_of(input[b * {depth}])",
                             f"T.address_of(weight[{last * depth}])", depth, 0, f"bias[{last}]")
            script.line(f"output[b * {units} + {last}] = {requant.script_expr(single, str(last))}")
    return script.parse(), requant.script_values()
