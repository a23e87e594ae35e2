#include "kernels/adam.cuh"

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "kernels/gemm_round.cuh"
#include "kernels/pdl.cuh"
#include "kernels/row_block.cuh"
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
// Thread 0 of a block, once the block has read the counters: counts the block in; the last block
// to arrive moves the counters on (no block reads them after its arrival: advance_train_counters in
// the optimizer's launch) and resets the count for the next launch. No-op without `advance`.
// Returns whether this block was the last (false without `advance`).
__device__ bool count_in_and_advance(TrainCounters* counters, unsigned* advance) {
  if (!advance) return false;
  __threadfence();
  if (atomicAdd(advance, 1u) == gridDim.x - 1) {
    counters->step += 1;
    counters->batch += 1;
    *advance = 0;
    return true;
  }
  return false;
}

__global__ void __launch_bounds__(kThreads)
    adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v, const float* __restrict__ g,
                std::size_t n, float lr, float b1, float b2, float eps, int64_t t, TrainCounters* __restrict__ counters,
                unsigned* __restrict__ advance, const RoundedParams rq) {
  __shared__ float s_alpha;
  pdl_start();
  if (threadIdx.x == 0) {
    const float rate = counters ? counters->lr : lr;
    const int64_t step = counters ? counters->step : t;
    s_alpha = adam_step_size(rate, b1, b2, step);
    count_in_and_advance(counters, advance);
  }
  __syncthreads();
  const float alpha = s_alpha;
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  for (std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    adam_element(p[i], m[i], v[i], g[i], alpha, b1, b2, eps);  // step_math.cuh, shared with the fused step
    if (rq.q) rq.q[i] = round_gemm_input(rq.prec, p[i]);       // (uniform: a parameter)
  }
}

__global__ void __launch_bounds__(kThreads)
    round_params_kernel(const RoundedParams rq, const float* __restrict__ p, std::size_t n) {
  pdl_start();  // (launch_kernel's contract: no read before it, should a scope ever launch this programmatically)
  const std::size_t stride = std::size_t(gridDim.x) * kThreads;
  for (std::size_t i = std::size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride)
    rq.q[i] = round_gemm_input(rq.prec, p[i]);
}

// adam_reduce_update's view of its segments: the first thread (element) of each, and the total.
struct ReduceArgs {
  GradSlicesSet set;
  long long first[kAdamMaxSegments + 1];
};

// Independent slice loads in flight per thread: a 128-slice sum (the tail kernel's slices at
// 4096-16384 rows) is 2 rounds of L2 latency, not 128; only the adds are chained. (32 until the
// twelfth session: 4 rounds. The kernel at 4096 rows, 6 + 128 slices, measured 11.3 µs against 7.7
// at 512 rows, 2 + 16 slices, on the H200: about a microsecond a round.)
constexpr int kReduceLoads = 64;

