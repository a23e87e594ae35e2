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

// p, m, v (updated), g: [n], one flat span. Grid-stride over the span. Thread 0 of each block reads (lr, t) -- from the counters when set --
// and computes the step size; with counters, each block's thread 0 then counts the block as done
// (after a fence that orders its read of the counters before the count), and the block that
// completes the count is the last reader, so it alone advances step and batch and re-arms the
// count for the next launch.
__global__ void __launch_bounds__(kThreads)
    adam_kernel(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1, float b2, float eps,
                int64_t t, TrainCounters* counters) {
  __shared__ float s_alpha;
  __shared__ int64_t s_t;
  if (threadIdx.x == 0) {
    const float rate = counters ? counters->lr : lr;
    const int64_t step = counters ? counters->step : t;
    s_alpha = adam_step_size(rate, b1, b2, step);
    s_t = step;
  }
  __syncthreads();
  const float alpha = s_alpha;
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  for (std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride)
    adam_element(p[i], m[i], v[i], g[i], alpha, b1, b2, eps);  // step_math.cuh, shared with the fused step
  if (counters && threadIdx.x == 0) {
    __threadfence();
    const unsigned done = atomicAdd(&counters->blocks_done, 1u);
    if (done == gridDim.x - 1) {
      counters->step = s_t + 1;
      counters->batch += 1;
      counters->blocks_done = 0;
      __threadfence();
    }
  }
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
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, m, v, g, n, lr, b1, b2, eps, t, nullptr);
  MNIST_LAUNCH_CHECK(stream);
}

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, TrainCounters* counters, float b1,
                 float b2, float eps, cudaStream_t stream) {
  MNIST_CHECK(counters, "adam_update: null counters");
  MNIST_CHECK(n == 0 || (p && m && v && g), "adam_update: null pointer");
  // Launched even when n == 0: the counters must still advance.
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, m, v, g, n, 0.0f, b1, b2, eps, 0, counters);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
