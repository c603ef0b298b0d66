/*
 * Drives a generated model_glue.c through mtp_model.h only, as the device runtime does:
 * prints the descriptors on one line, then for each input-sized block on stdin copies it into
 * input 0, runs the model and writes output 0's bytes to stdout. (tests/test_project_gen.py)
 */
#include <stdio.h>
#include <string.h>

#include "mtp_model.h"

static void print_tensor(const mtp_tensor_t *t) {
  uint8_t d;
  printf(" | %s %u/%u [", t->name, (unsigned)t->dtype_code, (unsigned)t->dtype_bits);
  for (d = 0; d < t->ndim; ++d) printf(d ? ",%ld" : "%ld", (long)t->shape[d]);
  printf("] %lu", (unsigned long)t->size_bytes);
}

int main(void) {
  const mtp_tensor_t *in = &mtp_model.inputs[0];
  const mtp_tensor_t *out = &mtp_model.outputs[0];
  uint16_t i;
  printf("%s in=%u out=%u ws=%lu", mtp_model.name, (unsigned)mtp_model.num_inputs,
         (unsigned)mtp_model.num_outputs, (unsigned long)mtp_model.workspace_size_bytes);
  for (i = 0; i < mtp_model.num_inputs; ++i) print_tensor(&mtp_model.inputs[i]);
  for (i = 0; i < mtp_model.num_outputs; ++i) print_tensor(&mtp_model.outputs[i]);
  printf("\n");
  while (fread(in->data, 1, in->size_bytes, stdin) == in->size_bytes) {
    int32_t status = mtp_model.run();
    if (status != 0) {
      fprintf(stderr, "run failed: %ld\n", (long)status);
      return 1;
    }
    fwrite(out->data, 1, out->size_bytes, stdout);
  }
  return 0;
}
