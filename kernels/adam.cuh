// Adam as Keras computes it, in ONE launch over the flat parameter span (every tensor of the
// model: layout in layers/model.hpp). Twin of cpu::adam_update.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/train_counters.cuh"

namespace mnist::cuda {

// p, m, v, g: four distinct arrays (checked). Over n elements of p, m, v, g at step t (1-based),
// with learning rate lr:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  p -= lr · sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps)
// The bias-corrected rate is computed once per block in double, as the CPU twin does.
void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1, float b2,
                 float eps, int64_t t, cudaStream_t stream);

// The same with lr = counters->lr and t = counters->step read on the device, so a captured graph
// serves every step. The counters are only read: advance_train_counters (train_counters.cuh)
// moves them on for the next step.
void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, const TrainCounters* counters,
                 float b1, float b2, float eps, cudaStream_t stream);

}  // namespace mnist::cuda
