// Device helpers shared by the row-block kernels (kernels/head.cu: the last layer; kernels/tail.cu:
// layers 1..L-1), which stage a block of rows in shared memory and add the cross-entropy of their
// rows in softmax_xent's order. Device code only: include it from kernel sources.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/gemm_round.cuh"
#include "kernels/metrics.cuh"
#include "kernels/precision.hpp"

namespace mnist::cuda::rowblock {

constexpr int kGroupRows = 32;  // softmax_xent's per-warp tree: one metric slot per 32 rows

// (row, column) of a flat index i = row·cols + col that a loop steps by a fixed `step`: one division
// when it starts and one for the step, then an add and a compare a step, instead of a division by
// the runtime `cols` per element (≈ 20 instructions each: profiling/sass.py flagged 12 such in a
// staging loop of the tail kernel and 8 in the fused step's).
struct RowCol {
  int row, col, dq, dr, cols;
  __device__ RowCol(int i, int step, int cols_) : row(i / cols_), col(i % cols_), dq(step / cols_), dr(step % cols_), cols(cols_) {}
  __device__ void next() {
    row += dq;
    col += dr;
    if (col >= cols) {
      col -= cols;
      ++row;
    }
  }
};

// dst[r·stride + c] = round(src[r·cols + c]) for r < rows, c < cols (src contiguous): LOADS
// independent loads in flight per thread before their stores, so a block of rows costs about one L2
// round trip rather than one per element. Every thread of the block (THREADS of them) calls it.
template <GemmPrecision PREC, int THREADS, int LOADS = 16>
__device__ __forceinline__ void stage_rounded(float* __restrict__ dst, int stride, const float* __restrict__ src,
                                              int rows, int cols) {
  const int n = rows * cols;
  for (int i0 = int(threadIdx.x); i0 < n; i0 += LOADS * THREADS) {
    float v[LOADS];
#pragma unroll
    for (int j = 0; j < LOADS; ++j) {
      const int i = i0 + j * THREADS;
      v[j] = i < n ? src[i] : 0.0f;
    }
    RowCol rc(i0, THREADS, cols);
#pragma unroll
    for (int j = 0; j < LOADS; ++j, rc.next()) {
      const int i = i0 + j * THREADS;
      if (i < n) dst[rc.row * stride + rc.col] = round_gemm_input<PREC>(v[j]);
    }
  }
}

// Whether stage_rounded4 can move a region of rows x cols with 16-byte loads and stores: cols and
// stride multiples of 4, src and dst 16-byte aligned.
__device__ __forceinline__ bool stage4_ok(const float* dst, int stride, const float* src, int cols) {
  return cols % 4 == 0 && stride % 4 == 0 &&
         ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15u) == 0;
}

