/*
 * Micro-kernels over inputs widened once to the int16 lanes SMLAD reads (tuning knobs `widened`
 * and `gathered_widened` of qnn_choices.py). Included in a model's kernels only when a kernel
 * uses them, after MICRO_KERNELS_C (MTP_DSP, MTP_HOT, mtp_load_s8x4, mtp_ror8).
 *
 * Layout: per 4 int8 inputs x0..x3 (plus the input offset), the int16 values x0, x2, x1, x3:
 * on DSP cores these are the two words SXTAB16 makes of the input word and of its ROR #8, so a
 * weight word's SXTB16 halves pair with them in SMLAD exactly as in mtp_dot2x2_s8. Widening a
 * pixel's inputs once instead of once per pair of output channels halves the inner loop's input
 * work; the sums are the same int32 values (the same products, added in another order, with
 * C's and SMLAD's wrapping 32-bit accumulation). n is a multiple of 4 throughout.
 */
static inline int32_t mtp_load_s16x2(const int16_t* p) {
  int32_t word;
  memcpy(&word, p, 4);
  return word;
}
/* n inputs a (+ a_offset) -> n int16 values at out, in the layout above. */
MTP_HOT static inline void mtp_widen_s8(const int8_t* restrict a, int32_t n, int32_t a_offset,
                                        int16_t* restrict out) {
#ifdef MTP_DSP
  const int16x2_t offsets = (int16x2_t)(((uint32_t)a_offset & 0xFFFFU) | ((uint32_t)a_offset << 16));
  for (int32_t quads = n >> 2; quads > 0; --quads) {
    const int32_t a_word = mtp_load_s8x4(a);
    const int32_t even = __sxtab16(offsets, (int8x4_t)a_word);
    const int32_t odd = __sxtab16(offsets, (int8x4_t)mtp_ror8(a_word));
    memcpy(out, &even, 4);
    memcpy(out + 2, &odd, 4);
    a += 4;
    out += 4;
  }
#else
  for (int32_t quads = n >> 2; quads > 0; --quads) {
    out[0] = (int16_t)((int32_t)a[0] + a_offset);
    out[1] = (int16_t)((int32_t)a[2] + a_offset);
    out[2] = (int16_t)((int32_t)a[1] + a_offset);
    out[3] = (int16_t)((int32_t)a[3] + a_offset);
    a += 4;
    out += 4;
  }
#endif
}
/* Two pixels (widened inputs a and a + a_next) x two output channels (int8 weights b and
 * b + b_next), n products each: acc = {(a, b), (a, b1), (a1, b), (a1, b1)}, as mtp_dot2x2_s8. */
MTP_HOT static inline void mtp_dot2x2_widened_s8(const int16_t* restrict a, int32_t a_next,
                                                 const int8_t* restrict b, int32_t b_next, int32_t n,
                                                 int32_t* restrict acc) {
  const int16_t* restrict a1 = a + a_next;
  const int8_t* restrict b1 = b + b_next;
  int32_t acc00 = acc[0], acc01 = acc[1], acc10 = acc[2], acc11 = acc[3];
  for (int32_t quads = n >> 2; quads > 0; --quads) {
#ifdef MTP_DSP
    const int32_t b0_word = mtp_load_s8x4(b);
    const int32_t b1_word = mtp_load_s8x4(b1);
    const int32_t b0_even = __sxtb16((int8x4_t)b0_word);
    const int32_t b0_odd = __sxtb16((int8x4_t)mtp_ror8(b0_word));
    const int32_t b1_even = __sxtb16((int8x4_t)b1_word);
    const int32_t b1_odd = __sxtb16((int8x4_t)mtp_ror8(b1_word));
    int32_t a_even = mtp_load_s16x2(a);
    int32_t a_odd = mtp_load_s16x2(a + 2);
    acc00 = __smlad(a_even, b0_even, acc00);
    acc00 = __smlad(a_odd, b0_odd, acc00);
    acc01 = __smlad(a_even, b1_even, acc01);
    acc01 = __smlad(a_odd, b1_odd, acc01);
    a_even = mtp_load_s16x2(a1);
    a_odd = mtp_load_s16x2(a1 + 2);
    acc10 = __smlad(a_even, b0_even, acc10);
    acc10 = __smlad(a_odd, b0_odd, acc10);
    acc11 = __smlad(a_even, b1_even, acc11);
    acc11 = __smlad(a_odd, b1_odd, acc11);
#else
    /* a holds x0, x2, x1, x3: weight j pairs with a[lane[j]]. */
    static const int32_t lane[4] = {0, 2, 1, 3};
    for (int32_t j = 0; j < 4; ++j) {
      const int32_t b0_value = (int32_t)b[j];
      const int32_t b1_value = (int32_t)b1[j];
      acc00 += (int32_t)a[lane[j]] * b0_value;
      acc01 += (int32_t)a[lane[j]] * b1_value;
      acc10 += (int32_t)a1[lane[j]] * b0_value;
      acc11 += (int32_t)a1[lane[j]] * b1_value;
    }
#endif
    a += 4;
    a1 += 4;
    b += 4;
    b1 += 4;
  }
  acc[0] = acc00;
  acc[1] = acc01;
  acc[2] = acc10;
  acc[3] = acc11;
}
