/* Behaviour of project_api/mlf/legacy_shim/tvm_legacy_shim.c, the workspace allocator legacy
 * kernels call: LIFO blocks rounded to 16 bytes inside the pool handed over, NULL and an error
 * string when the pool is exhausted, -1 for a free out of order, the default pool restored after
 * a call's pool ends. Prints "ok" and exits 0, or names the failed check and exits 1. */
#include <stdio.h>
#include <string.h>

#include "tvm_legacy_shim.h"

static int failures = 0;

#define CHECK(cond)                                    \
  do {                                                 \
    if (!(cond)) {                                     \
      printf("FAILED line %d: %s\n", __LINE__, #cond); \
      ++failures;                                      \
    }                                                  \
  } while (0)

static union {
  unsigned char bytes[64];
  double align;
} call_pool, default_pool;

int main(void) {
  void* a;
  void* b;
  void* c;
  CHECK(TVMBackendAllocWorkspace(1, 0, 1, 0, 8) == NULL); /* no pool yet */
  CHECK(strstr(TVMGetLastError(), "exhausted") != NULL);

  tvm_legacy_shim_set_default_pool(default_pool.bytes, sizeof(default_pool.bytes));
  tvm_legacy_shim_workspace_begin(call_pool.bytes, 48);
  a = TVMBackendAllocWorkspace(1, 0, 4, 2, 32);
  b = TVMBackendAllocWorkspace(1, 0, 17, 0, 8);
  CHECK(a == call_pool.bytes);
  CHECK(b == call_pool.bytes + 16); /* 4 bytes take a 16-byte block */
  CHECK(TVMBackendAllocWorkspace(1, 0, 1, 0, 8) == NULL); /* 16 + 32 = 48: full */
  CHECK(TVMBackendFreeWorkspace(1, 0, a) == -1);          /* not the most recent */
  CHECK(strstr(TVMGetLastError(), "most recent") != NULL);
  CHECK(TVMBackendFreeWorkspace(1, 0, b) == 0);
  c = TVMBackendAllocWorkspace(1, 0, 32, 0, 8); /* b's space is free again */
  CHECK(c == call_pool.bytes + 16);
  CHECK(TVMBackendFreeWorkspace(1, 0, c) == 0);
  CHECK(TVMBackendFreeWorkspace(1, 0, a) == 0);
  CHECK(TVMBackendFreeWorkspace(1, 0, a) == -1); /* nothing left to free */
  tvm_legacy_shim_workspace_end();

  a = TVMBackendAllocWorkspace(1, 0, 64, 0, 8); /* back on the default pool */
  CHECK(a == default_pool.bytes);
  CHECK(TVMBackendFreeWorkspace(1, 0, a) == 0);

  TVMAPISetLastError(NULL);
  CHECK(strcmp(TVMGetLastError(), "") == 0);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
