// Fused softmax + sparse cross-entropy (loss, gradient and correct count in one pass), and the
// row-wise softmax used for predictions. Twins of cpu::softmax_xent / cpu::softmax.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/metrics.cuh"

namespace mnist::cuda {

// Over logits [B,C] and labels [B] (each < C): adds Σ_rows (logsumexp(z) - z[label]) to
// metrics->loss_sum and the number of rows whose argmax (first maximum) equals the label to
// metrics->correct (device accumulators, see metrics.cuh); when dlogits [B,C] is not null it
// receives (softmax(z) - onehot(label)) * grad_scale (dlogits must not alias logits). Numerically
// stable: exponents are taken of z - max(z) <= 0. One block of 256 threads, one row per thread per
// pass: the metric sums are reduced in a fixed order (bitwise reproducible). A label >= C makes
// that row's loss NaN. (The CPU twin returns the loss and writes *correct; here both accumulate on
// the device.)
void softmax_xent(float* dlogits, Metrics* metrics, const float* logits, const uint8_t* labels, int B, int C,
                  float grad_scale, cudaStream_t stream);

// probs [B,C] = row-wise softmax of logits [B,C]. probs may alias logits.
void softmax(float* probs, const float* logits, int B, int C, cudaStream_t stream);

}  // namespace mnist::cuda
