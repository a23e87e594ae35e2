#include "kernels/adam.cuh"

#include <algorithm>
#include <cmath>

#include "kernels/step_math.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::size_t kMaxBlocks = 2048;

// Fuses Adam's three updates (m, v, then p) of one element into one pass. p, m, v [n] (read and
// written in place), g [n] (read): one flat span, grid-stride. Thread 0 of each block reads (lr,
// t) -- from counters when set (read only: advance_train_counters moves them on afterwards) -- and
// computes the bias-corrected step size once for the block.
__global__ void __launch_bounds__(kThreads)
    adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v, const float* __restrict__ g,
                std::size_t n, float lr, float b1, float b2, float eps, int64_t t,
                const TrainCounters* __restrict__ counters) {
  __shared__ float s_alpha;
  if (threadIdx.x == 0) {
    const float rate = counters ? counters->lr : lr;
    const int64_t step = counters ? counters->step : t;
    s_alpha = adam_step_size(rate, b1, b2, step);
  }
  __syncthreads();
  const float alpha = s_alpha;
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  for (std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride)
    adam_element(p[i], m[i], v[i], g[i], alpha, b1, b2, eps);  // step_math.cuh, shared with the fused step
}

unsigned grid_for(std::size_t n) {
  return unsigned(std::max<std::size_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
}

}  // namespace

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1, float b2,
                 float eps, int64_t t, cudaStream_t stream) {
  MNIST_CHECK(t >= 1, "adam_update: step t must be >= 1, got ", t);
  if (n == 0) return;
  MNIST_CHECK(p && m && v && g, "adam_update: null pointer");
  MNIST_CHECK(p != m && p != v && m != v && g != p && g != m && g != v, "adam_update: p, m, v, g must be distinct");
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, m, v, g, n, lr, b1, b2, eps, t, nullptr);
  MNIST_LAUNCH_CHECK(stream);
}

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, const TrainCounters* counters,
                 float b1, float b2, float eps, cudaStream_t stream) {
  MNIST_CHECK(counters, "adam_update: null counters");
  if (n == 0) return;
  MNIST_CHECK(p && m && v && g, "adam_update: null pointer");
  MNIST_CHECK(p != m && p != v && m != v && g != p && g != m && g != v, "adam_update: p, m, v, g must be distinct");
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, m, v, g, n, 0.0f, b1, b2, eps, 0, counters);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
