// TrainCounters: the per-step values that the captured training-step graphs read from device
// memory, so that a graph, captured once, serves every step of every epoch and is never
// re-captured (the uncaptured launches of a short last batch read them too).
//
// Protocol (layers/cuda_engine.cu, train_steps): before each call the host writes {step = the
// next optimiser step, batch = progress.next_batch (0 at the start of an epoch, more when an
// interrupted epoch resumes), blocks_done = 0, lr} with one asynchronous copy; the kernels of a
// step read `step` (dropout, Adam), `batch` (the gather) and `lr` (Adam); the last kernel of the
// step, adam_update, advances step and batch once all of its blocks have read them (its last
// block does it, see kernels/adam.cu).
#pragma once

#include <cstdint>

namespace mnist::cuda {

struct TrainCounters {
  int64_t step = 0;          // optimiser step being run, 1-based: Adam's t and the dropout counter
  int32_t batch = 0;         // batch index within the epoch: the gather reads order[batch*stride ...]
  uint32_t blocks_done = 0;  // adam_update's count of finished blocks; 0 between launches
  float lr = 0;              // learning rate of the current epoch
  uint32_t reserved = 0;
};

}  // namespace mnist::cuda
