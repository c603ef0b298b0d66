/*
 * The model as the device runtime sees it. A generated model_glue.c (project_api/project_gen.py
 * writes it from the MLF metadata) defines `mtp_model`; the runtime never includes tvmgen_*.h,
 * so one runtime build serves any model.
 */
#ifndef MTP_MODEL_H_
#define MTP_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dtype codes, as DLPack's DLDataTypeCode. */
enum { MTP_DTYPE_INT = 0, MTP_DTYPE_UINT = 1, MTP_DTYPE_FLOAT = 2 };

typedef struct {
  const char *name;      /* the model's tensor name (not sanitized) */
  uint8_t dtype_code;    /* MTP_DTYPE_* */
  uint8_t dtype_bits;    /* 8, 16, 32, 64 */
  uint8_t ndim;
  const int32_t *shape;  /* ndim entries */
  uint32_t size_bytes;
  uint8_t *data;         /* the static buffer passed to tvmgen_<mod>_run */
} mtp_tensor_t;

typedef struct {
  const char *name;                /* model name, e.g. "default" */
  uint16_t num_inputs;
  uint16_t num_outputs;
  const mtp_tensor_t *inputs;
  const mtp_tensor_t *outputs;
  uint32_t workspace_size_bytes;   /* the static arena of the generated runtime */
  int32_t (*run)(void);            /* runs tvmgen_<mod>_run on the buffers above; 0 = ok */
  void (*reset)(void);             /* tvmgen_<mod>_reset: zeroes the state kept across runs
                                      (SVDF); NULL for a stateless model or an older MLF */
} mtp_model_t;

extern const mtp_model_t mtp_model;

#ifdef TVMGEN_PROFILE
/* Profiling build (-DTVMGEN_PROFILE): the generated runtime adds the timer ticks of each kernel call
 * to call_ticks[call]; the runtime zeroes the table before the runs of a PROFILE_RUNS command.
 * num_calls is 0 for an MLF older than per-kernel profiling (no table). */
typedef struct {
  uint16_t num_calls;
  uint64_t *call_ticks;
} mtp_model_profile_t;

extern const mtp_model_profile_t mtp_model_profile;
#endif

#ifdef __cplusplus
}
#endif

#endif /* MTP_MODEL_H_ */
