/* Runs the model once on zero inputs and prints the standalone records (project_api/standalone.py). */
#include <stdio.h>

#include "mtp_model.h"

int main(void) {
  int32_t status = mtp_model.run();
  printf("mtp-standalone %s\n", mtp_model.name);
  for (uint16_t i = 0; i < mtp_model.num_outputs; ++i) {
    printf("output %x ", (unsigned)i);
    for (uint32_t b = 0; b < mtp_model.outputs[i].size_bytes; ++b) printf("%02x", mtp_model.outputs[i].data[b]);
    printf("\n");
  }
  printf("status %x\nend\n", (unsigned)status);
  return status == 0 ? 0 : 1;
}
