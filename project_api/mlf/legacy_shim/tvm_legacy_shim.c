/* The TVM C runtime functions legacy kernels call, with no TVM runtime and no malloc
 * (declarations and rationale in tvm_legacy_shim.h). */
#include "tvm_legacy_shim.h"

/* Legacy kernels free workspaces in the reverse order of allocation (the CRT's stack allocator
 * required it too), so a stack of offsets is the whole allocator. Every block is rounded up to
 * 16 bytes so the next one stays aligned for any scalar or 16-byte SIMD load; the per-kernel
 * workspace sizes legacy metadata records are computed with the same rounding. */
#define TVM_LEGACY_SHIM_ALIGN 16u
#define TVM_LEGACY_SHIM_MAX_LIVE_ALLOCS 64

typedef struct {
  uint8_t* base;
  size_t size;
  size_t top;
  int depth;
  size_t offsets[TVM_LEGACY_SHIM_MAX_LIVE_ALLOCS];
} tvm_legacy_pool_t;

static tvm_legacy_pool_t default_pool;
static tvm_legacy_pool_t call_pool;
static tvm_legacy_pool_t* active_pool = &default_pool;
static const char* last_error = "";

static void pool_reset(tvm_legacy_pool_t* pool, void* base, size_t bytes) {
  pool->base = (uint8_t*)base;
  pool->size = base != NULL ? bytes : 0u;
  pool->top = 0u;
  pool->depth = 0;
}

void tvm_legacy_shim_set_default_pool(void* pool, size_t bytes) { pool_reset(&default_pool, pool, bytes); }

void tvm_legacy_shim_workspace_begin(void* pool, size_t bytes) {
  pool_reset(&call_pool, pool, bytes);
  active_pool = &call_pool;
}

void tvm_legacy_shim_workspace_end(void) {
  pool_reset(&call_pool, NULL, 0u);
  active_pool = &default_pool;
}

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint) {
  tvm_legacy_pool_t* pool = active_pool;
  uint64_t rounded = (nbytes + (TVM_LEGACY_SHIM_ALIGN - 1u)) / TVM_LEGACY_SHIM_ALIGN * TVM_LEGACY_SHIM_ALIGN;
  uint8_t* block;
  (void)device_type;
  (void)device_id;
  (void)dtype_code_hint;
  (void)dtype_bits_hint;
  if (pool->depth == TVM_LEGACY_SHIM_MAX_LIVE_ALLOCS) {
    TVMAPISetLastError("TVMBackendAllocWorkspace: too many live workspace blocks");
    return NULL;
  }
  if (rounded > (uint64_t)(pool->size - pool->top)) {
    TVMAPISetLastError("TVMBackendAllocWorkspace: the static workspace pool is exhausted");
    return NULL;
  }
  block = pool->base + pool->top;
  pool->offsets[pool->depth++] = pool->top;
  pool->top += (size_t)rounded;
  return block;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  tvm_legacy_pool_t* pool = active_pool;
  (void)device_type;
  (void)device_id;
  if (pool->depth == 0 || (uint8_t*)ptr != pool->base + pool->offsets[pool->depth - 1]) {
    TVMAPISetLastError("TVMBackendFreeWorkspace: not the most recent workspace block");
    return -1;
  }
  pool->top = pool->offsets[--pool->depth];
  return 0;
}

void TVMAPISetLastError(const char* msg) { last_error = msg != NULL ? msg : ""; }

const char* TVMGetLastError(void) { return last_error; }

void tvm_legacy_shim_tensor(DLTensor* tensor, TVMValue* value, int32_t* type_code, void* data, int32_t ndim,
                            const int64_t* shape, uint8_t dtype_code, uint8_t dtype_bits) {
  tensor->data = data;
  tensor->device.device_type = kDLCPU;
  tensor->device.device_id = 0;
  tensor->ndim = ndim;
  tensor->dtype.code = dtype_code;
  tensor->dtype.bits = dtype_bits;
  tensor->dtype.lanes = 1u;
  /* Kernels only read the shape; DLTensor declares it non-const. */
  tensor->shape = (int64_t*)(uintptr_t)shape;
  tensor->strides = NULL;
  tensor->byte_offset = 0u;
  value->v_handle = tensor;
  *type_code = kTVMDLTensorHandle;
}

void* tvm_legacy_shim_returned_handle(const TVMValue* value, int type_code) {
  if (type_code != kTVMOpaqueHandle) return NULL;
  /* Linked-parameter lookups store the pointer as a uint64 (so the low word on 32-bit targets). */
  return (void*)(uintptr_t)(uint64_t)value->v_int64;
}
