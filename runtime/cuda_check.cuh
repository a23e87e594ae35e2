// CUDA_CHECK: wraps every CUDA runtime call; on failure it throws mnist::CudaError naming the call,
// file, line and the runtime's own message. detail::throw_lib is the same for the libraries' macros
// (CUBLAS_CHECK in runtime/handles.cuh, CUDNN_CHECK in runtime/cudnn_handle.cuh). After a kernel
// launch use MNIST_LAUNCH_CHECK (runtime/launch_check.cuh).
#pragma once

#include <cuda_runtime.h>

#include "runtime/error.hpp"

namespace mnist::detail {
[[noreturn]] void throw_cuda(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void throw_lib(const char* lib, int status, const char* what, const char* expr,
                            const char* file, int line);
}  // namespace mnist::detail

#define CUDA_CHECK(expr)                                                        \
  do {                                                                          \
    cudaError_t mnist_err_ = (expr);                                            \
    if (mnist_err_ != cudaSuccess)                                              \
      ::mnist::detail::throw_cuda(mnist_err_, #expr, __FILE__, __LINE__);       \
  } while (0)
