// The "head": the last Dense layer, softmax + sparse cross-entropy and that layer's backward in ONE
// launch, for a narrow output layer (classes <= 32; see head_supported). It replaces the graph
// path's four launches of the last layer (dense_forward, softmax_xent, and dense_backward_fused's
// weight GEMM + split-K reduction + data GEMM), which are latency-bound at any batch: the logits of
// 4096 rows are 160 KB.
//
// What head_train fuses, for A [B,K] (the last hidden activation, post-ReLU and post-dropout),
// W [N,K], b [N], the labels of the B rows (a [B] array or read by index, kernels/labels.cuh),
// with every GEMM input rounded to `prec` exactly as kernels/dense.cu rounds it (TF32:
// cvt.rna.tf32.f32, BF16: cvt.rn.bf16x2.f32; kernels/precision.hpp):
//   logits [B,N]  z  = round(A)·round(W)ᵀ + b                         (never stored, see below)
//   metrics       += Σ_rows cross-entropy, # rows whose argmax is the label
//   dZ [B,N]          = (softmax(z) - onehot(label)) · grad_scale     (xent_row, step_math.cuh)
//   dW [N,K], db [N]  = round(dZ)ᵀ·[round(A) | 1]                      (db: the ones column)
//   dA [B,K]          = (round(dZ)·round(W)) ⊙ [A > 0] · mask_scale  (the previous layer's ReLU and
//                                                                     dropout, as dense.cu's data
//                                                                     GEMM epilogue; optional)
// Reads A, W, b, labels; writes dW, db, dA and adds to *metrics. dZ and the logits live in shared
// memory only (the optional `logits` / `dlogits` outputs exist for the tests).
//
// Arithmetic. Every product of rounded inputs is exact in float32; each output is one float32 FMA
// chain (fmaf) in a fixed order, so results are bitwise reproducible:
//   z[r,n]  = ((0 + a_0 w_0) + a_1 w_1) + ... over k = 0..K-1, then + b[n]: at FP32 the very bits
//             of dense_forward's SIMT tile (one chain over ascending k from 0, same epilogue);
//   dA[r,k] = the chain over n = 0..N-1, masked: at FP32 the bits of dense_backward_data;
//   dW, db  = per block (head_rows_per_block rows), the chain over the block's rows in ascending
//             order; the blocks' partials are added in block order (0 + P_0 + P_1 + ...) by the
//             last block to finish (one block: P_0).
// The softmax/cross-entropy is xent_row, the function softmax_xent runs: dZ, per-row losses and
// hits are the bits softmax_xent computes from the same logits, and the loss sum is added in
// exactly softmax_xent's order (kernels/softmax_xent.cuh: a pairwise tree over each 32 rows, the
// 8 trees of a 256-row group left to right, the groups left to right from 0 when there are
// several), whatever the head's own block size: the last block (or the only one) forms those sums
// from one slot per 32 rows. So at FP32 the loss, hits and dA of a training step are the graph
// path's bits; dW/db differ from it only by the order of the float32 sum over the rows (the graph
// path's split-K pieces are others). At TF32/BF16 the graph path multiplies on tensor cores in the
// order of the mma instructions: the same exact products, another summation order.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/metrics.cuh"
#include "kernels/precision.hpp"
#include "kernels/softmax_xent.cuh"

namespace mnist::cuda {

// The loss sums' unit: one slot of the scratch per 32 rows (softmax_xent's per-warp tree).
constexpr int kHeadGroupRows = 32;
constexpr int kHeadMaxClasses = 32;
constexpr int kHeadMaxRows = 65536;  // the largest batch (--batch-size) and evaluation chunk

// Whether the head kernel holds a last layer of K inputs and N classes (1 <= N <= 32, K >= 1, and
// its shared-memory plan fits: W, the dW accumulators and a chunk of at least 32 rows of A, logits
// and dZ in 44 KB: K <= 202 at N = 10, K <= 95 at N = 32). Otherwise the engine keeps the separate
// launches.
bool head_supported(int K, int N);

// Rows per block of a launch over B rows (a multiple of 32): training takes 32·ceil(sqrt(B/1024))
// (B <= 1024: 32 rows; 4096: 64 rows, 64 blocks; 16384: 128 rows, 128 blocks), balancing each
// block's three GEMMs against the last block's sum over the blocks' dW partials; evaluation 32 (no
// partials). Fixed by B.
int head_rows_per_block(int B, bool backward);
int head_blocks(int B, bool backward);

// Scratch of a launch over B rows: one Metrics slot per 32 rows in xent (capacity >=
// head_xent_slots(B)) and, for training, head_partial_floats(B, K, N) floats of dW/db partials
// (both are enough for any launch over fewer rows, e.g. an epoch's shorter last batch);
// neither is used (both may be empty) when the launch is one block. The completion counter
// xent.done must be 0 before the first launch; each launch leaves it 0 (graph replays). It may be
// the engine's softmax_xent counter: launches on one stream never overlap.
struct HeadScratch {
  XentScratch xent;
  float* partial = nullptr;
  std::size_t partial_capacity = 0;  // floats
};
int head_xent_slots(int B);
std::size_t head_partial_floats(int B, int K, int N);

// The training step's head (see the header): dW [N,K], db [N], dA [B,K] (null: not computed, as for
// a first layer), *metrics += (loss sum, hits). A, W, dW, dA must not overlap; labels < N (a label
// >= N makes its row's loss NaN, as softmax_xent). Test outputs, when not null: logits [B,N] and
// dlogits [B,N] (dZ before its rounding). One launch; B <= kHeadMaxRows; prec as kernels/dense.cuh.
void head_train(float* dW, float* db, float* dA, Metrics* metrics, const HeadScratch& scratch, const float* A,
                const float* W, const float* b, const LabelInput& labels, float mask_scale, float grad_scale, int B,
                int K, int N, cudaStream_t stream, GemmPrecision prec = GemmPrecision::FP32, float* logits = nullptr,
                float* dlogits = nullptr);

// Evaluation: the forward and the metrics only (no gradient), *metrics += (loss sum, hits) over B
// rows, the sums in softmax_xent's order; scratch.capacity >= head_xent_slots(B) unless B <= 32.
void head_evaluate(Metrics* metrics, const XentScratch& scratch, const float* A, const float* W, const float* b,
                   const LabelInput& labels, int B, int K, int N, cudaStream_t stream,
                   GemmPrecision prec = GemmPrecision::FP32, float* logits = nullptr);

}  // namespace mnist::cuda
