// TrainCounters: the per-step values that the captured training-step graphs read from device
// memory, so that a graph, captured once, serves every step of every epoch and is never
// re-captured (the uncaptured launches of a short last batch read them too).
//
// Protocol (layers/cuda_engine.cu, train_steps): before each call the host writes {step = the
// next optimiser step, batch = progress.next_batch (0 at the start of an epoch, more when an
// interrupted epoch resumes), lr} with one asynchronous copy; the kernels of a
// step read `step` (dropout, Adam), `batch` (the gather) and `lr` (Adam); the last kernel of the
// step, advance_train_counters, moves step and batch on by one once every reader of the step
// has run (stream order). The fused step (kernels/fused_step.cu) advances them itself, by its
// chunk's step count, after its last grid barrier.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace mnist::cuda {

struct TrainCounters {
  int64_t step = 0;          // optimiser step being run, 1-based: Adam's t and the dropout counter
  int32_t batch = 0;         // batch index within the epoch: the gather reads order[batch*stride ...]
  float lr = 0;              // learning rate of the current epoch
  uint32_t reserved = 0;
};

// counters->step += 1, counters->batch += 1, on the device (one thread): the graph path's last
// launch of a training step, after adam_update, the last kernel that reads them.
void advance_train_counters(TrainCounters* counters, cudaStream_t stream);

}  // namespace mnist::cuda
