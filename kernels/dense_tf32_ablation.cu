// The TF32 tiles' ablation kernels (dense_force_ablation: the loop with its copies, prepare pass or
// mma left out; benchmarks only), compiled apart from the forward and backward tiles into a library
// of their own, mnist_dense_ablation, which only the benchmarks (and the emulation's tests) link.
// The product's launchers reach them through g_ablation_launch, set here, so its binary has none.
#include "kernels/dense_impl.cuh"

namespace mnist::cuda {
namespace {
using namespace dense_impl;

template <class Tile, Kind KIND>
void launch_ablation(unsigned bits, const GemmParams& p, dim3 grid, cudaStream_t stream) {
  switch (bits) {
    case kAblateCopies: launch_pipe_ablation<Tile, KIND, kAblateCopies>(p, grid, stream); break;
    case kAblatePrepare: launch_pipe_ablation<Tile, KIND, kAblatePrepare>(p, grid, stream); break;
    case kAblateMath: launch_pipe_ablation<Tile, KIND, kAblateMath>(p, grid, stream); break;
    default: launch_pipe_ablation<Tile, KIND, kAblateAll>(p, grid, stream); break;
  }
}
}  // namespace

void dense_force_ablation(unsigned bits) {
  MNIST_CHECK(dense_impl::ablation_supported(bits), "dense_force_ablation: bits ", bits,
              " are not one of the instantiated sets (copies 1, prepare 2, math 4, all 7, none 0)");
#define MNIST_SET_ABLATION(TILE, KIND) dense_impl::g_ablation_launch<TILE, KIND> = &launch_ablation<TILE, KIND>;
  MNIST_DENSE_ABLATION_TILES(MNIST_SET_ABLATION)
#undef MNIST_SET_ABLATION
  dense_impl::g_ablation = bits;
}

}  // namespace mnist::cuda