// The two halves of one round of stage_rounded4 (n float4 of a region with c4 float4 a row; this
// thread's items i0 + j·THREADS, j < LOADS): the loads, then the rounded stores.
template <int THREADS, int LOADS>
__device__ __forceinline__ void stage4_load(float4 (&v)[LOADS], const float* __restrict__ src, int i0, int n) {
  const float4* __restrict__ s4 = reinterpret_cast<const float4*>(src);
#pragma unroll
  for (int j = 0; j < LOADS; ++j) {
    const int i = i0 + j * THREADS;
    v[j] = i < n ? s4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
}
template <GemmPrecision PREC, int THREADS, int LOADS>
__device__ __forceinline__ void stage4_store(float* __restrict__ dst, int stride, const float4 (&v)[LOADS], int i0, int n,
                                             int c4) {
  RowCol rc(i0, THREADS, c4);
#pragma unroll
  for (int j = 0; j < LOADS; ++j, rc.next()) {
    const int i = i0 + j * THREADS;
    if (i < n)
      *reinterpret_cast<float4*>(dst + rc.row * stride + 4 * rc.col) =
          make_float4(round_gemm_input<PREC>(v[j].x), round_gemm_input<PREC>(v[j].y), round_gemm_input<PREC>(v[j].z),
                      round_gemm_input<PREC>(v[j].w));
  }
}

// stage_rounded with 16-byte loads and stores where the rows allow it (stage4_ok; else
// stage_rounded): LOADS float4 in flight per thread, so a 32 KB block of weights is one L2 round
// trip for 256 threads and a quarter of the index arithmetic.
template <GemmPrecision PREC, int THREADS, int LOADS = 12>
__device__ __forceinline__ void stage_rounded4(float* __restrict__ dst, int stride, const float* __restrict__ src,
                                               int rows, int cols) {
  if (!stage4_ok(dst, stride, src, cols)) {
    stage_rounded<PREC, THREADS>(dst, stride, src, rows, cols);
    return;
  }
  const int c4 = cols / 4, n = rows * c4;
  for (int i0 = int(threadIdx.x); i0 < n; i0 += LOADS * THREADS) {
    float4 v[LOADS];
    stage4_load<THREADS, LOADS>(v, src, i0, n);
    stage4_store<PREC, THREADS, LOADS>(dst, stride, v, i0, n, c4);
  }
}

// stage_rounded4 of two regions A and B in one round trip: B's loads go out with A's, before
// either's stores, where each region fits one round (LOADS_A resp. LOADS_B float4 a thread) and
// both take 16-byte copies (the same stores as the two calls); returns false and does nothing
// otherwise (the caller stages them apart).
template <GemmPrecision PREC, int THREADS, int LOADS_A = 12, int LOADS_B = 4>
__device__ __forceinline__ bool stage_rounded4_pair(float* __restrict__ dA, int sA, const float* __restrict__ srcA, int rA,
                                                    int cA, float* __restrict__ dB, int sB,
                                                    const float* __restrict__ srcB, int rB, int cB) {
  const int nA = rA * (cA / 4), nB = rB * (cB / 4);
  if (!stage4_ok(dA, sA, srcA, cA) || !stage4_ok(dB, sB, srcB, cB) || nA > LOADS_A * THREADS ||
      nB > LOADS_B * THREADS)
    return false;
  const int i0 = int(threadIdx.x);
  float4 a[LOADS_A], b[LOADS_B];
  stage4_load<THREADS, LOADS_A>(a, srcA, i0, nA);
  stage4_load<THREADS, LOADS_B>(b, srcB, i0, nB);
  stage4_store<PREC, THREADS, LOADS_A>(dA, sA, a, i0, nA, cA / 4);
  stage4_store<PREC, THREADS, LOADS_B>(dB, sB, b, i0, nB, cB / 4);
  return true;
}

// One 32-row group's sums from its rows' losses and hits (x: 32 losses, rows past the end as +0):
// softmax_xent's pairwise tree (step k = 1, 2, ..., 16 adds x[i + k] into x[i] for i a multiple of
// 2k), in registers.
__device__ __forceinline__ Metrics group_sum(const double* __restrict__ loss, const unsigned* __restrict__ hit) {
  double x[kGroupRows];
  unsigned h = 0;
#pragma unroll
  for (int i = 0; i < kGroupRows; ++i) {
    x[i] = loss[i];
    h += hit[i];
  }
#pragma unroll
  for (int k = 1; k < kGroupRows; k *= 2)
#pragma unroll
    for (int i = 0; i < kGroupRows; i += 2 * k) x[i] += x[i + k];
  Metrics m;
  m.loss_sum = x[0];
  m.correct = h;
  return m;
}

// The launch's metric sums from its group slots (one per 32 rows; src: the scratch, or the only
// block's shared copy), in softmax_xent's order: S_j = ((P_{8j} + P_{8j+1}) + ...) + P_{8j+7}
// (groups that do not exist are the +0 of rows >= B there), then 0 + S_0 + S_1 + ... in order
// (one S: S_0 itself, which 0 + S_0 equals: losses are >= 0 or NaN). Threads load CHUNK slots at a
// time in parallel, CHUNK/8 threads form the S_j, thread 0 adds them. Shared arrays: s_loss,
// s_hit [CHUNK], s_sum, s_sumhit [CHUNK/8]. Every thread of the block calls it.
template <int CHUNK>
__device__ void add_group_sums(Metrics* __restrict__ metrics, const volatile Metrics* src, int groups, double* s_loss,
                               unsigned* s_hit, double* s_sum, unsigned* s_sumhit) {
  static_assert(CHUNK % 8 == 0, "whole 256-row groups");
  const int tid = int(threadIdx.x);
  double total = 0;
  unsigned long long hits = 0;
  for (int base = 0; base < groups; base += CHUNK) {
    const int n = groups - base < CHUNK ? groups - base : CHUNK;
    if (tid < n) {
      s_loss[tid] = src[base + tid].loss_sum;
      s_hit[tid] = unsigned(src[base + tid].correct);  // <= 32
    }
    __syncthreads();
    const int sums = (n + 7) / 8;
    if (tid < sums) {
      double S = s_loss[8 * tid];
      unsigned h = s_hit[8 * tid];
      for (int w = 1; w < 8 && 8 * tid + w < n; ++w) {
        S += s_loss[8 * tid + w];
        h += s_hit[8 * tid + w];
      }
      s_sum[tid] = S;
      s_sumhit[tid] = h;
    }
    __syncthreads();
    if (tid == 0)
      for (int j = 0; j < sums; ++j) {
        total += s_sum[j];
        hits += s_sumhit[j];
      }
    __syncthreads();
  }
  if (tid == 0) {
    metrics->loss_sum += total;
    metrics->correct += hits;
  }
}

}  // namespace mnist::cuda::rowblock
