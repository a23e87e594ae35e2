#include "kernels/softmax_xent.cuh"

#include <cmath>

#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kXentThreads = 256;
constexpr int kSoftmaxThreads = 128;

// exp(z - zmax) for z <= zmax, with the rounding error of the subtraction folded back in. z - zmax
// rounds to s with an error t of up to |s|·2⁻²⁴, and exp turns an absolute error of its argument
// into a relative error of its result of the same size (up to 2.8e-6 at s = -47, the H200 test
// failure of profiling/NOTES.md). t is exact (Knuth's TwoSum, additions only, so no FMA contraction
// can change it) and exp(s + t) = exp(s)·(1 + t) to within t²/2 < 1e-10 relative.
__device__ __forceinline__ float exp_shifted(float z, float zmax) {
  const float s = z - zmax;
  const float zpart = s - (s - z);                       // TwoSum of z and -zmax: the parts of
  const float t = (z - zpart) - (zmax + (s - z));        // each in s, and what s lost of them
  const float e = expf(s);
  return isfinite(t) ? fmaf(e, t, e) : e;  // t is NaN only for infinite logits: keep expf's 0/NaN
}

// logits [B,C], labels [B] -> dlogits [B,C] (optional), *metrics += (Σ loss, Σ hits).
// One block; thread t handles rows t, t + 256, ... The arithmetic of cpu::softmax_xent, in a form
// without cancellation, so that every output has a small RELATIVE error whatever the logits:
//   e_j = exp(z_j - zmax) (exp_shifted), first-maximum argmax `arg` (e_arg = 1);
//   loss = log1p(Σ_{j≠arg} e_j) - (z_y - zmax): two non-negative terms (log(sum) loses the
//          small loss of a confident row to the rounding of 1 + small);
//   dlogits_j = e_j / sum · scale for j ≠ y, and dlogits_y = -(Σ_{j≠y} e_j) / sum · scale
//          (p_y - 1 cancels when p_y is near 1: a float p_y = 1 - 1e-3 leaves 1e-3 with a relative
//          error of 6e-5, and p_y - 1 is 0 for any p_y within 6e-8 of 1).
// Accumulated in double.
__global__ void __launch_bounds__(kXentThreads)
    softmax_xent_kernel(float* dlogits, Metrics* metrics, const float* logits, const uint8_t* labels, int B, int C,
                        float grad_scale) {
  double loss = 0;
  unsigned long long hits = 0;
  for (int r = int(threadIdx.x); r < B; r += kXentThreads) {
    const float* z = logits + std::size_t(r) * C;
    int arg = 0;
    for (int j = 1; j < C; ++j)
      if (z[j] > z[arg]) arg = j;
    const float zmax = z[arg];
    const int y = labels[r];
    float others = 0.0f, rest = 0.0f;  // Σ_{j≠arg} e_j, Σ_{j≠y} e_j
    for (int j = 0; j < C; ++j) {
      const float e = j == arg ? 1.0f : exp_shifted(z[j], zmax);
      if (j != arg) others += e;
      if (j != y) rest += e;
    }
    const float lse = log1pf(others);
    loss += y < C ? double(lse - (z[y] - zmax)) : double(NAN);
    hits += (arg == y) ? 1ull : 0ull;
    if (dlogits) {
      const float sum = 1.0f + others;
      float* d = dlogits + std::size_t(r) * C;
      for (int j = 0; j < C; ++j) {
        const float e = j == arg ? 1.0f : exp_shifted(z[j], zmax);
        d[j] = (j == y ? -rest / sum : e / sum) * grad_scale;
      }
    }
  }
  accumulate_metrics<kXentThreads>(metrics, loss, hits);
}

// logits [B,C] -> probs [B,C]. One thread per row (rows are short: C is the number of classes).
// p_j = e_j / Σ e (exp_shifted, e_arg = 1): every probability to a small relative error.
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
