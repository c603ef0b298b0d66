/*
 * libm functions that TVM-generated kernels call and avr-libc lacks (avr-libc 2.0 has no
 * nearbyint family; its expf, roundf ... are macros for the double versions, and double is 32-bit
 * on AVR). The kernels declare what they call (float nearbyintf(float);). Only compiled for AVR:
 * every other Arduino core's libm has them.
 */
#if defined(__AVR__)
#include <math.h>

float nearbyintf(float x);
double nearbyint(double x);

/* Round to nearest, ties to even: the IEEE default mode, the only one AVR has. roundf() rounds
 * ties away from zero; on an exact tie take the even neighbour, 2 * round(x / 2). */
float nearbyintf(float x) {
  float r = roundf(x);
  if (fabsf(r - x) == 0.5f) r = 2.0f * roundf(x * 0.5f);
  return r;
}

/* avr-gcc's double is the same 32-bit float. */
double nearbyint(double x) { return nearbyintf((float)x); }

#else
typedef int mtp_avr_libm_unused; /* ISO C forbids an empty translation unit */
#endif
