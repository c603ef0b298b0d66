/* Included by legacy TVM-generated sources in place of their `tvm/runtime/...` headers (project
 * generation rewrites those include lines). TVM's C code generator declares every packed-function
 * parameter and unpacks every argument's shape and type code whether the kernel uses them or
 * not, so these sources always trip GCC's unused-parameter/-variable warnings; they are silenced
 * here, for the legacy sources only, so projects still build with -Werror. */
#ifndef TVM_LEGACY_KERNELS_H_
#define TVM_LEGACY_KERNELS_H_

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif

#include "tvm_legacy_shim.h"

#endif /* TVM_LEGACY_KERNELS_H_ */
