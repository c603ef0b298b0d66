/* The part of the TVM C runtime API (apache/tvm <= 0.18) that kernels in legacy Model Library
 * Format archives use, for a project that has no TVM runtime.
 *
 * Project generation rewrites the legacy sources' `#include "tvm/runtime/..."` lines to this one
 * flat header (templates such as Arduino compile only a flat folder). The layouts of DLTensor,
 * TVMValue and the packed-function signature are the ones those kernels were compiled against;
 * the functions are provided by tvm_legacy_shim.c: a LIFO workspace allocator on a pool the
 * caller hands over (no malloc), the last error string, and the DLTensor packing the generated
 * callers need. */
#ifndef TVM_LEGACY_SHIM_H_
#define TVM_LEGACY_SHIM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef TVM_DLL
#define TVM_DLL
#endif

/* ---- DLPack (the version legacy kernels index into) ---- */
typedef enum { kDLCPU = 1 } DLDeviceType;
typedef enum { kDLInt = 0U, kDLUInt = 1U, kDLFloat = 2U } DLDataTypeCode;

typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;
typedef DLDevice DLContext; /* the pre-0.8 name */

typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;

typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;

/* ---- packed-function values ---- */
typedef enum {
  kTVMArgInt = 0,
  kTVMArgFloat = 2,
  kTVMOpaqueHandle = 3,
  kTVMNullptr = 4,
  kTVMDLTensorHandle = 7,
  kTVMNDArrayHandle = 13
} TVMArgTypeCode;

typedef union {
  int64_t v_int64;
  double v_float64;
  void* v_handle;
  const char* v_str;
  DLDataType v_type;
  DLDevice v_device;
} TVMValue;

typedef int (*TVMBackendPackedCFunc)(TVMValue* args, int* type_codes, int num_args, TVMValue* out_ret_value,
                                     int* out_ret_tcode, void* resource_handle);

/* The system-library registry of legacy graph archives (kept so their registry file compiles). */
typedef struct {
  const char* names;
  const TVMBackendPackedCFunc* funcs;
} TVMFuncRegistry;
typedef struct {
  const TVMFuncRegistry* registry;
} TVMModule;

/* ---- the runtime functions legacy kernels call ---- */
TVM_DLL void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                                       int dtype_bits_hint);
TVM_DLL int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr);
TVM_DLL void TVMAPISetLastError(const char* msg);
TVM_DLL const char* TVMGetLastError(void);

/* ---- for the callers project generation writes ---- */

/* Workspace allocations go to [pool, pool + bytes) until tvm_legacy_shim_workspace_end(); the pool
 * must be 16-byte aligned. Outside a begin/end pair they go to the default pool, if any. */
void tvm_legacy_shim_workspace_begin(void* pool, size_t bytes);
void tvm_legacy_shim_workspace_end(void);
/* The default pool: what AOT archives' own code allocates from (set once before their run). */
void tvm_legacy_shim_set_default_pool(void* pool, size_t bytes);

/* Fills `tensor` (a compact CPU tensor) and the packed argument for it. The type codes are int32_t
 * because TVM's generated kernels read them through an int32_t pointer (`int` may be 16 bits). */
void tvm_legacy_shim_tensor(DLTensor* tensor, TVMValue* value, int32_t* type_code, void* data, int32_t ndim,
                            const int64_t* shape, uint8_t dtype_code, uint8_t dtype_bits);

/* The pointer a packed function returned as an opaque handle (linked-parameter lookup); NULL if
 * it returned something else. */
void* tvm_legacy_shim_returned_handle(const TVMValue* value, int type_code);

#ifdef __cplusplus
}
#endif

#endif /* TVM_LEGACY_SHIM_H_ */
