// Inverted dropout with counter-based cuRAND Philox masks (twins of cpu::dropout_forward /
// cpu::dropout_backward in layers/cpu_ops.hpp).
//
// The mask is a pure function of (seed, step, layer, element index): element i of a layer's
// [B, width] activation is kept iff rng::draw(seed, kDropout, layer, i, step) >= threshold(p),
// the draw computed by curand_Philox4x32_10 on the counter layout of kernels/philox.hpp, so the
// masks are bit-identical to the CPU path's and never stored: dropout_backward regenerates its
// mask, and the engine's backward needs none (relu_dropout_backward reads it off the post-dropout
// activation; dropout_backward itself serves the tests).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/train_counters.cuh"

namespace mnist::cuda {

// Which mask: drop probability p in [0, 1), the run's seed, the layer, and the step, read from
// counters->step on the device when `counters` is set (graph replays), from `step` otherwise.
struct DropoutSpec {
  float p = 0;
  uint64_t seed = 0;
  uint64_t step = 0;
  uint32_t layer = 0;
  const TrainCounters* counters = nullptr;
};

// out [n] = keep(i) ? in[i] / (1-p) : 0, n = B * width elements. out may alias in.
void dropout_forward(float* out, const float* in, std::size_t n, const DropoutSpec& drop, cudaStream_t stream);

// dIn [n] = keep(i) ? dOut[i] / (1-p) : 0 with the forward call's mask (regenerated). May alias.
void dropout_backward(float* dIn, const float* dOut, std::size_t n, const DropoutSpec& drop,
                      cudaStream_t stream);

// The same with the CPU twins' argument list (host step).
inline void dropout_forward(float* out, const float* in, std::size_t n, float p, uint64_t seed, uint64_t step,
                            uint32_t layer, cudaStream_t stream) {
  dropout_forward(out, in, n, DropoutSpec{p, seed, step, layer, nullptr}, stream);
}
inline void dropout_backward(float* dIn, const float* dOut, std::size_t n, float p, uint64_t seed, uint64_t step,
                             uint32_t layer, cudaStream_t stream) {
  dropout_backward(dIn, dOut, n, DropoutSpec{p, seed, step, layer, nullptr}, stream);
}

// Gradient through ReLU + dropout from the post-dropout activation alone (no mask needed):
// dZ [n] = D[i] > 0 ? dD[i] * scale : 0, where D = dropout(ReLU(Z)) and scale = 1/(1-p) (1 when
// there is no dropout). D > 0 iff the element was kept and ReLU passed it, so this equals
// cpu::dropout_backward followed by the ReLU mask of cpu::dense_backward. dZ may alias dD, not D.
void relu_dropout_backward(float* dZ, const float* dD, const float* D, std::size_t n, float scale,
                           cudaStream_t stream);

// 1 / (1 - p) rounded as the CPU path rounds it (float arithmetic).
inline float dropout_scale(float p) { return 1.0f / (1.0f - p); }

}  // namespace mnist::cuda
