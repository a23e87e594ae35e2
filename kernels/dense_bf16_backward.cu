// The dense backward GEMMs (data, weight, both in one launch) at BF16: its tiles' kernels and launchers (kernels/dense_impl.cuh),
// compiled apart from the other precisions' and directions' so that they build in parallel.
#include "kernels/dense_impl.cuh"

namespace mnist::cuda::dense_impl {

MNIST_DENSE_BACKWARD(, GemmPrecision::BF16)

}  // namespace mnist::cuda::dense_impl
