/* The model inputs a standalone image runs on, embedded at project generation
 * (src/standalone_inputs.c, from the standalone_inputs option; zeros when it is not given). */
#ifndef CORTEX_M_STANDALONE_INPUTS_H_
#define CORTEX_M_STANDALONE_INPUTS_H_

#include <stdint.h>

/* One entry per model input, in mtp_model.inputs order, each of that input's size_bytes;
 * a null entry leaves the (zeroed) input buffer as it is. */
extern const uint8_t *const mtp_standalone_inputs[];

#endif /* CORTEX_M_STANDALONE_INPUTS_H_ */
