#include "kernels/softmax_xent.cuh"

#include <cmath>

#include "kernels/step_math.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kXentThreads = kXentRowsPerBlock;  // one row per thread
constexpr int kXentWarps = kXentThreads / 32;
constexpr int kSoftmaxThreads = 128;
static_assert(kXentThreads % 32 == 0 && kXentThreads <= 1024, "whole warps, at most 1024 threads a block");
// Up to this many classes the block's logits and gradients go through shared memory (2 x 256 rows
// of xent_stride(C) floats, 34 KB at 16), read and written whole by coalesced loads and stores. xent_row reads a row's
// logits one at a time, comparing each before the next load (and z[arg] again by its index): from
// global memory that was ~15 loads a row, each waiting on the one before (sass.py "loads after a
// wait", seventeenth session), and the gradient's C stores a row strided C floats apart.
constexpr int kXentStageMaxC = 16;
// Loads a thread has in flight before it stores them (the staging copies).
constexpr int kXentStageLoads = 8;

// The staged rows' stride: C rounded up to odd, so that the 32 rows a warp reads at one class fall
// in 32 distinct banks (at C = 10 they were two to a bank).
__host__ __device__ constexpr int xent_stride(int C) { return C | 1; }

// Copies the rows' n = rows·C floats between global memory (packed, [rows][C]) and the staged rows
// (stride S), every thread of the block kXentStageLoads at a time: all of a thread's loads of a
// round issued before its first store; the global side coalesced.
template <bool TO_SHARED>
__device__ __forceinline__ void copy_rows(float* __restrict__ shared, float* __restrict__ global, int n, int C) {
  const int S = xent_stride(C);
  for (int i0 = int(threadIdx.x); i0 < n; i0 += kXentStageLoads * kXentThreads) {
    float v[kXentStageLoads];
#pragma unroll
    for (int u = 0; u < kXentStageLoads; ++u) {
      const int i = i0 + u * kXentThreads;
      v[u] = i >= n ? 0.0f : TO_SHARED ? global[i] : shared[(i / C) * S + i % C];
    }
#pragma unroll
    for (int u = 0; u < kXentStageLoads; ++u) {
      const int i = i0 + u * kXentThreads;
      if (i < n) (TO_SHARED ? shared[(i / C) * S + i % C] : global[i]) = v[u];
    }
  }
}

// Fuses softmax, cross-entropy loss, its gradient and the top-1 hit count; the probabilities are
// never stored. Reads logits [B,C], labels [B]; writes dlogits [B,C] (optional) and adds
// (Σ loss, Σ hits) to *metrics in the order of the header's bitwise contract: thread t of block b
// computes row b·256 + t with xent_row (step_math.cuh, shared with the fused step); the block sums
// its rows in shared memory (a pairwise tree in each warp, then the warps in order); a grid of one
// block adds that to *metrics, a larger one writes it to block_sums[b] and the last block to
// finish (threadfence, then its count on *done) adds the blocks' sums in block order and resets
// *done.
__global__ void __launch_bounds__(kXentThreads)
    softmax_xent_kernel(float* __restrict__ dlogits, Metrics* __restrict__ metrics, Metrics* block_sums,
                        unsigned* done, const float* __restrict__ logits, const LabelInput labels, int B,
                        int C, float grad_scale) {
  __shared__ double s_loss[kXentThreads];
  __shared__ unsigned s_hit[kXentThreads];
  __shared__ bool s_last;
  extern __shared__ float s_rows[];  // staged (C <= kXentStageMaxC): the block's logits, then its gradients
  const int tid = int(threadIdx.x);
  const int64_t r0 = int64_t(blockIdx.x) * kXentThreads, r = r0 + tid;
  const int rows = B - r0 < kXentThreads ? int(B - r0) : kXentThreads;
  const bool staged = C <= kXentStageMaxC;  // (uniform)
  const int S = xent_stride(C);
  float* const s_z = s_rows;
  float* const s_d = s_rows + kXentThreads * S;
  if (staged) {
    copy_rows<true>(s_z, const_cast<float*>(logits) + std::size_t(r0) * C, rows * C, C);  // (read only)
    __syncthreads();
  }
  double loss = 0;
  unsigned hit = 0;
  if (r < B) {
    const std::size_t o = std::size_t(r) * C;
    const uint8_t y = label_of(labels, r);
    // (two calls, so that each reads one address space: a pointer that may be either would make
    // every access a generic one)
    const XentRow row = staged ? xent_row(s_z + tid * S, C, y, grad_scale, dlogits ? s_d + tid * S : nullptr, nullptr)
                               : xent_row(logits + o, C, y, grad_scale, dlogits ? dlogits + o : nullptr, nullptr);
    loss = row.loss;
    hit = row.hit ? 1u : 0u;
  }
  if (staged && dlogits) {
    __syncthreads();
    copy_rows<false>(s_d, dlogits + std::size_t(r0) * C, rows * C, C);
  }
  s_loss[tid] = loss;
  s_hit[tid] = hit;
  __syncthreads();
  // Pairwise within each warp (the order of cub's warp reduction: step k adds lane i + k into
  // lane i for i a multiple of 2k); each step reads only what the step before wrote.
  for (int k = 1; k < 32; k *= 2) {
    if ((tid & (2 * k - 1)) == 0) {
      s_loss[tid] += s_loss[tid + k];
      s_hit[tid] += s_hit[tid + k];
    }
    __syncthreads();
  }
  if (tid == 0) {
    double total = s_loss[0];
    unsigned hits = s_hit[0];
    for (int w = 1; w < kXentWarps; ++w) {
      total += s_loss[32 * w];
      hits += s_hit[32 * w];
    }
    if (gridDim.x == 1) {
      metrics->loss_sum += total;
      metrics->correct += hits;
    } else {
      block_sums[blockIdx.x].loss_sum = total;
      block_sums[blockIdx.x].correct = hits;
      __threadfence();  // the block's sums before its count
      s_last = atomicAdd(done, 1u) == gridDim.x - 1;
    }
  }
  if (gridDim.x == 1) return;
  __syncthreads();
  if (!s_last) return;
  // The last block: every other block's sums are out. Its threads fetch them 256 at a time (in
  // parallel), thread 0 adds them in block order.
  __threadfence();
  const volatile Metrics* sums = block_sums;
  double total = 0;
  unsigned long long hits = 0;
  for (unsigned base = 0; base < gridDim.x; base += kXentThreads) {
    const unsigned b = base + unsigned(tid), n = gridDim.x - base < kXentThreads ? gridDim.x - base : kXentThreads;
    if (b < gridDim.x) {
      s_loss[tid] = sums[b].loss_sum;
      s_hit[tid] = unsigned(sums[b].correct);  // <= 256
    }
    __syncthreads();
    if (tid == 0)
      for (unsigned i = 0; i < n; ++i) {
        total += s_loss[i];
        hits += s_hit[i];
      }
    __syncthreads();
  }
  if (tid == 0) {
    metrics->loss_sum += total;
    metrics->correct += hits;
    *done = 0;  // ready for the next launch (graph replays included)
  }
}

