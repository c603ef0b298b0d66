#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define MTP_DSP 1
#endif
/* The inner loops are compiled at -O2 whatever the project's level: at -Os gcc keeps the loop
 * counters in memory and recomputes addresses (measured 3.1 vs 2.25 instructions per MAC). */
#if defined(__GNUC__) && !defined(__clang__)
#define MTP_HOT __attribute__((optimize("O2")))
#else
#define MTP_HOT
#endif

static inline int32_t mtp_load_s8x4(const int8_t* p) {
  int32_t word;
  memcpy(&word, p, 4); /* one unaligned LDR on Cortex-M3/M4/M7/M33/M55 */
  return word;
}
static inline int32_t mtp_ror8(int32_t word) {
  /* bytes 1 and 3 into the lanes SXTB16 reads; gcc folds this into the instruction's ROR #8 */
  return (int32_t)(((uint32_t)word >> 8) | ((uint32_t)word << 24));
}
/* Convolution windows clipped to the input: `rows` runs of n contiguous int8 products, the input
 * a advancing by a_stride and the weights b by b_stride per row; each input value gets a_offset
 * (minus the input zero point) before it is multiplied. The accumulators stay in registers
 * across rows; acc comes in holding the biases. A plain dot product is one row. */
/* One output channel: returns acc + the window's sum. */
MTP_HOT static inline int32_t mtp_window_s8(const int8_t* a, const int8_t* b, int32_t rows, int32_t n, int32_t a_stride,
                                            int32_t b_stride, int32_t a_offset, int32_t acc) {
#ifdef MTP_DSP
  const int16x2_t offsets = (int16x2_t)(((uint32_t)a_offset & 0xFFFFU) | ((uint32_t)a_offset << 16));
#endif
  for (int32_t row = 0; row < rows; ++row) {
    const int8_t* restrict a0 = a + row * a_stride;
    const int8_t* restrict b0 = b + row * b_stride;
    int32_t left = n;
#ifdef MTP_DSP
    for (int32_t quads = n >> 2; quads > 0; --quads) {
      const int32_t a_word = mtp_load_s8x4(a0);
      const int32_t b_word = mtp_load_s8x4(b0);
      a0 += 4;
      b0 += 4;
      acc = __smlad(__sxtab16(offsets, (int8x4_t)a_word), __sxtb16((int8x4_t)b_word), acc);
      acc = __smlad(__sxtab16(offsets, (int8x4_t)mtp_ror8(a_word)), __sxtb16((int8x4_t)mtp_ror8(b_word)), acc);
    }
    left = n & 3;
#endif
    for (; left > 0; --left) {
      acc += ((int32_t)*a0++ + a_offset) * (int32_t)*b0++;
    }
  }
  return acc;
}
/* Two output channels (weights b and b + b_next), one run of n products: each input word is
 * loaded and widened once for both. acc[0], acc[1]: the channels. */
MTP_HOT static inline void mtp_dot2_s8(const int8_t* restrict a, const int8_t* restrict b, int32_t b_next, int32_t n,
                                       int32_t a_offset, int32_t* restrict acc) {
  const int8_t* restrict b1 = b + b_next;
  int32_t acc0 = acc[0];
  int32_t acc1 = acc[1];
#ifdef MTP_DSP
  const int16x2_t offsets = (int16x2_t)(((uint32_t)a_offset & 0xFFFFU) | ((uint32_t)a_offset << 16));
  for (int32_t quads = n >> 2; quads > 0; --quads) {
    const int32_t a_word = mtp_load_s8x4(a);
    const int32_t a_even = __sxtab16(offsets, (int8x4_t)a_word);
    const int32_t a_odd = __sxtab16(offsets, (int8x4_t)mtp_ror8(a_word));
    const int32_t b0_word = mtp_load_s8x4(b);
    const int32_t b1_word = mtp_load_s8x4(b1);
    a += 4;
    b += 4;
    b1 += 4;
    acc0 = __smlad(a_even, __sxtb16((int8x4_t)b0_word), acc0);
    acc0 = __smlad(a_odd, __sxtb16((int8x4_t)mtp_ror8(b0_word)), acc0);
    acc1 = __smlad(a_even, __sxtb16((int8x4_t)b1_word), acc1);
    acc1 = __smlad(a_odd, __sxtb16((int8x4_t)mtp_ror8(b1_word)), acc1);
  }
  n &= 3;
#endif
  for (; n > 0; --n) {
    const int32_t a_value = (int32_t)*a++ + a_offset;
    acc0 += a_value * (int32_t)*b++;
    acc1 += a_value * (int32_t)*b1++;
  }
  acc[0] = acc0;
  acc[1] = acc1;
}
/* mtp_dot2_s8 over a clipped window, row by row (see mtp_dot2x2_s8 on the accumulators). */
MTP_HOT static inline void mtp_window2_s8(const int8_t* a, const int8_t* b, int32_t b_next, int32_t rows, int32_t n,
                                          int32_t a_stride, int32_t b_stride, int32_t a_offset, int32_t* acc) {
  for (int32_t row = 0; row < rows; ++row) {
    mtp_dot2_s8(a + row * a_stride, b + row * b_stride, b_next, n, a_offset, acc);
  }
}
/* Two output pixels (inputs a and a + a_next) x two output channels (weights b and b + b_next),
 * one run of n products: acc = {(a, b), (a, b1), (a1, b), (a1, b1)}; each widened weight word
 * serves both pixels, each widened input word both channels. The accumulators go through memory
 * between rows: kept in registers across the window's rows they are spilled inside the loop. */
