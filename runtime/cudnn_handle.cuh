// A cuDNN handle (RAII) and CUDNN_CHECK. cuDNN is a reference for tests and benchmarks only: the
// engine never includes this header, and only targets that link mnist_cudnn_ref need libcudnn.
#pragma once

#include <cudnn.h>

#include "runtime/cuda_check.cuh"
#include "runtime/unique_handle.hpp"

#define CUDNN_CHECK(expr)                                                                        \
  do {                                                                                           \
    cudnnStatus_t mnist_st_ = (expr);                                                            \
    if (mnist_st_ != CUDNN_STATUS_SUCCESS)                                                       \
      ::mnist::detail::throw_lib("cuDNN", int(mnist_st_), cudnnGetErrorString(mnist_st_), #expr, \
                                 __FILE__, __LINE__);                                            \
  } while (0)

namespace mnist {

class CudnnHandle : public UniqueHandle<cudnnHandle_t, cudnnDestroy> {
 public:
  CudnnHandle() : UniqueHandle(create()) {}

 private:
  static cudnnHandle_t create() {
    cudnnHandle_t h = nullptr;
    CUDNN_CHECK(cudnnCreate(&h));
    return h;
  }
};

}  // namespace mnist
