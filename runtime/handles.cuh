// cuBLAS and cuBLASLt handles (RAII, move-only) and the CUBLAS_CHECK macro, which throws
// mnist::CudaError with the call, file, line and the library's own message.
// (cuDNN, used only by tests and benchmarks, lives apart in runtime/cudnn_handle.cuh.)
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>

#include "runtime/cuda_check.cuh"
#include "runtime/unique_handle.hpp"

// cuBLAS and cuBLASLt share cublasStatus_t; cublasGetStatusString names both.
#define CUBLAS_CHECK(expr)                                                                      \
  do {                                                                                          \
    cublasStatus_t mnist_st_ = (expr);                                                          \
    if (mnist_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::mnist::detail::throw_lib("cuBLAS", int(mnist_st_), cublasGetStatusString(mnist_st_),    \
                                 #expr, __FILE__, __LINE__);                                    \
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
