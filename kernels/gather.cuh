// Batch gather (uint8 images resident on the device -> scaled floats) and the per-epoch shuffle
// on the device. Twins of cpu::gather_batch / cpu::shuffle_order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/train_counters.cuh"

namespace mnist::cuda {

// A pixel as the GEMMs see it: the byte scaled to [0, 1] (one rounding: float(u) is exact). The one
// expression of gather_batch and of the GEMMs that read the images in place (DenseInput,
// kernels/dense.cuh), so both give the same floats bit for bit.
__host__ __device__ __forceinline__ float pixel_value(uint8_t u) { return float(u) * (1.0f / 255.0f); }

// X [B,D] = images[idx[r]] / 255 (uint8 rows of D pixels), y [B] = labels[idx[r]] (y may be
// null, then labels may be too). idx [B] is a device array of row indices.
void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, const int32_t* idx, int B,
                  int D, cudaStream_t stream);

// The training step's gather: rows idx[counters->batch * stride + r] for r < B, the batch index
// read on the device (graph replays); stride is the full batch size.
void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, const int32_t* idx,
                  const TrainCounters* counters, int stride, int B, int D, cudaStream_t stream);

// Consecutive rows first .. first+B-1 (evaluation and prediction, no permutation).
void gather_rows(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, int64_t first, int B, int D,
                 cudaStream_t stream);

// Bytes of device scratch shuffle_order needs for n examples (its keys and indices, and CUB's
// radix-sort temp storage). Query once at set-up and allocate; the shuffle allocates nothing.
std::size_t shuffle_temp_bytes(int n);

// order [n] = 0..n-1 sorted by (rng::shuffle_key(seed, epoch, i), i): keys drawn with cuRAND's
// Philox, then a stable CUB radix sort of (key, index) pairs. Equal to cpu::shuffle_order.
// temp: at least shuffle_temp_bytes(n) bytes of device memory.
void shuffle_order(int32_t* order, void* temp, std::size_t temp_bytes, int n, uint64_t seed, uint64_t epoch,
                   cudaStream_t stream);

// order [n] = 0, 1, ..., n-1 (training without shuffling).
void identity_order(int32_t* order, int n, cudaStream_t stream);

}  // namespace mnist::cuda
