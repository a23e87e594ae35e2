// Where a kernel that needs the labels of a batch finds them: LabelInput, taken by softmax_xent,
// head_train/head_evaluate and tail_train/tail_evaluate.
//
// Either the batch's own array labels [B] (a gathered batch, a test's labels), or the dataset's
// labels read through the epoch's order: row r's label is labels[idx[first + counters->batch ·
// stride + r]] (RowIndex, kernels/row_index.cuh), the rows of the training step whose batch index
// the device counters hold. The second form is what lets the graph and tail paths start a step
// with layer 0's forward: the label of a row is read by the one thread that uses it, two dependent
// loads (the index, then the byte) in place of a gather launch and its [B] array.
#pragma once

#include <cstdint>

#include "kernels/row_index.cuh"

namespace mnist::cuda {

struct LabelInput {
  const uint8_t* labels = nullptr;
  RowIndex rows;  // unused (all zero) for a batch's own array

  LabelInput() = default;
  LabelInput(const uint8_t* batch) : labels(batch) {}  // NOLINT: implicit on purpose (labels [B])
  // Row r's label labels[src(r)] (kernels/row_index.cuh).
  static LabelInput by_index(const uint8_t* labels, const int32_t* idx, int64_t first,
                             const TrainCounters* counters = nullptr, int stride = 0) {
    LabelInput in;
    in.labels = labels;
    in.rows = {idx, first, counters, stride};
    return in;
  }
  bool present() const { return labels != nullptr; }
};

}  // namespace mnist::cuda
