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
  const int tid = int(threadIdx.x);
  const int64_t r = int64_t(blockIdx.x) * kXentThreads + tid;
  double loss = 0;
  unsigned hit = 0;
  if (r < B) {
    const std::size_t o = std::size_t(r) * C;
    const XentRow row = xent_row(logits + o, C, label_of(labels, r), grad_scale, dlogits ? dlogits + o : nullptr, nullptr);
    loss = row.loss;
    hit = row.hit ? 1u : 0u;
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
  softmax_xent_kernel<<<unsigned(blocks), kXentThreads, 0, stream>>>(dlogits, metrics, scratch.blocks, scratch.done,
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
