// The dense forward GEMM at TF32: its tiles' kernels and launchers (kernels/dense_impl.cuh),
// compiled apart from the other precisions' and directions' so that they build in parallel.
#include "kernels/dense_impl.cuh"

namespace mnist::cuda::dense_impl {

MNIST_DENSE_FORWARD(, GemmPrecision::TF32)

}  // namespace mnist::cuda::dense_impl