__global__ void __launch_bounds__(kThreads)
    adam_reduce_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v, float* __restrict__ g_out,
                       const ReduceArgs a, TrainCounters* __restrict__ counters, float b1, float b2, float eps,
                       unsigned* __restrict__ advance, const GroupMetrics gm, const RoundedParams rq) {
  __shared__ float s_alpha;
  __shared__ bool s_last;
  __shared__ double s_loss[kThreads];  // (gm: add_group_sums' scratch, 3.4 KB)
  __shared__ double s_sum[kThreads / 8];
  __shared__ unsigned s_hit[kThreads];
  __shared__ unsigned s_sumhit[kThreads / 8];
  if (threadIdx.x == 0) s_alpha = adam_step_size(counters->lr, b1, b2, counters->step);
  __syncthreads();
  const float alpha = s_alpha;
  const long long total = a.first[a.set.count];
  // Elements go out in warp-sized runs of 32 (coalesced), run r to warp r % W of the grid, the
  // grid's warps numbered block-fastest (warp w of block b is b + w·gridDim.x): consecutive runs
  // land in different blocks, so the tail's segments, 8,908 elements with 128 slices each beside
  // layer 0's 100,480 with 6, spread over the SMs instead of filling 35 blocks of their own.
  const long long warp = (long long)(threadIdx.x >> 5) * gridDim.x + blockIdx.x;
  const long long first = warp * 32 + (threadIdx.x & 31), stride = (long long)gridDim.x * kThreads;
  const auto update = [&](bool early) {
    for (long long t = first; t < total; t += stride) {
      int s = 0;
      while (t >= a.first[s + 1]) ++s;
      const GradSlices& g = a.set.seg[s];
      if (g.early != early) continue;
      const long long e = t - a.first[s];
      const float* base = g.partial + e;
      float acc = 0.0f;  // 0 + P0 + P1 + ...: dense_split_reduce_kernel's order
      for (int z = 0; z < g.slices; z += kReduceLoads) {
        float x[kReduceLoads];
#pragma unroll
        for (int j = 0; j < kReduceLoads; ++j)
          x[j] = z + j < g.slices ? base[std::size_t(z + j) * g.slice_stride] : 0.0f;
#pragma unroll
        for (int j = 0; j < kReduceLoads; ++j)
          if (z + j < g.slices) acc += x[j];
      }
      const int cols1 = g.cols + 1, r = int(e / cols1), c = int(e % cols1);
      const std::size_t i = c < g.cols ? g.w_offset + std::size_t(r) * g.cols + c : g.b_offset + std::size_t(r);
      adam_element(p[i], m[i], v[i], acc, alpha, b1, b2, eps);  // step_math.cuh: adam_update's arithmetic
      if (g_out) g_out[i] = acc;
      if (rq.q) rq.q[i] = round_gemm_input(rq.prec, p[i]);  // (the GEMMs' copy: RoundedParams)
    }
  };
  // The early segments while the launch before runs (a programmatic launch), then the rest. The
  // counters move on only after that launch has ended: it reads the batch index.
  update(true);
  pdl_start();
  if (threadIdx.x == 0) s_last = count_in_and_advance(counters, advance);  // (the block's one read of the counters is done)
  if (gm.slots) {  // (uniform: a parameter)
    __syncthreads();
    if (s_last)  // (the slots are two or more launches old: complete and visible after the wait)
      rowblock::add_group_sums<kThreads, true>(gm.metrics, gm.slots, gm.halves, s_loss, s_hit, s_sum, s_sumhit);
  }
  update(false);
}

unsigned grid_for(std::size_t n) {
  return unsigned(std::max<std::size_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
}

// The rounded copy's pointer for a launch: null unless it is on; checked apart from the arrays
// the launch updates.
RoundedParams rounded_arg(const RoundedParams& r, const char* who, std::initializer_list<const float*> others) {
  if (!r.on()) return {};
  for (const float* o : others) MNIST_CHECK(r.q != o, who, ": the rounded copy must not alias p, m, v or g");
  return r;
}

}  // namespace

void round_params(const RoundedParams& out, const float* p, std::size_t n, cudaStream_t stream) {
  MNIST_CHECK(out.on(), "round_params: no rounded copy (null, or FP32, which rounds nothing)");
  if (n == 0) return;
  MNIST_CHECK(p && p != out.q, "round_params: null or aliased pointer");
  launch_kernel(round_params_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, out, p, n);
  MNIST_LAUNCH_CHECK(stream);
}