MTP_HOT static inline void mtp_dot2x2_s8(const int8_t* restrict a, int32_t a_next, const int8_t* restrict b,
                                               int32_t b_next, int32_t n, int32_t a_offset, int32_t* restrict acc) {
  const int8_t* restrict a1 = a + a_next;
  const int8_t* restrict b1 = b + b_next;
  int32_t acc00 = acc[0], acc01 = acc[1], acc10 = acc[2], acc11 = acc[3];
#ifdef MTP_DSP
  const int16x2_t offsets = (int16x2_t)(((uint32_t)a_offset & 0xFFFFU) | ((uint32_t)a_offset << 16));
  for (int32_t quads = n >> 2; quads > 0; --quads) {
    const int32_t b0_word = mtp_load_s8x4(b);
    const int32_t b1_word = mtp_load_s8x4(b1);
    const int32_t b0_even = __sxtb16((int8x4_t)b0_word);
    const int32_t b0_odd = __sxtb16((int8x4_t)mtp_ror8(b0_word));
    const int32_t b1_even = __sxtb16((int8x4_t)b1_word);
    const int32_t b1_odd = __sxtb16((int8x4_t)mtp_ror8(b1_word));
    int32_t a_word = mtp_load_s8x4(a);
    int32_t a_even = __sxtab16(offsets, (int8x4_t)a_word);
    int32_t a_odd = __sxtab16(offsets, (int8x4_t)mtp_ror8(a_word));
    acc00 = __smlad(a_even, b0_even, acc00);
    acc00 = __smlad(a_odd, b0_odd, acc00);
    acc01 = __smlad(a_even, b1_even, acc01);
    acc01 = __smlad(a_odd, b1_odd, acc01);
    a_word = mtp_load_s8x4(a1);
    a_even = __sxtab16(offsets, (int8x4_t)a_word);
    a_odd = __sxtab16(offsets, (int8x4_t)mtp_ror8(a_word));
    acc10 = __smlad(a_even, b0_even, acc10);
    acc10 = __smlad(a_odd, b0_odd, acc10);
    acc11 = __smlad(a_even, b1_even, acc11);
    acc11 = __smlad(a_odd, b1_odd, acc11);
    a += 4;
    a1 += 4;
    b += 4;
    b1 += 4;
  }
  n &= 3;
#endif
  for (; n > 0; --n) {
    const int32_t a0_value = (int32_t)*a++ + a_offset;
    const int32_t a1_value = (int32_t)*a1++ + a_offset;
    const int32_t b0_value = (int32_t)*b++;
    const int32_t b1_value = (int32_t)*b1++;
    acc00 += a0_value * b0_value;
    acc01 += a0_value * b1_value;
    acc10 += a1_value * b0_value;
    acc11 += a1_value * b1_value;
  }
  acc[0] = acc00;
  acc[1] = acc01;
  acc[2] = acc10;
  acc[3] = acc11;
}
/* mtp_dot2x2_s8 over two pixels' clipped windows (which clip alike), row by row. */
MTP_HOT static inline void mtp_window2x2_s8(const int8_t* a, int32_t a_next, const int8_t* b, int32_t b_next,
                                            int32_t rows, int32_t n, int32_t a_stride, int32_t b_stride,
                                            int32_t a_offset, int32_t* acc) {
  for (int32_t row = 0; row < rows; ++row) {
    mtp_dot2x2_s8(a + row * a_stride, a_next, b + row * b_stride, b_next, n, a_offset, acc);
  }
}
/* Plain dot products: one-row windows. */
MTP_HOT static inline int32_t mtp_dot_s8(const int8_t* a, const int8_t* b, int32_t n, int32_t a_offset, int32_t acc) {
  return mtp_window_s8(a, b, 1, n, 0, 0, a_offset, acc);
}
/* Four output units of a fully connected layer, weights interleaved at compile time: for each
 * four inputs, four bytes of unit 0, of unit 1, of unit 2, of unit 3 (one pointer walks them in
 * order). acc[0..3] += dot(a, unit j); n is a multiple of 4, the input offset folded into the bias. */
