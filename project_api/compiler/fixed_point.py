"""TFLite's fixed-point arithmetic, in Python integers, for what the compiler computes ahead of time.

The int8 kernels (``qnn_requant.py``) requantize at run time exactly as tflite-micro's reference
kernels do; everything that depends only on the model — multipliers and shifts, the softmax
exponential table — is computed here, once, at compile time, with the same rounding:
``QuantizeMultiplier`` (frexp, round half away from zero), gemmlowp's
``SaturatingRoundingDoublingHighMul`` / ``RoundingDivideByPOT`` and ``exp_on_negative_values``.
Every value is a plain Python ``int`` kept inside int32 range where the C code keeps it there.
"""

from __future__ import annotations

import math
from typing import Tuple

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _wrap32(value: int) -> int:
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def _round_half_away(value: float) -> int:
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def quantize_multiplier(real: float) -> Tuple[int, int]:
    """TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    multiplier = _round_half_away(fraction * (1 << 31))
    if multiplier == (1 << 31):
        multiplier //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return multiplier, shift


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    product = a * b
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    total = product + nudge
    # C's int64 division truncates toward zero.
    quotient = abs(total) // (1 << 31)
    return _wrap32(quotient if total >= 0 else -quotient)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def saturating_rounding_multiply_by_pot(x: int, exponent: int) -> int:
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return _wrap32(x << exponent)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(_wrap32(x * (1 << left)), multiplier), right)


# ---- softmax (gemmlowp fixed point, as tflite-micro's reference int8 softmax) -------------------

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def _mul(a: int, b: int) -> int:
    return saturating_rounding_doubling_high_mul(a, b)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: int) -> int:
    constant_term = 1895147668
    constant_1_over_3 = 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap32(_mul(_wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return _wrap32(constant_term + _mul(constant_term, _wrap32(x + poly)))


def exp_on_negative_values(a: int, integer_bits: int = SOFTMAX_SCALED_DIFF_INTEGER_BITS) -> int:
    """gemmlowp exp_on_negative_values: a is Q(integer_bits).(31-integer_bits), result Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = _wrap32((a & mask) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = _wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                 (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent and remainder & (1 << (fractional_bits + exponent)):
            result = _mul(result, multiplier)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def softmax_parameters(beta: float, input_scale: float) -> Tuple[int, int, int]:
    """tflite-micro's CalculateSoftmaxParams for int8: (input multiplier, left shift, diff_min)."""
    integer_bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    real = min(beta * input_scale * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    return multiplier, left_shift, -radius


def softmax_exp_table(beta: float, input_scale: float):
    """exp(beta * scale * d) in Q0.31 for d = 0, -1, ..., -255 (the difference to the row maximum),
    0 where d is below diff_min (tflite-micro then skips the element), as tflite-micro computes it."""
    multiplier, left_shift, diff_min = softmax_parameters(beta, input_scale)
    table = []
    for d in range(0, -256, -1):
        if d < diff_min:
            table.append(0)
            continue
        rescaled = saturating_rounding_doubling_high_mul(_wrap32(d * (1 << left_shift)), multiplier)
        table.append(exp_on_negative_values(rescaled))
    return table
