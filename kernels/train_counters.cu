#include "kernels/train_counters.cuh"

#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

// Fuses nothing. Reads and writes the one TrainCounters: step += 1, batch += 1. One thread: it
// is stream-ordered after the step's last reader (adam_update), so nothing races with it.
__global__ void advance_train_counters_kernel(TrainCounters* __restrict__ counters) {
  counters->step += 1;
  counters->batch += 1;
}

}  // namespace

void advance_train_counters(TrainCounters* counters, cudaStream_t stream) {
  MNIST_CHECK(counters, "advance_train_counters: null counters");
  advance_train_counters_kernel<<<1, 1, 0, stream>>>(counters);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
