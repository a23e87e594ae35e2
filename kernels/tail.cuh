// The "tail": layers 1..L-1 of a training step (every layer after the first), forward, softmax +
// sparse cross-entropy and backward, in ONE launch of row blocks (issue 12; profiling/NOTES.md
// "The tail kernel"). Each block takes whole 32-row groups, or 16-row halves (TailRows), with ALL the tail's
// weights in shared memory and keeps every activation and gradient of its rows on chip; nothing
// crosses blocks but the metric slots. It replaces, at batch 4096, the graph path's layer-2 forward, the head
// kernel and layer-2's backward (weight + data GEMM + split-K reduction).
//
// The tail of T layers has widths w0, w1, ..., wT: w0 = the tail's input (layer 0's output), wT =
// classes; tail layer i (1-based) maps w_{i-1} -> w_i, with ReLU + dropout on every layer but the
// last. For A0 [B,w0] (layer 0's post-ReLU, post-dropout activation), W_i [w_i,w_{i-1}], b_i [w_i],
// the labels of the B rows ([B], or by index: kernels/labels.cuh), with every GEMM input rounded
// to `prec` as kernels/dense.cu rounds it (round_gemm_input: TF32 cvt.rna, BF16 cvt.rn; identity
// at FP32):
//   forward   A_i = dropout_i(ReLU(round(A_{i-1})·round(W_i)ᵀ + b_i))   i < T   (dense_unit's epilogue)
//             Z   = round(A_{T-1})·round(W_T)ᵀ + b_T                        (logits)
//   metrics   += Σ_rows cross-entropy, # rows whose argmax is the label  (softmax_xent's order)
//   backward  dZ_T = (softmax(Z) - onehot) · grad_scale                   (xent_row, step_math.cuh)
//             dZ_{i-1} = (round(dZ_i)·round(W_i)) ⊙ [A_{i-1} > 0] · s     s = 1/(1-p) for i-1 >= 1,
//                                                                         mask_scale for i-1 = 0 (dz0)
//             dz0 is written rounded, round(dZ_0), as layer 0's weight GEMM reads it (its only
//             reader: dense_weight_partials' dz_rounded)
//             partial slice of block j, layer i: Σ_{block j's rows, ascending} round(dZ_i)ᵀ·[round(A_{i-1}) | 1]
// Reads A0, W_i, b_i, labels (and counters->step, ->batch for labels by index); writes dz0 [B,w0], partial [blocks][slice] and
// adds to *metrics. It does NOT add the blocks' slices: the pass that runs Adam does (fixed order).
//
// Arithmetic. Every product of rounded inputs is exact in float32, so outputs differ from the exact
// sums only by their float32 summation. At FP32 every GEMM output is one fmaf chain in a fixed order
// (SIMT, below); at TF32/BF16 the GEMMs run on tensor cores (mma.sync m16n8k8 tf32 / m16n8k16 bf16,
// float32 accumulation): k in steps of 8 / 16, one mma per step into the running float32
// accumulator, in ascending order from 0 (the weight slices: from the running slice), but the order
// and rounding of the adds inside one mma are the hardware's (undocumented; it may truncate), so no
// chain is stated there: each output is within γ_{n+1} (u = 2⁻²³) of the exact sum, and a launch's
// bits are a fixed function of its inputs (no atomics, fixed fragment assignment: repeatable, and
// independent of the block order). What holds bit for bit:
//   - forward outputs: FP32: the chain over k = 0..w_{i-1}-1 ascending from 0, then dense_unit (+ bias,
//     ReLU, dropout at (seed, step, layer i, row·w_i + unit)): the bits of dense_forward /
//     dense_relu_dropout_forward's SIMT tiles on the same input (test_tail.cu checks it); TF32/BF16:
//     the mma sum, then the same dense_unit;
//   - dZ_{i-1} and dz0: FP32: the chain over n = 0..w_i-1 ascending from 0, then the mask: the
//     bits of dense_backward_data (masked) on the same dZ_i; TF32/BF16: the mma sum, the same mask
//     (dz0 then rounded);
//   - dZ_T, per-row losses and hits: xent_row, so softmax_xent's bits on the same logits; the loss
//     sum in softmax_xent's order (32-row pairwise trees, 8 of them left to right per 256 rows,
//     those left to right from 0), whatever R: the last block forms it from one slot per 16 rows
//     (each 32-row tree's two halves, added as its last step);
//   - slices: FP32: per element the chain over the block's rows in ascending order from 0, carried
//     across the block's chunks (TF32/BF16: mma steps of 8 / 16 rows, carried likewise); db at
//     every precision: the sum of round(dZ) in row order (the ones column of dense_backward_weights).
// The only exception: a hidden activation that is > 0 but rounds to 0 at TF32/BF16 (a denormal) is
// kept in shared memory as -0 so that its ReLU mask stays the raw value's, and A0's other zeros as
// +0 (staged_input: dz0's mask is read from the staged A0); a product with such a zero is a signed
// zero, which can change the sign of an exactly-zero sum, nothing else.
// At TF32/BF16 the graph path multiplies on tensor cores: the same exact products, another order.
//
// Performance (why; profiling/NOTES.md "The tail kernel" has the model and the prediction):
//   - 256 threads; up to 128 blocks, each of whole 32-row groups (B = 4096: 128 blocks of 32 rows on
//     132 SMs, 16384: 128 of 128: at most 128 slices for the reduce pass to add), or with
//     TailRows::Half up to 256 blocks of 16-row halves (256 slices), two an SM; processed
//     in chunks of up to 64 rows (shared memory); the weight slices accumulate in shared memory across
//     chunks, and the last chunk writes them out once.
//   - all weights staged once per block, rounded once (no cvt in the inner loops), rows padded to a
//     stride s ≡ 4 (mod 8) floats so that float4 reads of 8 consecutive rows hit 8 distinct 16-byte
//     bank groups; weights, biases and each chunk's A0 staged by asynchronous copies
//     (rowblock::stage_async: every copy in flight at once, no registers held, a short loop of code
//     where unrolled register staging was ≈ 2,000 instructions run once a block).
//   - FP32: every GEMM is register-blocked: a thread holds 2x4 or 4x4 outputs, a warp a 4x8 grid of
//     threads, operands read as float4 along the reduction (forward, data) or along the outputs
//     (weight), so each shared load feeds 4-8 FMAs and each warp-wide load is one or two
//     wavefronts (a 4x8 lane grid reads 4 rows x 8 columns: broadcasts, no conflicts).
//   - the hidden layers' dropout runs as a pass after their GEMM, one Philox4x32-10 block per 4
//     consecutive elements (the GEMM's thread layout would draw a whole block per element: 4x the
//     ≈ 100-instruction Philox work, as much issue time as a GEMM phase at 32 rows).
//   - TF32/BF16: the GEMMs on tensor cores (one routine, gemm_mma, for all three, the 64->10 layer
//     included): a warp per 16x16 output tile, fragments read from the same rounded shared-memory
//     tiles with scalar loads (no cvt: a TF32 register is the rounded float's bits, a BF16 register
//     packs two rounded floats' high halves). Layout unchanged: with row strides ≡ 4 (mod 8) the
//     row-major TF32 fragment reads are conflict-free, the transposed ones (W in the data GEMM, dZ
//     and A in the weight GEMM) and BF16's pairs 2-way; a stride that suits the transposed reads
//     (≡ 8 mod 32) conflicts on the row-major ones, and the FP32 path keeps its layout and bits.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dropout.cuh"
#include "kernels/metrics.cuh"
#include "kernels/precision.hpp"
#include "kernels/row_index.cuh"
#include "kernels/softmax_xent.cuh"

