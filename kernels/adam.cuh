// Adam as Keras computes it, in ONE launch over the flat parameter span (every tensor of the
// model: layout in layers/model.hpp). Twin of cpu::adam_update.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/metrics.cuh"
#include "kernels/precision.hpp"
#include "kernels/train_counters.cuh"

namespace mnist::cuda {

// ---- The weights as the tensor-core GEMMs take them ----
//
// At TF32/BF16 every GEMM input is rounded to the precision first (kernels/precision.hpp), the
// weights too: each GEMM tile that reads W rounds every element of it again, once per tile of
// output rows (layer 0's forward at 4096 rows: 32 times over W0's 100,352 elements, in the copy ->
// round -> barrier chain of every slice). The engine keeps instead a copy of the parameters rounded
// to the precision, written by the optimizer in the same pass that updates them (so it is never a
// step behind) and by round_params wherever the parameters are written from the host; the GEMMs
// read W from it and skip their own pass (GemmParams::rounded). Rounding is idempotent, so every
// result is the same bits as with the raw weights.
// q: n floats at the same offsets as p (the whole flat span: biases too, unread by the GEMMs, so
// that the copy is simply round(p) everywhere); prec: TF32 or BF16. A null q (or FP32): no copy.
struct RoundedParams {
  float* q = nullptr;
  GemmPrecision prec = GemmPrecision::FP32;
  bool on() const { return q && prec != GemmPrecision::FP32; }
};

// q[i] = round_gemm_input(prec, p[i]) for i < n (kernels/gemm_round.cuh: the GEMMs' own rounding).
void round_params(const RoundedParams& out, const float* p, std::size_t n, cudaStream_t stream);

// p, m, v, g: four distinct arrays (checked). Over n elements of p, m, v, g at step t (1-based),
// with learning rate lr:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  p -= lr · sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps)
// The bias-corrected rate is computed once per block in double, as the CPU twin does.
void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1, float b2,
                 float eps, int64_t t, cudaStream_t stream);

// The same with lr = counters->lr and t = counters->step read on the device, so a captured graph
// serves every step. The counters are only read: advance_train_counters (train_counters.cuh)
// moves them on for the next step.
void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, const TrainCounters* counters,
                 float b1, float b2, float eps, cudaStream_t stream);

// The same, and, by the last block to finish, advance_train_counters (step += 1, batch += 1) once
// every block has read the counters: the graph path's optimizer and counter launches in one, as
// adam_reduce_update does for the tail path. advance: a device counter, 0 before the first launch;
// every launch leaves it 0. Bitwise adam_update's p, m, v (n == 0 still advances).
// With `rounded` on, every element updated is also written rounded to rounded.q (RoundedParams).
void adam_update_and_advance(float* p, float* m, float* v, const float* g, std::size_t n, TrainCounters* counters,
                             float b1, float b2, float eps, cudaStream_t stream, unsigned* advance,
                             const RoundedParams& rounded = {});

// ---- Adam fused with the sum of a weight gradient's partial slices ----
//
// A Dense layer's gradient given as `slices` partial sums (split-K pieces of dense's weight GEMM,
// dense_weight_partials; or one slice per row block of the tail kernel, kernels/tail.cuh), each
// slice [rows][cols + 1] (column `cols` is db), slice z at partial + z · slice_stride. W [rows,
// cols] lives at w_offset and b [rows] at b_offset of p, m, v (and of g_out).
struct GradSlices {
  const float* partial = nullptr;
  int slices = 0;
  std::size_t slice_stride = 0;  // floats, >= rows · (cols + 1)
  int rows = 0, cols = 0;
  std::size_t w_offset = 0, b_offset = 0;
  // The slices were written before the launch that precedes this one, and that launch touches
  // neither them nor these elements' p, m, v: a programmatic launch (kernels/pdl.cuh) sums them
  // and updates these elements before it waits for that launch (the tail kernel's slices, two
  // launches back, while layer 0's weight GEMM runs).
  bool early = false;
};
constexpr int kAdamMaxSegments = 8;

// A loss kernel's metric sums left as per-16-row half group slots (tail_train with metrics null,
// tail_xent_slots): the optimizer's last block to count in adds slots [0, halves) into *metrics, in
// the order the loss kernel would have (rowblock::add_group_sums<.., true>: softmax_xent's), so the
// loss kernel's own last block does not (it was the end of every tail kernel: a count, a fence and
// 2-3 round trips in one block).
struct GroupMetrics {
  const Metrics* slots = nullptr;  // null: nothing to add
  int halves = 0;
  Metrics* metrics = nullptr;
};
struct GradSlicesSet {
  int count = 0;
  GradSlices seg[kAdamMaxSegments];
};

// For every element of every segment: g = the sum of its slices, then Adam on (p, m, v) at that
// element with (lr, t) from the counters (read only) -- the split-K reduction pass, adam_update
// and, where given, the gradient's store (g_out, for the tests and for inspection), in ONE launch,
// so the step needs neither the gradient array nor the separate optimizer launch.
// Summation order: each element's slices from 0.0f upward in slice order (0 + P0 + P1 + ...),
// dense's split-K pass exactly, so the gradient equals dense_backward_weights' dW/db bit for bit
// for the same split, and it does not depend on the grid. Adam is adam_update's per-element
// arithmetic (step_math.cuh). p, m, v, g_out distinct; segments must not overlap in p; the
// partials must not overlap p, m, v or g_out.
// With `advance` (a device counter, 0 before the first launch; every launch leaves it 0), the last
// block to finish also does advance_train_counters (step += 1, batch += 1) once every block has
// read them and the launch before has ended: the training step's last launch in one. Null: the
// counters are only read. Each thread does its elements of `early` segments first, then
// pdl_wait(), then the others (the order of an element's own arithmetic is the same). With
// `group_metrics.slots` (and `advance`, which picks the block), that block also adds them after its
// wait (GroupMetrics). With `rounded` on, every element updated is also written rounded to
// rounded.q (RoundedParams); elements outside the segments are left alone there as in p.
void adam_reduce_update(float* p, float* m, float* v, float* g_out, const GradSlicesSet& set,
                        TrainCounters* counters, float b1, float b2, float eps, cudaStream_t stream,
                        unsigned* advance = nullptr, const GroupMetrics& group_metrics = {},
                        const RoundedParams& rounded = {});

}  // namespace mnist::cuda
