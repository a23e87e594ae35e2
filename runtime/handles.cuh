// cuBLAS and cuBLASLt handles (RAII, move-only) and the CUBLAS_CHECK / CURAND_CHECK macros, which
// throw mnist::CudaError with the call, file, line and the library's own message.
// (cuDNN, used only by tests and benchmarks, lives apart in runtime/cudnn_handle.cuh.)
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <curand.h>

#include "runtime/cuda_check.cuh"
#include "runtime/unique_handle.hpp"

namespace mnist::detail {
inline const char* curand_status_name(curandStatus_t s) {
  switch (s) {
    case CURAND_STATUS_SUCCESS: return "CURAND_STATUS_SUCCESS";
    case CURAND_STATUS_VERSION_MISMATCH: return "CURAND_STATUS_VERSION_MISMATCH";
    case CURAND_STATUS_NOT_INITIALIZED: return "CURAND_STATUS_NOT_INITIALIZED";
    case CURAND_STATUS_ALLOCATION_FAILED: return "CURAND_STATUS_ALLOCATION_FAILED";
    case CURAND_STATUS_TYPE_ERROR: return "CURAND_STATUS_TYPE_ERROR";
    case CURAND_STATUS_OUT_OF_RANGE: return "CURAND_STATUS_OUT_OF_RANGE";
    case CURAND_STATUS_LAUNCH_FAILURE: return "CURAND_STATUS_LAUNCH_FAILURE";
    case CURAND_STATUS_INTERNAL_ERROR: return "CURAND_STATUS_INTERNAL_ERROR";
    default: return "cuRAND error";
  }
}
}  // namespace mnist::detail

// cuBLAS and cuBLASLt share cublasStatus_t; cublasGetStatusString names both.
#define CUBLAS_CHECK(expr)                                                                      \
  do {                                                                                          \
    cublasStatus_t mnist_st_ = (expr);                                                          \
    if (mnist_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::mnist::detail::throw_lib("cuBLAS", int(mnist_st_), cublasGetStatusString(mnist_st_),    \
                                 #expr, __FILE__, __LINE__);                                    \
  } while (0)

#define CURAND_CHECK(expr)                                                                       \
  do {                                                                                           \
    curandStatus_t mnist_st_ = (expr);                                                           \
    if (mnist_st_ != CURAND_STATUS_SUCCESS)                                                      \
      ::mnist::detail::throw_lib("cuRAND", int(mnist_st_),                                       \
                                 ::mnist::detail::curand_status_name(mnist_st_), #expr, __FILE__, \
                                 __LINE__);                                                      \
  } while (0)

namespace mnist {

// A cuBLAS handle in FP32 mode (no TF32: results must match float32 references).
class CublasHandle : public UniqueHandle<cublasHandle_t, cublasDestroy> {
 public:
  CublasHandle() : UniqueHandle(create()) { CUBLAS_CHECK(cublasSetMathMode(get(), CUBLAS_DEFAULT_MATH)); }

 private:
  static cublasHandle_t create() {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    return h;
  }
};

class CublasLtHandle : public UniqueHandle<cublasLtHandle_t, cublasLtDestroy> {
 public:
  CublasLtHandle() : UniqueHandle(create()) {}

 private:
  static cublasLtHandle_t create() {
    cublasLtHandle_t h = nullptr;
    CUBLAS_CHECK(cublasLtCreate(&h));
    return h;
  }
};

}  // namespace mnist
