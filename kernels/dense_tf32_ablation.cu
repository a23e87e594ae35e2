// The TF32 tiles' ablation kernels (dense_force_ablation: the loop with its copies, prepare pass or
// mma left out; benchmarks only), compiled apart from the forward and backward tiles.
#include "kernels/dense_impl.cuh"

namespace mnist::cuda::dense_impl {

MNIST_DENSE_ABLATION()

}  // namespace mnist::cuda::dense_impl
