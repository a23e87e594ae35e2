// Metrics: the loss sum and correct count, accumulated on the device across a whole epoch (or an
// evaluation) and read back once with a single synchronisation.
//
// accumulate_metrics is the block-wide reduction (cub::BlockReduce) that the fused softmax +
// cross-entropy kernel ends with: every thread contributes its rows' loss and hits, thread 0 adds
// the block's totals to the accumulators. The loss kernel runs as ONE block, so the additions
// happen in a fixed order and the sums are bitwise reproducible (no atomics across blocks).
#pragma once

#include <cstdint>

namespace mnist::cuda {

struct Metrics {
  double loss_sum = 0;             // Σ per-example cross-entropy
  unsigned long long correct = 0;  // examples whose argmax equals the label
};

}  // namespace mnist::cuda

#if defined(__CUDACC__)
#include <cub/block/block_reduce.cuh>

namespace mnist::cuda {

// Block-wide: every thread of the (THREADS-thread, 1-D) block must call it. Adds Σ loss and Σ hits
// over the block to *m (plain read-modify-write by thread 0: callers launch a single block).
template <int THREADS>
__device__ __forceinline__ void accumulate_metrics(Metrics* __restrict__ m, double loss, unsigned long long hits) {
  using LossReduce = cub::BlockReduce<double, THREADS>;
  using HitReduce = cub::BlockReduce<unsigned long long, THREADS>;
  __shared__ typename LossReduce::TempStorage loss_tmp;
  __shared__ typename HitReduce::TempStorage hit_tmp;
  const double block_loss = LossReduce(loss_tmp).Sum(loss);
  const unsigned long long block_hits = HitReduce(hit_tmp).Sum(hits);
  if (threadIdx.x == 0) {
    m->loss_sum += block_loss;
    m->correct += block_hits;
  }
}

}  // namespace mnist::cuda
#endif
