#ifndef TVMGEN_DEFAULT_H_
#define TVMGEN_DEFAULT_H_
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/*!
 * \brief Input tensor Reshape_1 size (in bytes) for TVM module "default"
 */
#define TVMGEN_DEFAULT_RESHAPE_1_SIZE 1960
/*!
 * \brief Output tensor output size (in bytes) for TVM module "default"
 */
#define TVMGEN_DEFAULT_OUTPUT_SIZE 4
/*!
 * \brief Input tensor pointers for TVM module "default"
 */
struct tvmgen_default_inputs {
  void* Reshape_1;
};

/*!
 * \brief Output tensor pointers for TVM module "default"
 */
struct tvmgen_default_outputs {
  void* output;
};

/*!
 * \brief Workspace pool size (in bytes) for pool global_workspace of TVM module "default"
 */
#define TVMGEN_DEFAULT_GLOBAL_WORKSPACE_WORKSPACE_POOL_SIZE 15952

/*!
 * \brief Workspace pool pointers for TVM module "default"
 */
struct tvmgen_default_workspace_pools {
  void* global_workspace;
};

/*!
 * \brief entrypoint function for TVM module "default"
 * \param inputs Input tensors for the module
 * \param outputs Output tensors for the module
 */
int32_t tvmgen_default_run(
  struct tvmgen_default_inputs* inputs,
  struct tvmgen_default_outputs* outputs,
  struct tvmgen_default_workspace_pools* workspace_pools
);

#ifdef __cplusplus
}
#endif

#endif // TVMGEN_DEFAULT_H_
