// Where a kernel that needs the labels of a batch finds them: LabelInput, taken by softmax_xent,
// head_train/head_evaluate and tail_train/tail_evaluate.
//
// Either the batch's own array labels [B] (a gathered batch, a test's labels), or the dataset's
// labels read through the epoch's order: row r's label is labels[idx[first + counters->batch ·
// stride + r]], the rows of the training step whose batch index the device counters hold
// (kernels/train_counters.cuh). The second form is what lets the graph and tail paths start a step
// with layer 0's forward: the label of a row is read by the one thread that uses it, two dependent
// loads (the index, then the byte) in place of a gather launch and its [B] array.
#pragma once

#include <cstdint>

#include "kernels/train_counters.cuh"

namespace mnist::cuda {

struct LabelInput {
  const uint8_t* labels = nullptr;
  const int32_t* idx = nullptr;
  int64_t first = 0;
  const TrainCounters* counters = nullptr;
  int stride = 0;

  LabelInput() = default;
  LabelInput(const uint8_t* batch) : labels(batch) {}  // NOLINT: implicit on purpose (labels [B])
  // Row r's label labels[idx[first + counters->batch · stride + r]] (counters may be null: no
  // batch offset; idx may be null too: labels[first + r], consecutive rows).
  static LabelInput by_index(const uint8_t* labels, const int32_t* idx, int64_t first,
                             const TrainCounters* counters = nullptr, int stride = 0) {
    LabelInput in;
    in.labels = labels, in.idx = idx, in.first = first, in.counters = counters, in.stride = stride;
    return in;
  }
  bool present() const { return labels != nullptr; }
};

}  // namespace mnist::cuda