MTP_HOT static inline void mtp_dot4_interleaved_s8(const int8_t* restrict a, const int8_t* restrict b, int32_t n,
                                                   int32_t* restrict acc) {
  int32_t acc0 = acc[0], acc1 = acc[1], acc2 = acc[2], acc3 = acc[3];
  for (int32_t quads = n >> 2; quads > 0; --quads) {
#ifdef MTP_DSP
    const int32_t a_word = mtp_load_s8x4(a);
    const int32_t a_even = __sxtb16((int8x4_t)a_word);
    const int32_t a_odd = __sxtb16((int8x4_t)mtp_ror8(a_word));
    int32_t w = mtp_load_s8x4(b);
    acc0 = __smlad(a_even, __sxtb16((int8x4_t)w), acc0);
    acc0 = __smlad(a_odd, __sxtb16((int8x4_t)mtp_ror8(w)), acc0);
    w = mtp_load_s8x4(b + 4);
    acc1 = __smlad(a_even, __sxtb16((int8x4_t)w), acc1);
    acc1 = __smlad(a_odd, __sxtb16((int8x4_t)mtp_ror8(w)), acc1);
    w = mtp_load_s8x4(b + 8);
    acc2 = __smlad(a_even, __sxtb16((int8x4_t)w), acc2);
    acc2 = __smlad(a_odd, __sxtb16((int8x4_t)mtp_ror8(w)), acc2);
    w = mtp_load_s8x4(b + 12);
    acc3 = __smlad(a_even, __sxtb16((int8x4_t)w), acc3);
    acc3 = __smlad(a_odd, __sxtb16((int8x4_t)mtp_ror8(w)), acc3);
#else
    for (int32_t i = 0; i < 4; ++i) {
      const int32_t a_value = (int32_t)a[i];
      acc0 += a_value * (int32_t)b[i];
      acc1 += a_value * (int32_t)b[4 + i];
      acc2 += a_value * (int32_t)b[8 + i];
      acc3 += a_value * (int32_t)b[12 + i];
    }
#endif
    a += 4;
    b += 16;
  }
  acc[0] = acc0;
  acc[1] = acc1;
  acc[2] = acc2;
  acc[3] = acc3;
}
/* Four adjacent channels of a clipped depthwise window (depth multiplier 1): each tap loads four
 * inputs and four weights as one word each; SMLABB/SMLATT multiply-accumulate lane by lane.
 * acc[0..3] come in holding the biases. */
