// Which rows of a device-resident dataset a kernel reads in place: RowIndex, shared by the GEMMs'
// X operand (DenseInput, kernels/dense.cuh) and the loss kernels' labels (LabelInput,
// kernels/labels.cuh). Row r of the batch is dataset row src(r) = idx[base + r], or base + r
// without idx, where base = first, plus counters->batch · stride when counters are given: the
// training step's rows of the epoch's order, with the batch index read on the device (so a captured
// graph serves every step).
#pragma once

#include <cstdint>

#include "kernels/train_counters.cuh"

namespace mnist::cuda {

struct RowIndex {
  const int32_t* idx = nullptr;
  int64_t first = 0;
  const TrainCounters* counters = nullptr;
  int stride = 0;
};

}  // namespace mnist::cuda
