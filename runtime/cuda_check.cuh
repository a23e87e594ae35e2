// CUDA_CHECK / CUBLAS_CHECK / CUDNN_CHECK / CURAND_CHECK: wrap every runtime and library call.
// On failure they throw mnist::CudaError naming the call, file, line and the library's own message.
// KERNEL_CHECK() after a launch catches launch-configuration errors always, and (in debug builds,
// or with MNIST_SYNC_CHECK defined) synchronises so that faults are attributed to the right kernel.
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

#if !defined(NDEBUG) || defined(MNIST_SYNC_CHECK)
#define KERNEL_CHECK()                                  \
  do {                                                  \
    CUDA_CHECK(cudaGetLastError());                     \
    CUDA_CHECK(cudaDeviceSynchronize());                \
  } while (0)
#else
#define KERNEL_CHECK() CUDA_CHECK(cudaPeekAtLastError())
#endif