void adam_reduce_update(float* p, float* m, float* v, float* g_out, const GradSlicesSet& set,
                        TrainCounters* counters, float b1, float b2, float eps, cudaStream_t stream,
                        unsigned* advance, const GroupMetrics& group_metrics, const RoundedParams& rounded) {
  MNIST_CHECK(set.count >= 0 && set.count <= kAdamMaxSegments, "adam_reduce_update: ", set.count,
              " segments (at most ", kAdamMaxSegments, ")");
  MNIST_CHECK(counters, "adam_reduce_update: null counters");
  MNIST_CHECK(p && m && v, "adam_reduce_update: null pointer");
  MNIST_CHECK(p != m && p != v && m != v && (!g_out || (g_out != p && g_out != m && g_out != v)),
              "adam_reduce_update: p, m, v, g_out must be distinct");
  MNIST_CHECK(!group_metrics.slots || (advance && group_metrics.metrics && group_metrics.halves >= 1),
              "adam_reduce_update: group metrics need the advance count (their block), a metrics pointer and >= 1 slot");
  ReduceArgs a{};
  a.set = set;
  long long total = 0;
  for (int s = 0; s < set.count; ++s) {
    const GradSlices& g = set.seg[s];
    MNIST_CHECK(g.rows > 0 && g.cols > 0 && g.slices >= 1 && g.partial &&
                    g.slice_stride >= std::size_t(g.rows) * std::size_t(g.cols + 1),
                "adam_reduce_update: segment ", s, " is malformed (rows ", g.rows, ", cols ", g.cols, ", slices ",
                g.slices, ")");
    a.first[s] = total;
    total += (long long)g.rows * (g.cols + 1);
  }
  a.first[set.count] = total;
  const unsigned blocks =
      unsigned(std::max<long long>(1, std::min<long long>((total + kThreads - 1) / kThreads, (long long)kMaxBlocks)));
  if (total == 0 && !advance) return;
  const RoundedParams rq = rounded_arg(rounded, "adam_reduce_update", {p, m, v, g_out});
  launch_kernel(adam_reduce_kernel, dim3(blocks), dim3(kThreads), 0, stream, p, m, v, g_out, a, counters, b1, b2, eps,
                advance, group_metrics, rq);
  MNIST_LAUNCH_CHECK(stream);
}

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1, float b2,
                 float eps, int64_t t, cudaStream_t stream) {
  MNIST_CHECK(t >= 1, "adam_update: step t must be >= 1, got ", t);
  if (n == 0) return;
  MNIST_CHECK(p && m && v && g, "adam_update: null pointer");
  MNIST_CHECK(p != m && p != v && m != v && g != p && g != m && g != v, "adam_update: p, m, v, g must be distinct");
  launch_kernel(adam_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, p, m, v, g, n, lr, b1, b2, eps, t, nullptr,
                nullptr, RoundedParams{});
  MNIST_LAUNCH_CHECK(stream);
}

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, const TrainCounters* counters,
                 float b1, float b2, float eps, cudaStream_t stream) {
  MNIST_CHECK(counters, "adam_update: null counters");
  if (n == 0) return;
  MNIST_CHECK(p && m && v && g, "adam_update: null pointer");
  MNIST_CHECK(p != m && p != v && m != v && g != p && g != m && g != v, "adam_update: p, m, v, g must be distinct");
  // (read only: no advance count, so the kernel never writes them)
  launch_kernel(adam_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, p, m, v, g, n, 0.0f, b1, b2, eps, int64_t(0),
                const_cast<TrainCounters*>(counters), nullptr, RoundedParams{});
  MNIST_LAUNCH_CHECK(stream);
}

void adam_update_and_advance(float* p, float* m, float* v, const float* g, std::size_t n, TrainCounters* counters,
                             float b1, float b2, float eps, cudaStream_t stream, unsigned* advance,
                             const RoundedParams& rounded) {
  MNIST_CHECK(counters && advance, "adam_update_and_advance: null counters or advance count");
  MNIST_CHECK(n == 0 || (p && m && v && g), "adam_update_and_advance: null pointer");
  MNIST_CHECK(n == 0 || (p != m && p != v && m != v && g != p && g != m && g != v),
              "adam_update_and_advance: p, m, v, g must be distinct");
  const RoundedParams rq = rounded_arg(rounded, "adam_update_and_advance", {p, m, v, g});
  launch_kernel(adam_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, p, m, v, g, n, 0.0f, b1, b2, eps, int64_t(0),
                counters, advance, rq);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
