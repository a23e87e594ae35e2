// Per-row and per-element arithmetic of a training step, shared by the one-op kernels
// (softmax_xent.cu, adam.cu) and the fused persistent step (fused_step.cu), so that both paths
// compute the same bits: one definition, and every multiply-add written as fmaf() so that no
// compiler's contraction choice (nvcc's --fmad, g++'s -ffp-contract in the host emulation) can
// make two callers differ. Device code only: include it from kernel sources, not from host code.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/curand_draw.cuh"
#include "kernels/labels.cuh"

namespace mnist::cuda {

// ---- Labels ----

// Row r's label (kernels/labels.cuh). The counters' batch is read by each caller (an L1 hit after
// the first): the label of a row is wanted once, by the thread that takes the row.
__device__ __forceinline__ uint8_t label_of(const LabelInput& y, int64_t r) {
  return y.labels[source_row(y.rows, row_base(y.rows), r)];
}

// ---- Softmax + sparse cross-entropy of one row ----

// exp(z - zmax) for z <= zmax, with the rounding error of the subtraction folded back in. z - zmax
// rounds to s with an error t of up to |s|·2⁻²⁴, and exp turns an absolute error of its argument
// into a relative error of its result of the same size (up to 2.8e-6 at s = -47, the H200 test
// failure of profiling/NOTES.md). t is exact (Knuth's TwoSum, additions only, so no FMA contraction
// can change it) and exp(s + t) = exp(s)·(1 + t) to within t²/2 < 1e-10 relative.
__device__ __forceinline__ float exp_shifted(float z, float zmax) {
  const float s = z - zmax;
  const float zpart = s - (s - z);                       // TwoSum of z and -zmax: the parts of
  const float t = (z - zpart) - (zmax + (s - z));        // each in s, and what s lost of them
  const float e = expf(s);
  return isfinite(t) ? fmaf(e, t, e) : e;  // t is NaN only for infinite logits: keep expf's 0/NaN
}

// A row's cross-entropy loss and whether its argmax (first maximum) is the label.
struct XentRow {
  double loss;  // NaN when the label is out of range
  bool hit;
};

// z [C] (one row of logits), label y -> loss and hit; when d0 / d1 are not null each receives the
// row's gradient [C] (softmax(z) - onehot(y)) · grad_scale (z, d0, d1 do not overlap). The
// arithmetic of cpu::softmax_xent, in a form without cancellation, so that every output has a
// small RELATIVE error whatever the logits:
//   e_j = exp(z_j - zmax) (exp_shifted), first-maximum argmax `arg` (e_arg = 1);
//   loss = log1p(Σ_{j≠arg} e_j) - (z_y - zmax): two non-negative terms (log(sum) loses the
//          small loss of a confident row to the rounding of 1 + small);
//   d_j = e_j / sum · scale for j ≠ y, and d_y = -(Σ_{j≠y} e_j) / sum · scale
//          (p_y - 1 cancels when p_y is near 1: a float p_y = 1 - 1e-3 leaves 1e-3 with a relative
//          error of 6e-5, and p_y - 1 is 0 for any p_y within 6e-8 of 1).
// xent_row's parts, for a kernel that spreads a row's classes over its threads (the tail kernel:
// xent_exp per (row, class), xent_sums per row, xent_grad per (row, class)); xent_row is made of the
// same functions, so both give the same bits.
// The first maximum's index (NaN logits never win a comparison, so one at 0 stays there).
__device__ __forceinline__ int xent_argmax(const float* __restrict__ z, int C) {
  int arg = 0;
  for (int j = 1; j < C; ++j)
    if (z[j] > z[arg]) arg = j;
  return arg;
}
// e_j (1 at the argmax `arg`, zmax = z[arg]).
__device__ __forceinline__ float xent_exp(const float* __restrict__ z, int arg, float zmax, int j) {
  return j == arg ? 1.0f : exp_shifted(z[j], zmax);
}
// From e(j) for j = 0, 1, ... in order (the row's e_j): Σ_{j≠arg} e_j (others) and Σ_{j≠y} e_j
// (rest), and the row's loss and hit.
template <class E>
__device__ __forceinline__ XentRow xent_sums(const float* __restrict__ z, E e, int C, int arg, float zmax, int y,
                                             float& others, float& rest) {
  others = 0.0f, rest = 0.0f;
  for (int j = 0; j < C; ++j) {
    const float ej = e(j);
    if (j != arg) others += ej;
    if (j != y) rest += ej;
  }
  const float lse = log1pf(others);
  return XentRow{y < C ? double(lse - (z[y] - zmax)) : double(NAN), arg == y};
}
// d_j from e_j, whether j is the label, the row's rest and sum = 1 + others.
__device__ __forceinline__ float xent_grad(float e, bool label, float rest, float sum, float grad_scale) {
  return (label ? -rest / sum : e / sum) * grad_scale;
}

// ---- xent over a block: a chunk's rows spread over its threads ----
// Three steps, barriers between them (the caller's), xent_row's functions and orders, so the same
// bits as one thread a row running xent_row:
//   xent_exp_items   every (row, class) item's e_j into e (row r at e + r·es: the rows of dZ);
//   xent_row_sums    each row's ordered sums, loss and hit, by one thread, kept in XentRowScratch;
//   xent_grad_items  every item's gradient over its e_j, handed to store(r, j, g).
template <int ROWS>
struct XentRowScratch {
  float sum[ROWS];   // 1 + Σ_{j≠arg} e_j
  float rest[ROWS];  // Σ_{j≠y} e_j
  int label[ROWS];
};
// (Each item finds its row's argmax itself, C comparisons, and xent_row_sums again: a barrier and a
// per-row step to share it would cost more than a row of C compares.)
__device__ __forceinline__ void xent_exp_items(const float* z, int zs, float* e, int es, int rows, int C, int tid,
                                               int threads) {
  for (int i = tid; i < rows * C; i += threads) {
    const int r = i / C, j = i - r * C;
    const float* zr = z + r * zs;
    const int arg = xent_argmax(zr, C);
    e[r * es + j] = xent_exp(zr, arg, zr[arg], j);
  }
}
template <int ROWS>
__device__ __forceinline__ XentRow xent_row_sums(const float* z, const float* e, int C, int y, int r,
                                                 XentRowScratch<ROWS>& x) {
  const int arg = xent_argmax(z, C);
  float others, rest;
  const XentRow out = xent_sums(z, [&](int j) { return e[j]; }, C, arg, z[arg], y, others, rest);
  x.sum[r] = 1.0f + others;
  x.rest[r] = rest;
  x.label[r] = y;
  return out;
}
template <int ROWS, class Store>
__device__ __forceinline__ void xent_grad_items(const float* e, int es, int rows, int C, const XentRowScratch<ROWS>& x,
                                                float grad_scale, int tid, int threads, Store store) {
  for (int i = tid; i < rows * C; i += threads) {
    const int r = i / C, j = i - r * C;
    store(r, j, xent_grad(e[r * es + j], j == x.label[r], x.rest[r], x.sum[r], grad_scale));
  }
}

__device__ __forceinline__ XentRow xent_row(const float* __restrict__ z, int C, int y, float grad_scale,
                                               float* __restrict__ d0, float* __restrict__ d1) {
  const int arg = xent_argmax(z, C);
  const float zmax = z[arg];
  float others, rest;
  const XentRow out = xent_sums(z, [&](int j) { return xent_exp(z, arg, zmax, j); }, C, arg, zmax, y, others, rest);
  if (d0 || d1) {
    const float sum = 1.0f + others;
    for (int j = 0; j < C; ++j) {
      const float g = xent_grad(xent_exp(z, arg, zmax, j), j == y, rest, sum, grad_scale);
      if (d0) d0[j] = g;
      if (d1) d1[j] = g;
    }
  }
  return out;
}

// ---- Adam ----

// The bias-corrected step size lr · sqrt(1 - b2^t) / (1 - b1^t) at step t (1-based), in double as
// the CPU twin computes it.
__device__ __forceinline__ float adam_step_size(float lr, float b1, float b2, int64_t t) {
  const double bc1 = 1.0 - pow(double(b1), double(t));
  const double bc2 = 1.0 - pow(double(b2), double(t));
  return float(double(lr) * sqrt(bc2) / bc1);
}

// Adam on one element (p, m, v: three distinct floats, updated in place) with gradient g and step
// size alpha:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  p -= alpha · m / (sqrt(v) + eps)
// Each multiply-add is one fmaf (the products (1-b1)·g and ((1-b2)·g)·g rounded first), so the
// bits do not depend on the compiler. The CPU twin rounds each product and sum apart: it differs
// by at most one rounding of m and of v (2⁻²⁴ relative each).
__device__ __forceinline__ void adam_element(float& __restrict__ p, float& __restrict__ m, float& __restrict__ v,
                                             float g, float alpha, float b1, float b2, float eps) {
  const float mi = fmaf(b1, m, (1.0f - b1) * g);
  const float vi = fmaf(b2, v, ((1.0f - b2) * g) * g);
  m = mi;
  v = vi;
  p -= alpha * mi / (sqrtf(vi) + eps);
}

// ---- A dense unit's forward epilogue ----

// One output of a Dense layer from its product `acc` = Σ_k x_k·w_k: acc + bias, then ReLU when
// `relu`, then dropout when `threshold` > 0 (kept: × scale = 1/(1-p); dropped: 0), the mask drawn
// at (seed, step, layer, idx) as every path draws it (kernels/philox.hpp; idx = row·N + unit).
// The graph path's GEMM epilogue (dense.cu) and the fused step's phases (fused_step.cu) both call
// it, so their hidden activations are the same bits for the same product.
__device__ __forceinline__ float dense_unit(float acc, float bias, bool relu, uint32_t threshold, float scale,
                                            uint64_t seed, uint64_t step, uint32_t layer, uint64_t idx) {
  float z = acc + bias;
  if (relu) z = z > 0.0f ? z : 0.0f;
  if (threshold) z = dropout_keep_dev(seed, step, layer, idx, threshold) ? z * scale : 0.0f;
  return z;
}

// dense_unit of V consecutive outputs idx0 .. idx0+V-1 of one row (V = 2 or 4), out[j] the unit of
// acc[j] + bias[j] at idx0 + j: bit for bit V calls of dense_unit. When the V indices lie in one
// Philox block (idx0 % 4 + V <= 4: a pair at an even index, a quad at a multiple of 4), the block
// is computed once for all of them and each takes its own word (dropout_keep_dev takes word idx & 3
// of block idx >> 2): one Philox4x32-10 (≈ 100 instructions) instead of V.
template <int V>
__device__ __forceinline__ void dense_units(float (&out)[V], const float (&acc)[V], const float (&bias)[V], bool relu,
                                            uint32_t threshold, float scale, uint64_t seed, uint64_t step,
                                            uint32_t layer, uint64_t idx0) {
  static_assert(V == 2 || V == 4, "pairs and quads");
  if (threshold && (idx0 & 3u) + V <= 4u) {
    const uint4 r = philox_block(seed, rng::kDropout, layer, idx0 >> 2, step);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      float z = acc[j] + bias[j];
      if (relu) z = z > 0.0f ? z : 0.0f;
      out[j] = block_word(r, unsigned((idx0 + j) & 3u)) >= threshold ? z * scale : 0.0f;
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < V; ++j) out[j] = dense_unit(acc[j], bias[j], relu, threshold, scale, seed, step, layer, idx0 + j);
}

}  // namespace mnist::cuda
