// Device helpers shared by the row-block kernels (kernels/head.cu: the last layer; kernels/tail.cu:
// layers 1..L-1), which stage a block of rows in shared memory and add the cross-entropy of their
// rows in softmax_xent's order. Device code only: include it from kernel sources.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cp_async.cuh"
#include "kernels/gemm_round.cuh"
#include "kernels/metrics.cuh"
#include "kernels/precision.hpp"

namespace mnist::cuda::rowblock {

constexpr int kGroupRows = 32;  // softmax_xent's per-warp tree (one metric slot per 32 rows: head's)
// Half a group: the tail kernel's metric slots (kernels/tail.cuh), so that a block of 16 rows can
// write its own. The 32-row tree's last step adds its two halves' trees (group_sum), so a group's
// sums are formed from its two half slots with that one add (add_group_sums<.., true>): the same bits.
constexpr int kHalfRows = kGroupRows / 2;

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

// Whether stage_async can move a region of rows x cols with 16-byte copies: cols and stride
// multiples of 4, src and dst 16-byte aligned.
__device__ __forceinline__ bool stage4_ok(const float* dst, int stride, const float* src, int cols) {
  return cols % 4 == 0 && stride % 4 == 0 &&
         ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15u) == 0;
}

// This thread's items of a staged region, f(d, i, vec): d its place in dst, i its index in src (in
// float4 where vec, else in floats), in a loop that is not unrolled.
template <int THREADS, class F>
__device__ __forceinline__ void for_staged_items(float* dst, int stride, const float* src, int rows, int cols, F&& f) {
  const bool vec = stage4_ok(dst, stride, src, cols);
  const int w = vec ? 4 : 1, c = cols / w, n = rows * c;
  int i = int(threadIdx.x);
  if (i >= n) return;
  RowCol rc(i, THREADS, c);
#pragma unroll 1
  for (; i < n; i += THREADS, rc.next()) f(dst + rc.row * stride + w * rc.col, i, vec);
}

// The staging of a rows x cols region (src contiguous, dst row stride `stride`) by asynchronous
// copies, in two calls around the caller's wait (cp_async_commit, other loads, cp_async_wait<0>()):
// stage_async issues this thread's copies, 16-byte where stage4_ok allows, else 4-byte, and
// round_staged then rounds the same items in place to PREC (nothing at FP32). A thread's items are
// i = threadIdx.x + k·THREADS (float4 or float), the same in both calls, so each thread rounds only
// what its own wait made visible to it; a __syncthreads after round_staged publishes the region.
// Where the register staging they replace (until the twenty-first session) held 12–16 float4 a
// thread behind ≈ 450 instructions of unrolled loads and stores run once a chunk (and a scalar copy
// of it for unaligned rows), these are two short loops: the copies take no registers, every copy
// of every region is in flight before the wait, and the code a block runs once is ≈ 100
// instructions (profiling/NOTES.md, "The row-block kernels' staging by asynchronous copies").
template <int THREADS>
__device__ __forceinline__ void stage_async(float* dst, int stride, const float* src, int rows, int cols) {
  for_staged_items<THREADS>(dst, stride, src, rows, cols, [src](float* d, int i, bool vec) {
    if (vec)
      cp_async16(d, src + 4 * i);
    else
      cp_async4(d, src + i);
  });
}
// MASKED: each value becomes staged_input(v) (kernels/gemm_round.cuh), which keeps the raw value's
// v > 0 for staged_positive to read, instead of round_gemm_input(v).
template <GemmPrecision PREC, int THREADS, bool MASKED = false>
__device__ __forceinline__ void round_staged(float* dst, int stride, const float* src, int rows, int cols) {
  if constexpr (PREC == GemmPrecision::FP32) return;
  const auto q = [](float v) { return MASKED ? staged_input<PREC>(v) : round_gemm_input<PREC>(v); };
  for_staged_items<THREADS>(dst, stride, src, rows, cols, [q](float* d, int, bool vec) {
    if (vec) {
      const float4 v = *reinterpret_cast<const float4*>(d);
      *reinterpret_cast<float4*>(d) = make_float4(q(v.x), q(v.y), q(v.z), q(v.w));
    } else {
      *d = q(*d);
    }
  });
}

// One group's sums from its rows' losses and hits (ROWS = 32, or 16 for a half; rows past the end
// as +0): softmax_xent's pairwise tree (step k = 1, 2, ..., ROWS/2 adds x[i + k] into x[i] for i a
// multiple of 2k), in registers. The tree of 16 rows is the 32-row tree's left (or right) half
// before its last step, x[0] += x[16].
template <int ROWS = kGroupRows>
__device__ __forceinline__ Metrics group_sum(const double* __restrict__ loss, const unsigned* __restrict__ hit) {
  static_assert(ROWS == kGroupRows || ROWS == kHalfRows, "a group or half a group");
  double x[ROWS];
  unsigned h = 0;
#pragma unroll
  for (int i = 0; i < ROWS; ++i) {
    x[i] = loss[i];
    h += hit[i];
  }
#pragma unroll
  for (int k = 1; k < ROWS; k *= 2)
#pragma unroll
    for (int i = 0; i < ROWS; i += 2 * k) x[i] += x[i + k];
  Metrics m;
  m.loss_sum = x[0];
  m.correct = h;
  return m;
}

// The launch's metric sums from its `slots` group slots (one per 32 rows, the head kernel's; src:
// the scratch, or the only block's shared copy), in softmax_xent's order:
// S_j = ((P_{8j} + P_{8j+1}) + ...) + P_{8j+7} (groups that do not exist are the +0 of rows >= B
// there), then 0 + S_0 + S_1 + ... in order
// (one S: S_0 itself, which 0 + S_0 equals: losses are >= 0 or NaN). Threads load CHUNK slots at a
// time in parallel, CHUNK/8 threads form the S_j, thread 0 adds them. Shared arrays: s_loss,
// s_hit [CHUNK], s_sum, s_sumhit [CHUNK/8]. Every thread of the block calls it.
// HALVES: src holds one slot per 16 rows instead (half groups: the tail kernel's), and
// group j's P_j is formed first as H_{2j} + H_{2j+1}, the 32-row tree's last step (a half past the
// last slot is the +0 of its absent rows, added all the same): the P_j of whole-group slots, bit
// for bit.
template <int CHUNK, bool HALVES = false>
__device__ void add_group_sums(Metrics* __restrict__ metrics, const volatile Metrics* src, int slots, double* s_loss,
                               unsigned* s_hit, double* s_sum, unsigned* s_sumhit) {
  static_assert(CHUNK % 8 == 0, "whole 256-row groups");
  const int tid = int(threadIdx.x);
  const int groups = HALVES ? (slots + 1) / 2 : slots;
  double total = 0;
  unsigned long long hits = 0;
  for (int base = 0; base < groups; base += CHUNK) {
    const int n = groups - base < CHUNK ? groups - base : CHUNK;
    if (tid < n) {
      if constexpr (HALVES) {
        const int h = 2 * (base + tid);
        const bool right = h + 1 < slots;
        double x = src[h].loss_sum;
        x += right ? src[h + 1].loss_sum : 0.0;  // (x[0] += x[16]: the +0 of absent rows too)
        s_loss[tid] = x;
        s_hit[tid] = unsigned(src[h].correct) + (right ? unsigned(src[h + 1].correct) : 0u);  // <= 32
      } else {
        s_loss[tid] = src[base + tid].loss_sum;
        s_hit[tid] = unsigned(src[base + tid].correct);  // <= 32
      }
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