// logits [B,C] -> probs [B,C] (may alias: neither is __restrict__). One thread per row (rows are
// short: C is the number of classes). p_j = e_j / Σ e (exp_shifted, e_arg = 1): every probability
// to a small relative error.
__global__ void __launch_bounds__(kSoftmaxThreads)
    softmax_kernel(float* probs, const float* logits, int B, int C) {
  const int r = int(blockIdx.x) * kSoftmaxThreads + int(threadIdx.x);
  if (r >= B) return;
  const float* z = logits + std::size_t(r) * C;
  float* p = probs + std::size_t(r) * C;
  float zmax = z[0];
  for (int j = 1; j < C; ++j) zmax = fmaxf(zmax, z[j]);
  float sum = 0.0f;
  for (int j = 0; j < C; ++j) {
    const float e = exp_shifted(z[j], zmax);
    p[j] = e;
    sum += e;
  }
  for (int j = 0; j < C; ++j) p[j] /= sum;
}

}  // namespace

void softmax_xent(float* dlogits, Metrics* metrics, const XentScratch& scratch, const float* logits,
                  const LabelInput& labels, int B, int C, float grad_scale, cudaStream_t stream) {
  MNIST_CHECK(B >= 0 && C > 0, "softmax_xent: invalid sizes B=", B, " C=", C);
  if (B == 0) return;
  MNIST_CHECK(metrics && logits && labels.present(), "softmax_xent: null pointer");
  MNIST_CHECK(dlogits != logits, "softmax_xent: dlogits must not alias logits");
  const int blocks = softmax_xent_blocks(B);
  MNIST_CHECK(blocks == 1 || (scratch.blocks && scratch.done && scratch.capacity >= blocks),
              "softmax_xent: ", B, " rows need a scratch of ", blocks, " block slots and a counter (have ",
              scratch.capacity, ")");
  const std::size_t smem =
      C <= kXentStageMaxC ? 2 * std::size_t(kXentThreads) * std::size_t(xent_stride(C)) * sizeof(float) : 0;
  softmax_xent_kernel<<<unsigned(blocks), kXentThreads, smem, stream>>>(dlogits, metrics, scratch.blocks, scratch.done,
                                                                        logits, labels, B, C, grad_scale);
  MNIST_LAUNCH_CHECK(stream);
}

void softmax(float* probs, const float* logits, int B, int C, cudaStream_t stream) {
  MNIST_CHECK(B >= 0 && C > 0, "softmax: invalid sizes B=", B, " C=", C);
  if (B == 0) return;
  MNIST_CHECK(probs && logits, "softmax: null pointer");
  const unsigned blocks = unsigned((B + kSoftmaxThreads - 1) / kSoftmaxThreads);
  softmax_kernel<<<blocks, kSoftmaxThreads, 0, stream>>>(probs, logits, B, C);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
