/* TFLite / gemmlowp fixed-point arithmetic, as tflite-micro's reference kernels do it. Forced
 * inline: at -Os gcc would call them once per output. */
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
#include <arm_acle.h>
#endif
#if defined(__GNUC__)
#define MTP_INLINE inline __attribute__((always_inline))
#else
#define MTP_INLINE inline
#endif
static MTP_INLINE int32_t mtp_srdhm(int32_t a, int32_t b) {
  /* SaturatingRoundingDoublingHighMul; a == b == INT32_MIN cannot occur (b is a multiplier).
   * gemmlowp truncates (product + nudge) / 2^31 toward zero with nudge = 2^30 or 1 - 2^30 by
   * sign; for a negative product, truncating t equals flooring t + 2^31 - 1 = product + 2^30,
   * so both cases are one arithmetic shift (SMULL, ADDS/ADC, shifts on Cortex-M). */
  return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 30)) >> 31);
}
static MTP_INLINE int32_t mtp_rdbpot(int32_t x, int32_t exponent) {
  /* RoundingDivideByPOT: divide by 2^exponent, rounding half away from zero. */
  int32_t mask = (int32_t)((1U << exponent) - 1U);
  int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + ((x & mask) > threshold ? 1 : 0);
}
static MTP_INLINE int32_t mtp_requantize(int32_t acc, int32_t multiplier, int32_t left_shift, int32_t right_shift) {
  /* MultiplyByQuantizedMultiplier (double rounding, as tflite-micro without TFLITE_SINGLE_ROUNDING). */
  return mtp_rdbpot(mtp_srdhm((int32_t)((uint32_t)acc << left_shift), multiplier), right_shift);
}
static MTP_INLINE int32_t mtp_requantize_right(int32_t acc, int32_t multiplier, int32_t right_shift,
                                                int32_t negative_below) {
  /* mtp_requantize for right_shift >= 1 in one 64-bit multiply-accumulate. With t = acc *
   * multiplier + 2^30, SRDHM is floor(t / 2^31) and RoundingDivideByPOT(x, e) is
   * floor((x + 2^(e-1) - [x < 0]) / 2^e); x < 0 exactly when t < 0, and nested floors of integer
   * divisions merge: floor((t + (2^(e-1) - [t < 0]) * 2^31) / 2^(31 + e)). t < 0 exactly when
   * acc < negative_below (computed at compile time from the multiplier). */
  const int32_t half = (int32_t)(1U << (right_shift - 1)) - (acc < negative_below ? 1 : 0);
  const int64_t sum = (int64_t)acc * multiplier + ((int64_t)half << 31) + (1LL << 30);
  return (int32_t)(sum >> 32) >> (right_shift - 1);
}
static MTP_INLINE int32_t mtp_requantize_floor(int32_t acc, int32_t multiplier, int64_t rounding,
                                                int32_t shift_minus_one) {
  /* mtp_requantize_right without the correction for negative values (rounding = 2^30 + 2^(30 + e),
   * shift_minus_one = e - 1): floor((acc * multiplier + rounding) / 2^(31 + e)). It differs from
   * it only where SRDHM's result is negative, where both are <= 0; a kernel uses it only when its
   * activation minimum is at or above the output zero point, so such outputs clamp to that
   * minimum either way. One SMLAL and one shift. */
  return (int32_t)(((int64_t)acc * multiplier + rounding) >> 32) >> shift_minus_one;
}
static MTP_INLINE int32_t mtp_clamp(int32_t x, int32_t low, int32_t high) {
  /* The activation clamp; the full int8 range is one SSAT where the core has it. */
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
  if (low == -128 && high == 127) {
    return __ssat(x, 8);
  }
#endif
  return x < low ? low : (x > high ? high : x);
}
static MTP_INLINE int32_t mtp_saturating_shift_left(int32_t x, int32_t exponent) {
  int32_t threshold = (int32_t)((1U << (31 - exponent)) - 1U);
  return x > threshold ? INT32_MAX : (x < -threshold ? INT32_MIN : (int32_t)((uint32_t)x << exponent));
}
