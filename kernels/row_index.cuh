// Which rows of a device-resident dataset a kernel reads in place: RowIndex, shared by the GEMMs'
// X operand (DenseInput, kernels/dense.cuh) and the loss kernels' labels (LabelInput,
// kernels/labels.cuh). Row r of the batch is dataset row src(r) = idx[base + r], or base + r
// without idx, where base = first, plus counters->batch · stride when counters are given: the
// training step's rows of the epoch's order, with the batch index read on the device (so a captured
// graph serves every step).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/train_counters.cuh"

namespace mnist::cuda {

struct RowIndex {
  const int32_t* idx = nullptr;
  int64_t first = 0;
  const TrainCounters* counters = nullptr;
  int stride = 0;
};

// The batch's first row's position in idx (or in the dataset without idx): first plus the counters'
// batch offset, read once by a caller that looks up several rows.
__device__ __forceinline__ int64_t row_base(const RowIndex& x) {
  return x.first + (x.counters ? int64_t(x.counters->batch) * x.stride : 0);
}
// Row r's dataset row, given row_base(x).
__device__ __forceinline__ int64_t source_row(const RowIndex& x, int64_t base, int64_t r) {
  return x.idx ? int64_t(x.idx[base + r]) : base + r;
}

}  // namespace mnist::cuda