namespace mnist::cuda {

constexpr int kTailMaxLayers = 7;      // layers of the tail (the model's layers 1..L-1)
constexpr int kTailMaxClasses = 32;    // a row's softmax is one thread's (xent_row)
constexpr int kTailMaxRows = 65536;    // the largest batch (--batch-size) and evaluation chunk
constexpr int kTailGroupRows = 32;     // softmax_xent's per-warp tree: 32 rows (its metric slots: 16)

// "" when the tail kernel runs a tail of these widths [w0, ..., wT]; else why not, in one line:
// T < 1 or > kTailMaxLayers, a width < 1, more than 32 classes, or weights too wide for the shared
// memory (all weights, their gradient accumulators and 32 rows of activations and gradients in
// 200 KB; the model's 128 -> 64 -> 10 takes 114 KB, a 256 -> 128 -> 10 tail 352 KB: too wide).
std::string tail_unsupported(const std::vector<int>& widths);

// How a training launch cuts its B rows into blocks (profiling/NOTES.md "Two tail blocks an SM"):
//   Wide: whole 32-row groups, at most 128 blocks: one block an SM of an H100/H200 (B = 4096: 128
//         blocks of 32 rows; 16384: 128 of 128);
//   Half: whole 16-row halves, at most 256 blocks: twice the blocks of Wide up to 8192 rows (4096:
//         256 blocks of 16 rows), two an SM where a 32-row plan of the tail's widths fits twice
//         (the model's 128 -> 64 -> 10: 82 KB; a 256 -> 64 -> 10 tail does not) and the grid
//         has more blocks than SMs (above ≈ 2100 rows; at 512, 32 blocks of 16 rows, one an SM).
//         Measured at a018989, a block's time was ≈ 10 µs + 0.375 µs a row whatever the grid (16 or
//         128 blocks): latency, which a second block on the SM hides. Other slices (each sums fewer
//         rows; the reduce pass adds more of them), the same dz0 and metrics bit for bit.
enum class TailRows { Wide, Half };

// The blocks of a training launch over B rows = the partial slices it writes: one per unit of u rows
// (Wide: 32, Half: 16) up to the most blocks (128, 256), then that many, the U = ceil(B/u) units
// spread evenly: block j takes rows [tail_block_row(B, j), tail_block_row(B, j + 1)) =
// [u·(j·U/n), u·((j+1)·U/n)) ∩ [0, B). tail_blocks is nondecreasing in B, and Half's count is
// Wide's or more, so a slice buffer for the largest batch in Half serves any shorter batch in
// either. tail_rows_per_block: the most rows a block takes (Wide: 32·ceil(U/128): 4096 rows 32,
// 8192 rows 64, 16384 rows 128; Half: 4096 rows 16, 8192 rows 32); evaluation takes one 32-row
// group a block (no slices).
int tail_blocks(int B, TailRows rows = TailRows::Wide);
int tail_rows_per_block(int B, TailRows rows = TailRows::Wide);
int tail_block_row(int B, int j, TailRows rows = TailRows::Wide);
// Whether Half makes more blocks than Wide (B >= 17), keeps them at 32 rows or fewer (B <= 8192)
// and a 32-row training plan of these widths fits twice in an SM: where the engine's path race tries it.
bool tail_half_rows_apply(int B, const std::vector<int>& widths);

// One slice: every tail layer i's [w_i][w_{i-1} + 1] (column w_{i-1} is db), layer after layer
// (i = 1..T), the slice padded to a multiple of 4 floats. tail_layer_offset(widths, i) = floats
// before layer i (i >= 1; i = T + 1 gives the unpadded total).
std::size_t tail_slice_floats(const std::vector<int>& widths);
std::size_t tail_layer_offset(const std::vector<int>& widths, int i);

// Metric slots of a launch over B rows (one per 16-row half group, whatever its TailRows: a block of
// 16 rows writes its own; the adder forms each 32-row group's sums from its two halves, the same
// bits), the capacity its XentScratch needs unless the launch is one block. scratch.done must be 0
// before the first launch; each launch leaves it 0.
int tail_xent_slots(int B);

struct TailLayer {
  const float* W = nullptr;  // [w_i, w_{i-1}]
  const float* b = nullptr;  // [w_i]
};
struct TailNet {
  int layers = 0;                       // T
  int width[kTailMaxLayers + 1] = {};   // w0 .. wT
  TailLayer layer[kTailMaxLayers];      // layer[i - 1] is tail layer i
};

// Test outputs (null: not written): act[i - 1] = A_i [B, w_i] (post-dropout, unrounded) for
// i = 1..T-1, act[T - 1] = the logits [B, wT]; dz[i - 1] = dZ_i [B, w_i] (unrounded) for i = 1..T;
// a0 = A0 [B, w0] (post-dropout, unrounded) where the launch computes layer 0 itself (TailLayer0).
struct TailTrace {
  float* act[kTailMaxLayers] = {};
  float* dz[kTailMaxLayers] = {};
  float* a0 = nullptr;
};

// Layer 0 computed inside the training launch (tail_train's `layer0`; TF32/BF16 only; profiling/
// NOTES.md "Layer 0 inside the tail kernel"): each block computes its own rows' A0 =
// dropout_0(ReLU(round(X)·round(W)ᵀ + b)) (dropout at (seed, step, layer 0, row·w0 + unit), scale
// mask_scale) straight into shared memory, X read from the uint8 images by index (pixel_value, as
// gather_batch), W streamed through shared memory in slices of 64 k's by asynchronous copies (two
// in flight while one is multiplied), the products on tensor cores (mma.sync, float32 accumulation
// in registers, k ascending in steps of one mma across the slices). One block an SM (≈ 179 KB of
// shared memory for the model, 213 KB where a block takes several 32-row chunks). A0 never goes to global memory (trace->a0 for tests), and the separate
// layer-0 forward launch of the step goes away. Every output after A0 is the plain launch's on that
// A0, bit for bit; A0 itself is another summation of the same exact products than the dense tiles'
// (the chain over K, then + b: within γ_{K+1}·(Σ|x·w| + |b|) of the exact value, u = 2⁻²³).
struct TailLayer0 {
  const uint8_t* images = nullptr;  // [dataset rows][K]
  RowIndex rows;                    // row r of the batch is images row src(r) (kernels/row_index.cuh)
  const float* W = nullptr;         // [w0, K]
  const float* b = nullptr;         // [w0]
  int K = 0;
  bool w_rounded = false;           // W is already rounded to the precision (the optimizer's copy)
  // Up to this many blocks (1: none; 2 or 4) of a thread block cluster share layer 0's work: each
  // computes 1/C of the units for the C blocks' chunks, so it streams 1/C of W (and C chunks of X:
  // for the model, 200 KB a block and chunk at C = 4 where alone it is 426 KB), and stores each value
  // into the A0 of the row's block over distributed shared memory (sm_90). The launch takes the
  // largest size that fits (tail_layer0_cluster), else none. A0, and so every output, is bitwise the
  // same at every size: each element is the same chain of mma on the same operands.
  int cluster = 1;
};
// "" where a training launch of these widths at `prec` can compute layer 0 (K inputs) itself, else
// why not in one line: FP32 (its SIMT layer 0 would take ≈ 25k cycles a block), w0 > 256 (the
// accumulators of a 32-row chunk, 4 tiles a warp), or the plan with the slices past 224 KB.
std::string tail_layer0_unsupported(const std::vector<int>& widths, int K, GemmPrecision prec);
// The cluster size a launch of B rows (training, or evaluation) with layer 0 inside asking for
// clusters of up to `want` blocks takes on this device: the largest of 4 and 2 (at most want) that
// divides a training launch's blocks (tail_blocks(B, rows); an evaluation pads its grid instead) with
// at least that many blocks, leaves no block without units (w0 > Uq·(C - 1), Uq the units a block
// computes: ceil(w0 / C) up to a multiple of 16), fits the shared-memory budget, and of which the
// device holds enough at once for min(blocks, 128) blocks (cudaOccupancyMaxActiveClusters); else 1
// (and 1 for widths tail_layer0_unsupported refuses, at fp32, or without a device that launches
// clusters).
int tail_layer0_cluster(int B, bool training, const std::vector<int>& widths, int want, GemmPrecision prec,
                        TailRows rows = TailRows::Wide);

// Raises the dynamic shared-memory limit of every tail kernel (above the default 48 KB). The
// launchers also do it on first use; the engine calls this before it captures any CUDA graph.
void tail_prepare();

// Benchmark hook (bench_kernels' tail phase rows; never set by the engine): every training launch
// after it ends each chunk of rows after the given phase and skips the launch's end, so that the
// rows' times, each a prefix of the kernel's work, give what every phase adds: Staged (the
// weights, biases and labels, the chunk's A0, in shared memory), Forward (+ every layer's forward
// and the hidden layers' dropout), Softmax (+ softmax, cross-entropy and the chunk's metric slots);
// Whole (the default) restores the kernel. The outputs of the phases skipped are left unwritten
// (the slices, dz0, the metrics): timing only. Cut kernels exist at fp32 and tf32; a bf16 launch
// runs whole. Evaluation launches are never cut. Not thread-safe.
enum class TailStop { Whole, Staged, Forward, Softmax };
void tail_force_stop(TailStop stop);

// Benchmark hook (bench_kernels' "tail_clock" rows; never set by the engine): with stamps not null,
// every training launch at fp32 or tf32 after it runs the whole kernel, the same bits, and thread 0
// of each block j also writes stamps[j · kTailClockSlots + slot], read right after the barrier that
// ends each phase: the SM's cycle counter (sm_clock, kernels/clock.cuh) at every slot below, the
// global nanosecond timer at the two kTailClockNs slots. Chunks past kTailClockChunks and layers past
// T leave their slots as they were. A bf16 launch writes none; tail_force_stop is ignored while
// stamps are set. Null restores the kernel. Not thread-safe. Slots of one block, in the order the block passes them:
//   kTailClockStartNs, kTailClockStart: the block's first instruction;
//   kTailClockWeights: the weights, biases and label index staged (before the programmatic wait);
//   per chunk c < kTailClockChunks, tail_clock_slot(c, phase): kTailPhaseStaged (A0 staged, the
//   chunk's first barrier), kTailPhaseForward + i - 1 (tail layer i's forward and dropout done),
//   kTailPhaseSoftmax (softmax, cross-entropy and dZ_T), kTailPhaseBackward + T - i (tail layer i's
//   slice and dZ_{i-1} done: the first backward slot is layer T's);
//   kTailClockEnd, kTailClockEndNs: every chunk done (before the launch's last-block count).
constexpr int kTailClockChunks = 8;
constexpr int kTailPhaseStaged = 0;
constexpr int kTailPhaseForward = 1;
constexpr int kTailPhaseSoftmax = kTailPhaseForward + kTailMaxLayers;
constexpr int kTailPhaseBackward = kTailPhaseSoftmax + 1;
constexpr int kTailPhases = kTailPhaseBackward + kTailMaxLayers;  // slots a chunk
constexpr int kTailClockStartNs = 0;
constexpr int kTailClockStart = 1;
constexpr int kTailClockWeights = 2;
constexpr int kTailClockEnd = 3 + kTailClockChunks * kTailPhases;
constexpr int kTailClockEndNs = kTailClockEnd + 1;
constexpr int kTailClockSlots = kTailClockEndNs + 1;
constexpr int tail_clock_slot(int chunk, int phase) { return 3 + chunk * kTailPhases + phase; }
void tail_force_clocks(unsigned long long* stamps);

// Training (see the header): partial [tail_blocks(B, rows)][tail_slice_floats(widths)], dz0 [B, w0]
// (null: not computed), *metrics += (loss sum, hits); metrics null: every block leaves its 16-row half
// sums in scratch.blocks[0, tail_xent_slots(B)) (the scratch needed even for one block) and a later
// launch adds them (adam_reduce_update's GroupMetrics, bit for bit the same sums); the launch then
// ends without the last block's count and sum. Tail hidden layer i's dropout is
// DropoutSpec{drop.p, drop.seed, drop.step, layer = i, drop.counters} (drop.layer is ignored);
// mask_scale is dz0's (layer 0's dropout scale), the hidden layers' is dropout_scale(drop.p).
// A0, partial and dz0 must not overlap; labels < wT (a label >= wT makes its row's loss NaN).
// One launch; B <= kTailMaxRows; tail_unsupported(widths) must be "".
// layer0 (not null): A0 is not read (null allowed) but computed by the launch (TailLayer0), with
// layer 0's dropout DropoutSpec{drop.p, drop.seed, drop.step, layer 0, drop.counters} scaled by
// mask_scale; tail_layer0_unsupported(widths, layer0->K, prec) must be "". Such a launch reads
// nothing before its programmatic wait (kernels/pdl.cuh): the launch before it may write any weight.
// (tail_force_stop and tail_force_clocks do not apply to it.) tail_evaluate takes it too.
void tail_train(float* partial, float* dz0, Metrics* metrics, const XentScratch& scratch, const TailNet& net,
                const float* A0, const LabelInput& labels, const DropoutSpec& drop, float mask_scale, float grad_scale,
                int B, cudaStream_t stream, GemmPrecision prec = GemmPrecision::FP32,
                const TailTrace* trace = nullptr, TailRows rows = TailRows::Wide, const TailLayer0* layer0 = nullptr);

// Evaluation: the forward without dropout and the metrics, *metrics += (loss sum, hits) over B
// rows in softmax_xent's order. trace: act (and a0) only (dz is not computed). layer0 as for
// tail_train (A0 computed by the launch, without dropout; one 32-row chunk a block).
void tail_evaluate(Metrics* metrics, const XentScratch& scratch, const TailNet& net, const float* A0,
                   const LabelInput& labels, int B, cudaStream_t stream, GemmPrecision prec = GemmPrecision::FP32,
                   const TailTrace* trace = nullptr, const TailLayer0* layer0 = nullptr);

}  // namespace mnist::cuda
