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

// row_base and source_row in steps, for a kernel that hides each of the dependent loads behind
// other work (the tail and head kernels' labels): the counters' batch is loaded at construction,
// settle() computes the base where the batch is first needed, index(r) loads row r's index, and
// source(r, idx) gives its dataset row. Each value stays as loaded (int32) until the next address
// needs it; the empty asm in settle() keeps the compiler from hoisting the base's arithmetic next
// to the batch's load, where it would wait for it.
struct StagedRowIndex {
  RowIndex x;
  int32_t batch;
  int64_t base;
  __device__ explicit StagedRowIndex(const RowIndex& r)
      : x(r), batch(r.counters ? r.counters->batch : 0), base(r.first) {}
  __device__ void settle() {
    asm volatile("" : "+r"(batch));
    base = x.first + int64_t(batch) * x.stride;
  }
  __device__ int32_t index(int64_t r) const { return x.idx ? x.idx[base + r] : 0; }
  __device__ int64_t source(int64_t r, int32_t idx) const { return x.idx ? int64_t(idx) : base + r; }
};

}  // namespace mnist::cuda
