"""Requantization, as tflite-micro's reference kernels do it: the fixed-point builders and ``Requant``.

The builders (``srdhm``, ``rounding_divide_by_pot``, ``multiply_by_quantized_multiplier``,
``requantize_right_or_general``, ``saturating_shift_left``, ``clamp_to_int8``) are TIR calls of the
C helpers in ``c/mtp_fixed_point.h`` (``qnn_micro_kernels.py`` pastes them into the kernels'
source): written as TIR expressions they would repeat each operand up to six times per use, which
makes TVM's simplifier crawl and the printed C unreadable.

``Requant`` holds one layer's compile-time parameters (``qnn.py`` computes them with
``fixed_point.py``) and is the one place that decides which requantization form a kernel emits:
the two-step ``mtp_requantize`` (left shifts; and every TE kernel), the one-step
``mtp_requantize_right`` (right shifts) or ``mtp_requantize_floor`` (right shifts whose negative
values clamp anyway), with the parameters as immediates (per tensor) or constant arrays (per
channel). It states them for the TE builders (``placeholders``, ``apply``) and for the TVMScript
builders (``script_params``, ``script_values``, ``script_expr``). See docs/int8-kernels.md.
"""

from __future__ import annotations

from typing import Sequence

from tvm import te, tirx

I32 = "int32"


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


def saturating_shift_left(x, exponent: int):
    return _extern("mtp_saturating_shift_left", x, exponent)


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

    def _script_arrays(self):
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
        """The TE kernels' requantization of ``acc`` for ``channel`` (``tensors``: ``placeholders``)."""
        if tensors:
            left = tensors[2][channel] if len(tensors) > 2 else 0
            value = multiply_by_quantized_multiplier(acc, tensors[0][channel], left, tensors[1][channel])
        else:
            shift = self.shifts[0]
            value = multiply_by_quantized_multiplier(acc, self.multipliers[0], max(shift, 0), max(-shift, 0))
        return clamp_to_int8(value + _i32(self.output_zero_point), self.act_min, self.act_max)


    def script_params(self, channels: int):
        """The per-channel constant arrays as TVMScript buffer parameters (name, element count, dtype),
        read after ``bias``; none per tensor."""
        return [(name, channels, str(values.dtype)) for name, values in self._script_arrays()]

    def script_values(self):
        """The values of ``script_params``' arrays, in order: the constants a TVMScript kernel reads."""
        return [values for _, values in self._script_arrays()]

    def script_expr(self, acc: str, channel: str) -> str:
        """The TVMScript expression of the requantized, clamped int8 output of ``acc`` for ``channel``."""
        if self.per_channel and self.negatives_clamp:
            call = (f'T.call_extern("int32", "mtp_requantize_floor", {acc}, multiplier[{channel}], '
                    f'rounding[{channel}], shift_minus_one[{channel}])')
        elif self.negatives_clamp:
            call = (f'T.call_extern("int32", "mtp_requantize_floor", {acc}, {self.multipliers[0]}, '
                    f'T.int64({self.floor_rounding(0)}), {-self.shifts[0] - 1})')
        elif self.per_channel and self.right_shifts_only:
            call = (f'T.call_extern("int32", "mtp_requantize_right", {acc}, multiplier[{channel}], '
                    f'right_shift[{channel}], negative_below[{channel}])')
        elif self.per_channel:
            left = f"left_shift[{channel}]" if self.any_left_shift else "0"
            call = (f'T.call_extern("int32", "mtp_requantize", {acc}, multiplier[{channel}], {left}, '
                    f'right_shift[{channel}])')
        elif self.right_shifts_only:
            call = (f'T.call_extern("int32", "mtp_requantize_right", {acc}, {self.multipliers[0]}, '
                    f'{-self.shifts[0]}, {self.negative_below(0)})')
        else:
            shift = self.shifts[0]
            call = (f'T.call_extern("int32", "mtp_requantize", {acc}, {self.multipliers[0]}, {max(shift, 0)}, '
                    f'{max(-shift, 0)})')
        return (f'T.Cast("int8", T.call_extern("int32", "mtp_clamp", {call} + {self.output_zero_point}, '
                f'{self.act_min}, {self.act_max}))')
