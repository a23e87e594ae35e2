#include "kernels/softmax_xent.cuh"

#include <cmath>

#include "kernels/step_math.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kXentThreads = 256;
constexpr int kSoftmaxThreads = 128;

// Fuses softmax, cross-entropy loss, its gradient and the top-1 hit count; the probabilities are
// never stored. Reads logits [B,C], labels [B]; writes dlogits [B,C] (optional) and adds
// (Σ loss, Σ hits) to *metrics. One block; thread t handles rows t, t + 256, ... Each row is
// xent_row (step_math.cuh, shared with the fused step); the sums are accumulated in double, then
// reduced across the block in a fixed order (accumulate_metrics, metrics.cuh).
__global__ void __launch_bounds__(kXentThreads)
    softmax_xent_kernel(float* __restrict__ dlogits, Metrics* __restrict__ metrics, const float* __restrict__ logits,
                        const uint8_t* __restrict__ labels, int B, int C, float grad_scale) {
  double loss = 0;
  unsigned long long hits = 0;
  for (int r = int(threadIdx.x); r < B; r += kXentThreads) {
    const std::size_t o = std::size_t(r) * C;
    const XentRow row = xent_row(logits + o, C, labels[r], grad_scale, dlogits ? dlogits + o : nullptr, nullptr);
    loss += row.loss;
    hits += row.hit ? 1ull : 0ull;
  }
  accumulate_metrics<kXentThreads>(metrics, loss, hits);
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

void softmax_xent(float* dlogits, Metrics* metrics, const float* logits, const uint8_t* labels, int B, int C,
                  float grad_scale, cudaStream_t stream) {
  MNIST_CHECK(B >= 0 && C > 0, "softmax_xent: invalid sizes B=", B, " C=", C);
  if (B == 0) return;
  MNIST_CHECK(metrics && logits && labels, "softmax_xent: null pointer");
  MNIST_CHECK(dlogits != logits, "softmax_xent: dlogits must not alias logits");
  softmax_xent_kernel<<<1, kXentThreads, 0, stream>>>(dlogits, metrics, logits, labels, B, C, grad_scale);
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