MTP_HOT static inline void mtp_depthwise4_s8(const int8_t* restrict a, const int8_t* restrict b, int32_t rows,
                                             int32_t cols, int32_t a_row_stride, int32_t b_row_stride,
                                             int32_t col_stride, int32_t a_offset, int32_t* restrict acc) {
  int32_t acc0 = acc[0], acc1 = acc[1], acc2 = acc[2], acc3 = acc[3];
#ifdef MTP_DSP
  const int16x2_t offsets = (int16x2_t)(((uint32_t)a_offset & 0xFFFFU) | ((uint32_t)a_offset << 16));
#endif
  for (int32_t row = 0; row < rows; ++row) {
    const int8_t* a_tap = a + row * a_row_stride;
    const int8_t* b_tap = b + row * b_row_stride;
    for (int32_t col = 0; col < cols; ++col, a_tap += col_stride, b_tap += col_stride) {
#ifdef MTP_DSP
      const int32_t a_word = mtp_load_s8x4(a_tap);
      const int32_t b_word = mtp_load_s8x4(b_tap);
      const int32_t a_even = __sxtab16(offsets, (int8x4_t)a_word);
      const int32_t a_odd = __sxtab16(offsets, (int8x4_t)mtp_ror8(a_word));
      const int32_t b_even = __sxtb16((int8x4_t)b_word);
      const int32_t b_odd = __sxtb16((int8x4_t)mtp_ror8(b_word));
      acc0 = __smlabb(a_even, b_even, acc0);
      acc2 = __smlatt(a_even, b_even, acc2);
      acc1 = __smlabb(a_odd, b_odd, acc1);
      acc3 = __smlatt(a_odd, b_odd, acc3);
#else
      acc0 += ((int32_t)a_tap[0] + a_offset) * (int32_t)b_tap[0];
      acc1 += ((int32_t)a_tap[1] + a_offset) * (int32_t)b_tap[1];
      acc2 += ((int32_t)a_tap[2] + a_offset) * (int32_t)b_tap[2];
      acc3 += ((int32_t)a_tap[3] + a_offset) * (int32_t)b_tap[3];
#endif
    }
  }
  acc[0] = acc0;
  acc[1] = acc1;
  acc[2] = acc2;
  acc[3] = acc3;
}
/* Every channel of one output pixel of a depthwise convolution (depth multiplier 1, channels a
 * multiple of 4), four at a time: acc[c] = bias[c] + the clipped window's sum for channel c. */
MTP_HOT static inline void mtp_depthwise_pixel_s8(const int8_t* a, const int8_t* b, const int32_t* bias,
                                                  int32_t rows, int32_t cols, int32_t a_row_stride,
                                                  int32_t b_row_stride, int32_t channels, int32_t a_offset,
                                                  int32_t* acc) {
  for (int32_t c = 0; c < channels; c += 4) {
    acc[c] = bias[c];
    acc[c + 1] = bias[c + 1];
    acc[c + 2] = bias[c + 2];
    acc[c + 3] = bias[c + 3];
    mtp_depthwise4_s8(a + c, b + c, rows, cols, a_row_stride, b_row_stride, channels, a_offset, acc + c);
  }
}
/* One convolution window copied to a contiguous buffer (kernel_h rows of kernel_w * channels
 * bytes, the weights' order), taps outside the input filled with the input zero point so that
 * they contribute 0 like tflite-micro's skipped taps. Byte loops, not memcpy/memset calls: the
 * runs are a few bytes (first layers over one input channel). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O2", "no-tree-loop-distribute-patterns")))
#endif
static inline void mtp_gather_window_s8(const int8_t* input, int32_t height, int32_t width, int32_t channels,
                                        int32_t y0, int32_t x0, int32_t kernel_h, int32_t kernel_w,
                                        int32_t zero_point, int8_t* window) {
  const int32_t run = kernel_w * channels;
  const int32_t first = (x0 < 0 ? -x0 : 0) * channels;
  int32_t end = (x0 + kernel_w > width ? width - x0 : kernel_w) * channels;
  const int8_t fill = (int8_t)zero_point;
  if (end < first) {
    end = first;
  }
  for (int32_t ky = 0; ky < kernel_h; ++ky, window += run) {
    const int32_t iy = y0 + ky;
    int32_t i = 0;
    if (iy >= 0 && iy < height) {
      const int8_t* row = input + ((iy * width) + x0) * channels;
      for (; i < first; ++i) {
        window[i] = fill;
      }
      for (; i < end; ++i) {
        window[i] = row[i];
      }
    }
    for (; i < run; ++i) {
      window[i] = fill;
    }
  }
}
/* A clipped depthwise window: rows x cols taps, each a strided step in a and in b. */
MTP_HOT static inline int32_t mtp_depthwise_window_s8(const int8_t* restrict a, const int8_t* restrict b, int32_t rows,
                                              int32_t cols, int32_t a_row_stride, int32_t a_col_stride,
                                              int32_t b_row_stride, int32_t b_col_stride, int32_t a_offset,
                                              int32_t acc) {
  for (int32_t row = 0; row < rows; ++row) {
    const int8_t* a_tap = a + row * a_row_stride;
    const int8_t* b_tap = b + row * b_row_stride;
    for (int32_t col = 0; col < cols; ++col, a_tap += a_col_stride, b_tap += b_col_stride) {
      acc += ((int32_t)*a_tap + a_offset) * (int32_t)*b_tap;
    }
  }
  return acc;
}
