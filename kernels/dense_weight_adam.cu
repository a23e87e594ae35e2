// The weight GEMM with Adam in its clustered finish (dense_weight_adam, kernels/dense.cuh), every
// precision's tiles (kernels/dense_impl.cuh), compiled apart from the other dense translation units.
#include "kernels/dense_impl.cuh"

namespace mnist::cuda::dense_impl {

MNIST_DENSE_WEIGHT_ADAM(, GemmPrecision::FP32)
MNIST_DENSE_WEIGHT_ADAM(, GemmPrecision::TF32)
MNIST_DENSE_WEIGHT_ADAM(, GemmPrecision::BF16)

}  // namespace mnist::cuda::dense_impl
