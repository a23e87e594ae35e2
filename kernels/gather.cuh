// Batch gather (uint8 images resident on the device -> scaled floats) and the per-epoch shuffle
// on the device. Twins of cpu::gather_batch / cpu::shuffle_order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/precision.hpp"
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

// The training step's X (as above, no labels) written entirely BEFORE the kernel's pdl_wait()
// (kernels/pdl.cuh): launched programmatically behind a kernel that neither reads nor writes X, it
// runs beside that kernel instead of after it (the tail path gathers X for layer 0's weight GEMM
// while the tail kernel runs: that GEMM is faster on floats than on the images). Every X element
// is gathered whatever the grid: a grid-stride loop over a grid that stays resident beside the
// kernel before it (4 blocks an SM), where one block a row would leave most rows waiting behind
// blocks parked at their wait. Bit for bit gather_batch's X, each value then rounded to `round`
// (round_gemm_input: as a GEMM at that precision reads it, dense_weight_partials' x_rounded).
void gather_batch_overlapped(float* X, const uint8_t* images, const int32_t* idx, const TrainCounters* counters,
                             int stride, int B, int D, cudaStream_t stream,
                             GemmPrecision round = GemmPrecision::FP32);

// Consecutive rows first .. first+B-1 (evaluation and prediction, no permutation).
void gather_rows(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, int64_t first, int B, int D,
                 cudaStream_t stream);

// Bytes of device scratch shuffle_order needs for n examples (keys, slots and bucket counts of the
// bucket shuffle; CUB's pairs and radix-sort temp storage). Query once at set-up and allocate; the
// shuffle allocates nothing. The scratch must be zero-filled before its first use with a given n
// (cudaMemset once): the bucket counts and a completion counter live in it, at places that depend
// on n, and every call leaves them zero.
std::size_t shuffle_temp_bytes(int n);

// order [n] = 0..n-1 sorted by (rng::shuffle_key(seed, epoch, i), i): keys drawn with cuRAND's
// Philox, then, up to kBucketShuffleMax examples, the bucket shuffle (kernels/gather.cu: the keys'
// top bits as buckets, three launches, each index ranked in its bucket by (key, index)), above it
// CUB's stable radix sort of (key, index) pairs. Either is equal to cpu::shuffle_order, bit for bit,
// whatever the order in which the GPU runs their blocks. temp: shuffle_temp_bytes(n) bytes or more,
// zeroed once for this n (above); calls sharing it must not run concurrently.
constexpr int kBucketShuffleMax = 1 << 18;  // (16 keys a bucket on average there)
void shuffle_order(int32_t* order, void* temp, std::size_t temp_bytes, int n, uint64_t seed, uint64_t epoch,
                   cudaStream_t stream);

// Tests and benchmarks only: force CUB's sort at any n (to compare the two), and AND every key with
// key_mask (a mask of few bits makes equal keys and crowded buckets, which random keys almost never
// do; cpu::shuffle_order of the masked keys is then the reference). Process-wide.
struct ShuffleTestHooks {
  bool force_cub = false;
  uint32_t key_mask = 0xffffffffu;
};
void shuffle_set_test_hooks(const ShuffleTestHooks& hooks);

// order [n] = 0, 1, ..., n-1 (training without shuffling).
void identity_order(int32_t* order, int n, cudaStream_t stream);

}  // namespace mnist::cuda
