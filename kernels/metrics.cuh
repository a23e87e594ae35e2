// Metrics: the loss sum and correct count, accumulated on the device across a whole epoch (or an
// evaluation) and read back once with a single synchronisation.
//
// softmax_xent (softmax_xent.cuh) adds each launch's sums in a fixed order: every block reduces its
// rows in shared memory in one fixed tree, and one block (the only one, or the last of the grid to
// finish) adds the blocks' sums in block order, so the sums are bitwise reproducible and do not
// depend on which block finishes when (no floating-point atomics). The fused step and evaluation
// (fused_step.cuh) add theirs in row / block order as well. A Metrics is also softmax_xent's
// per-block slot (XentScratch).
#pragma once

namespace mnist::cuda {

struct Metrics {
  double loss_sum = 0;             // Σ per-example cross-entropy
  unsigned long long correct = 0;  // examples whose argmax equals the label
};

}  // namespace mnist::cuda
