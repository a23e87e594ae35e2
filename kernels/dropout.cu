#include "kernels/dropout.cuh"

#include "kernels/curand_draw.cuh"
#include "kernels/philox.hpp"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kThreads = 256;

// out [n] = keep ? in * scale : 0 (out may alias in: neither is __restrict__). One thread per group
// of 4 consecutive elements, which share one Philox block (elements 4g .. 4g+3 are words 0..3 of
// the block with counter g); the tail group is guarded element by element.
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(float* out, const float* in, std::size_t n, uint32_t threshold, float scale, uint64_t seed,
                   uint64_t step, const TrainCounters* __restrict__ counters, uint32_t layer) {
  const std::size_t g = std::size_t(blockIdx.x) * kThreads + threadIdx.x;
  const std::size_t i0 = g * 4;
  if (i0 >= n) return;
  const uint64_t s = counters ? uint64_t(counters->step) : step;
  const uint4 r = philox_block(seed, rng::kDropout, layer, g, s);
#pragma unroll
  for (unsigned j = 0; j < 4; ++j) {
    const std::size_t i = i0 + j;
    if (i < n) out[i] = block_word(r, j) >= threshold ? in[i] * scale : 0.0f;
  }
}

// dZ [n] = D > 0 ? dD * scale : 0, one element per thread. dZ may alias dD (in place), so only D
// is __restrict__.
__global__ void __launch_bounds__(kThreads)
    relu_dropout_backward_kernel(float* dZ, const float* dD, const float* __restrict__ D, std::size_t n,
                                 float scale) {
  const std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) dZ[i] = D[i] > 0.0f ? dD[i] * scale : 0.0f;
}

}  // namespace

void dropout_forward(float* out, const float* in, std::size_t n, const DropoutSpec& drop, cudaStream_t stream) {
  MNIST_CHECK(drop.p >= 0.0f && drop.p < 1.0f, "dropout probability must be in [0, 1), got ", drop.p);
  if (n == 0) return;
  MNIST_CHECK(out && in, "dropout_forward: null pointer");
  const std::size_t groups = (n + 3) / 4;
  const std::size_t blocks = (groups + kThreads - 1) / kThreads;
  MNIST_CHECK(blocks <= 0x7FFFFFFFu, "dropout_forward: ", n, " elements is too many");
  dropout_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(out, in, n, rng::dropout_threshold(drop.p),
                                                            dropout_scale(drop.p), drop.seed, drop.step,
                                                            drop.counters, drop.layer);
  MNIST_LAUNCH_CHECK(stream);
}

void dropout_backward(float* dIn, const float* dOut, std::size_t n, const DropoutSpec& drop,
                      cudaStream_t stream) {
  dropout_forward(dIn, dOut, n, drop, stream);  // the same mask and scale
}

void relu_dropout_backward(float* dZ, const float* dD, const float* D, std::size_t n, float scale,
                           cudaStream_t stream) {
  if (n == 0) return;
  MNIST_CHECK(dZ && dD && D, "relu_dropout_backward: null pointer");
  MNIST_CHECK(dZ != D, "relu_dropout_backward: dZ must not alias D (it may alias dD)");
  const std::size_t blocks = (n + kThreads - 1) / kThreads;
  MNIST_CHECK(blocks <= 0x7FFFFFFFu, "relu_dropout_backward: ", n, " elements is too many");
  relu_dropout_backward_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(dZ, dD, D, n, scale);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
