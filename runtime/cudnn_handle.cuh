// A cuDNN handle (RAII) and CUDNN_CHECK. cuDNN is a reference for tests and benchmarks only: the
// engine never includes this header, and only targets that link mnist_cudnn_ref need libcudnn.
#pragma once

#include <cudnn.h>

#include <utility>

#include "runtime/cuda_check.cuh"

#define CUDNN_CHECK(expr)                                                                        \
  do {                                                                                           \
    cudnnStatus_t mnist_st_ = (expr);                                                            \
    if (mnist_st_ != CUDNN_STATUS_SUCCESS)                                                       \
      ::mnist::detail::throw_lib("cuDNN", int(mnist_st_), cudnnGetErrorString(mnist_st_), #expr, \
                                 __FILE__, __LINE__);                                            \
  } while (0)

namespace mnist {

class CudnnHandle {
 public:
  CudnnHandle() { CUDNN_CHECK(cudnnCreate(&h_)); }
  ~CudnnHandle() {
    if (h_) cudnnDestroy(h_);
  }
  CudnnHandle(const CudnnHandle&) = delete;
  CudnnHandle& operator=(const CudnnHandle&) = delete;
  CudnnHandle(CudnnHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CudnnHandle& operator=(CudnnHandle&& o) noexcept {
    if (this != &o) {
      if (h_) cudnnDestroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  cudnnHandle_t get() const { return h_; }

 private:
  cudnnHandle_t h_ = nullptr;
};

}  // namespace mnist
