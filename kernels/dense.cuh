// Dense (fully connected) layer: fused forward Y = act(X·Wᵀ + b) and its backward, as tiled
// shared-memory SGEMMs with fused epilogues (no cuBLAS). Twins of cpu::dense_forward /
// cpu::dense_backward (layers/cpu_ops.hpp): the backward is dense_backward_fused on dZ (the
// tests' full twin, masking dY by Y first, is tests/gpu/dense_backward_ref.cuh).
//
// Layouts are row-major and PyTorch's: X [B,K], W [N,K] (out, in), b [N], Y [B,N].
//
// Precision (the trailing `prec` of every launcher, kernels/precision.hpp):
//   FP32 (default): SIMT cores; every output element is one FP32 fused-multiply-add chain over
//     k = 0..K-1 in ascending order (per split-K piece, see dense_workspace_floats), whatever the
//     tile configuration, so the result for a row does not depend on the batch it is computed in,
//     and runs are bitwise reproducible (no atomics; split pieces are added in a fixed order).
//   TF32 / BF16: tensor cores (mma.sync m16n8k8.tf32 / m16n8k16.bf16, kernels/mma.cuh): every
//     GEMM input element (X, W, the masked dZ, the ones column) is rounded to the format first,
//     products are exact and accumulated in float32 in an order the hardware fixes per mma, so
//     results are deterministic but differ from FP32 by the input rounding (cpu::dense_* with the
//     same GemmPrecision reproduces it up to accumulation order). Every tile (the single-buffered
//     one of small GEMMs, the pipelined cp.async one of large GEMMs) runs the same mma sequence
//     per output element, so a row's result does not depend on its batch here either.
//     The db column is the GEMM's: db = Σ_b round(dZ[b,:]). Outputs, bias, epilogues: float32.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/adam.cuh"
#include "kernels/autotune.cuh"
#include "kernels/dropout.cuh"
#include "kernels/precision.hpp"
#include "kernels/row_index.cuh"
#include "kernels/train_counters.cuh"

namespace mnist::cuda {

// The X operand of a layer's forward and weight GEMMs: floats X [B,K] (row stride K), or the uint8
// images [n, K] that gather_batch would have scaled into them, read in place by the GEMM: row r of
// X is images[src(r)·K + k] · (1/255) (pixel_value, kernels/gather.cuh: gather_batch's expression,
// so every GEMM sees bit for bit the floats of the gathered batch), src(r) = idx[base + r] (or
// base + r without idx), base = first, plus counters->batch · stride when counters are given (the
// training step's batch, read on the device: graph replays). No gathered copy: at 4096 rows of 784
// that is a 12.8 MB write and two 12.8 MB reads a step against 3.2 MB of bytes, and one launch.
// A float pointer converts implicitly (every call site with a gathered X).
struct DenseInput {
  const float* x = nullptr;
  const uint8_t* images = nullptr;
  RowIndex rows;  // which images (kernels/row_index.cuh)

  DenseInput() = default;
  DenseInput(const float* floats) : x(floats) {}  // NOLINT: implicit on purpose
  // Rows idx[first + counters->batch · stride + r] (counters may be null, idx too: consecutive rows).
  static DenseInput images_by_index(const uint8_t* images, const int32_t* idx, int64_t first,
                                    const TrainCounters* counters = nullptr, int stride = 0) {
    DenseInput in;
    in.images = images;
    in.rows = {idx, first, counters, stride};
    return in;
  }
  bool present() const { return x != nullptr || images != nullptr; }
};

// Floats of device workspace that split-K needs for a layer of K inputs and N outputs at B rows
// (its forward and its weight GEMM; 0: neither is split). Pass at least this much as `workspace`
// below (not aliasing anything); the engine allocates the maximum over its layers once. Split
// points are fixed by the shape alone (forward: by K only), partial sums are added in a fixed
// order: bitwise reproducible whatever the launch, and a forward row still does not depend on its
// batch. A null workspace: no split (one chain over all of K).
std::size_t dense_workspace_floats(int B, int K, int N);

// Split-K in one launch: counters (unsigned) that a split GEMM of a layer of K inputs and N outputs
// at B rows needs (0: nothing splits). Passed as `tickets` below together with the workspace, the
// blocks of each output tile count themselves in and the last to finish sums the tile's partials
// (in the same fixed order, so bitwise the second kernel's result) and runs the epilogue: no
// second launch. The counters must be 0 when first used (cudaMemset once); every launch leaves
// them 0. Launches that share them must not run concurrently (one stream). Null: the second kernel.
std::size_t dense_ticket_count(int B, int K, int N);

// Y [B,N] = act(X [B,K] · W [N,K]ᵀ + b [N]); act = ReLU when relu, identity otherwise. With a
// workspace and K >= 512, K is split into pieces of about 256 (more blocks at small batches).
// Raises the dynamic shared-memory limit of every pipelined tensor-core kernel (above the default
// 48 KB) at once. The launchers also do it on a kernel's first launch; the engine calls this before
// it captures any CUDA graph, so that no attribute call happens inside a capture.
void dense_prepare();

// w_rounded: the caller promises that every element of W is already rounded to prec (the engine's
// rounded copy of the weights, kernels/adam.cuh RoundedParams), so the GEMM need not round it again;
// the bits are the same (rounding is idempotent), the TF32 pipelined and wgmma tiles skip their pass
// over W's shared-memory stages. A broken promise gives other bits. Ignored at FP32.
void dense_forward(float* Y, DenseInput X, const float* W, const float* b, int B, int K, int N, bool relu,
                   cudaStream_t stream, GemmPrecision prec = GemmPrecision::FP32, float* workspace = nullptr,
                   unsigned* tickets = nullptr, bool w_rounded = false);

// D [B,N] = dropout(ReLU(X [B,K] · W [N,K]ᵀ + b [N])): dense_forward(relu) followed by
// dropout_forward(drop) on the [B,N] output (element index b*N + n), with the mask applied in the
// GEMM's epilogue. drop.p == 0 gives dense_forward(relu).
void dense_relu_dropout_forward(float* D, DenseInput X, const float* W, const float* b, int B, int K, int N,
                                const DropoutSpec& drop, cudaStream_t stream,
                                GemmPrecision prec = GemmPrecision::FP32, float* workspace = nullptr,
                                unsigned* tickets = nullptr, bool w_rounded = false);

// dW [N,K] = dZ [B,N]ᵀ · X [B,K] and, when db is not null, db [N] = Σ_b dZ [b,:], in ONE GEMM:
// db is the product with a column of ones appended to X. dZ is the pre-activation gradient.
// Split-K: with a workspace (dense_workspace_floats(B, K, N) floats, not aliasing anything) and
// enough rows, the B rows are cut at fixed points that depend only on (B, K, N), each piece summed
// by its own blocks, and the pieces added in a fixed order by a second kernel: more blocks for a
// deep, narrow GEMM, and results still bitwise reproducible (the same for a given workspace choice
// whatever the launch; null workspace: no split, one chain over all B rows).
void dense_backward_weights(float* dW, float* db, const float* dZ, DenseInput X, int B, int K, int N,
                            cudaStream_t stream, GemmPrecision prec = GemmPrecision::FP32,
                            float* workspace = nullptr, unsigned* tickets = nullptr);

// The weight GEMM's partial sums only, for a pass that sums them and runs Adam in one launch
// (adam_reduce_update, kernels/adam.cuh): partial [dense_weight_slices(B, K, N)][N][K+1] where slice
// z = dZ[rows of z]ᵀ · [X | 1][rows of z], the rows cut at dense_backward_weights' split points (one
// slice when it does not split). Their sum in slice order is dense_backward_weights' dW/db (with a
// workspace) bit for bit. partial must hold dense_weight_partial_floats(B, K, N) floats.
// dz_rounded / x_rounded: the caller promises that every value of dZ / of X (floats, not the
// images) is already rounded to prec (round_gemm_input: the tail kernel's dz0, gather_batch_overlapped
// at prec), so the GEMM need not round them again; the bits are the same (rounding is idempotent),
// the TF32 tiles skip a pass over their shared-memory stages. A broken promise gives other bits.
int dense_weight_slices(int B, int K, int N);
std::size_t dense_weight_partial_floats(int B, int K, int N);
void dense_weight_partials(float* partial, const float* dZ, DenseInput X, int B, int K, int N, cudaStream_t stream,
                           GemmPrecision prec = GemmPrecision::FP32, bool dz_rounded = false,
                           bool x_rounded = false);

// dense_weight_partials and the Adam of adam_reduce_update on its sum, in ONE launch (sm_90 thread
// block clusters; the tail path's optimizer for layer 0): the pieces of one output tile of [dW | db]
// run as the blocks of one cluster, each keeps its piece in shared memory, and after a cluster
// barrier each block takes 1/pieces of the tile, sums every element's pieces from its peers in
// slice order from 0.0f (adam_reduce_update's order over dense_weight_partials' slices: the same
// gradient bits) and updates that element of W [N,K] (at w_offset of p, m, v) or b [N] (b_offset)
// with adam_reduce_update's arithmetic, the rate read from the counters (only read), the rounded
// copy written where on. No pieces in memory (16 x 400 KB written and read back at layer 0's 4096
// rows) and no optimizer work on these elements after it. Results: bitwise dense_weight_partials
// followed by adam_reduce_update of that one segment.
// Tiles: Large = 128x128 outputs (Pipe128; FP32 SimtVecTile 128x128), Small = 64x64 (Pipe64x8;
// FP32 SimtVecTile 64x64). A cluster holds the GEMM's dense_weight_slices(B, K, N) blocks: at most
// kWeightAdamMaxPieces (16, beyond the portable 8: the kernel allows the non-portable size).
enum class WeightAdamTile { Auto, Large, Small, None };
constexpr int kWeightAdamMaxPieces = 16;
struct WeightAdam {
  float* p = nullptr;  // the flat parameters, Adam moments (layers/model.hpp's layout)
  float* m = nullptr;
  float* v = nullptr;
  float* g_out = nullptr;  // optional: the gradient at the same offsets (tests, inspection)
  std::size_t w_offset = 0, b_offset = 0;
  const TrainCounters* counters = nullptr;  // lr, step (Adam's t): read, never written
  float b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
  RoundedParams rounded;  // on: every element updated is also written rounded to rounded.q
};
// The tile dense_weight_adam runs for this GEMM (X from the images or not): `want` where the device
// holds at least one cluster of its blocks, Auto's pick (Large where all its clusters fit at once,
// else the tile whose clusters run in fewer waves, Large on a tie), or None where neither can run (no
// clusters on this device, more pieces than kWeightAdamMaxPieces, B, K or N zero). Asks the device
// once per tile and piece count.
WeightAdamTile dense_weight_adam_tile(int B, int K, int N, GemmPrecision prec, bool images,
                                      WeightAdamTile want = WeightAdamTile::Auto);
// How many of tile's clusters (Large or Small) for this GEMM the device holds at once (a launch of
// more runs in waves): 0 where none fits (bench_kernels prints it).
int dense_weight_adam_clusters(int B, int K, int N, GemmPrecision prec, bool images, WeightAdamTile tile);
// dz_rounded / x_rounded as dense_weight_partials'. Throws (naming the reason) where
// dense_weight_adam_tile says None. p, m, v, g_out distinct; X and dZ must not overlap them.
void dense_weight_adam(const WeightAdam& adam, const float* dZ, DenseInput X, int B, int K, int N, cudaStream_t stream,
                       GemmPrecision prec = GemmPrecision::FP32, bool dz_rounded = false, bool x_rounded = false,
                       WeightAdamTile tile = WeightAdamTile::Auto);

// dX [B,K] = dZ [B,N] · W [N,K], then, when mask [B,K] is set (the post-ReLU, post-dropout
// activation that was this layer's input), dX[i] = mask[i] > 0 ? dX[i] * mask_scale : 0: the
// gradient w.r.t. the previous layer's pre-activation (relu_dropout_backward fused into the
// epilogue; mask_scale = 1/(1-p), or 1 without dropout). dX must not alias dZ or W. w_rounded: as
// dense_forward's (W already rounded to prec).
void dense_backward_data(float* dX, const float* dZ, const float* W, const float* mask, float mask_scale, int B,
                         int K, int N, cudaStream_t stream, GemmPrecision prec = GemmPrecision::FP32,
                         bool w_rounded = false);

// dense_backward_weights(dW, db, dZ, X) and, when dX is not null, dense_backward_data(dX, dZ, W,
// mask, mask_scale) in ONE launch (the two GEMMs are independent): the engine's backward of a
// layer. Bitwise the same results as the two separate launches (with the same workspace choice;
// workspace as for dense_backward_weights). w_rounded: the data GEMM's W, as dense_backward_data's.
void dense_backward_fused(float* dW, float* db, float* dX, const float* dZ, DenseInput X, const float* W,
                          const float* mask, float mask_scale, int B, int K, int N, cudaStream_t stream,
                          GemmPrecision prec = GemmPrecision::FP32, float* workspace = nullptr,
                          unsigned* tickets = nullptr, bool w_rounded = false);

// Testing hook (the kernel tests): forces the tile of the TF32/BF16 GEMMs launched after it. Auto
// (the default): the launchers' choice by size (kernels/dense.cu, pick_pipe). Mma: the
// single-buffered MmaTile. Pipe64 / Pipe64x8 / Pipe128: the pipelined cp.async tile of 64x64
// outputs by 4 warps (5 stages) / by 8 warps (4 stages; the launchers' choice where 64x64 tiles
// fill the GPU) / of 128x128 outputs by 8 warps, wherever its alignment preconditions hold (else
// MmaTile), with a forward GEMM's K split folded into the block when fold_forward_split. Results
// are bitwise the same for every choice with the same split points (and folding keeps them); FP32
// ignores it. Wgmma / Wgmma128: the forward GEMM on Hopper's warpgroup MMA (kernels/dense.cu
// WgmmaTile, 64x64 / 64x128 outputs by one warpgroup, sm_90a), its K split folded when
// fold_forward_split; it holds the CPU twin's tolerance but is not claimed bitwise the others' (the
// tensor core sums each wgmma's products in its own order). On a Weight GEMM the same two values
// run WgmmaWeightTile (128x64 / 128x128 outputs by two warpgroups, operands transposed on chip),
// its split pieces across blocks as every tile. The Data GEMM, misaligned operands
// and devices or builds without sm_90a take Pipe64x8 instead. WgmmaWide: the forward GEMM's
// wgmma tile of 128x128 outputs by two warpgroups (rows 0-63 and 64-127, both reading the one B
// slice: twice the tensor work per slice and per barrier of Wgmma128, 8 warps an SM); on a Weight
// GEMM the 128x128 WgmmaWeightTile as Wgmma128 (already two warpgroups); the Data GEMM Pipe64x8.
// The first Wgmma launch probes the device once (synchronously). cluster_split (Pipe64 / Pipe64x8 /
// Pipe128, or Auto's pick of one, on a Forward GEMM split across blocks): the tile's pieces run as
// the blocks of one thread block cluster (sm_90) and are summed through distributed shared memory
// in the launch, bitwise as the split's partials and their finish (kernels/dense_impl.cuh
// dense_pipe_cluster_kernel); where the pieces are more than 8 or the device launches no such
// cluster, the tile as without it. Not thread-safe.
enum class GemmTile { Auto, Mma, Pipe64, Pipe64x8, Pipe128, Wgmma, Wgmma128, WgmmaWide };
struct GemmTileChoice {
  GemmTile tile = GemmTile::Auto;
  bool fold_forward_split = false;
  bool cluster_split = false;
};
void dense_force_tile(GemmTileChoice choice);
// Whether this device launches thread block clusters (compute capability 9.0 or later): the
// cluster_split tiles can run here.
bool dense_clusters_available();
// How many clusters of `splits` blocks of a pipelined tile's clustered forward (Pipe64, Pipe64x8,
// Pipe128 at TF32/BF16) this device holds at once (cudaOccupancyMaxActiveClusters): a launch of more
// clusters runs in waves. 0 where none fits, for other tiles and FP32 (bench_kernels prints it).
int dense_cluster_capacity(GemmTile tile, int splits, GemmPrecision prec);
// Whether GemmTile::Wgmma really runs the wgmma tile here (dense.cu built for sm_90a and a device
// that loads that code; the first call probes the device synchronously): for labels and tests.
bool dense_wgmma_available();

// Testing hook (the kernel tests, bench_kernels): forces the tile of the FP32 GEMMs launched after
// it. Auto (the default): the launchers' choice by size (kernels/dense.cu, pick_simt). Scalar: the
// small GEMMs' SimtTile (64x64 or 32x32 by tile count). Vec128 / Vec64 / Vec32: the register-blocked,
// double-buffered SimtVecTile of 128x128 (8x8 outputs a thread), 64x64 or 32x32 (4x4) outputs, with a
// forward GEMM's K split folded into the block when fold_forward_split (and the split is whole
// slices), or with its split across blocks summed across a thread block cluster when cluster_split
// (as GemmTileChoice's, on its own kernel: dense_simt_cluster_kernel). Results are bitwise the same
// for every choice with the same split points (folding and clusters keep them: see the FP32
// contract above); TF32/BF16 ignore it. Not thread-safe.
enum class SimtTileKind { Auto, Scalar, Vec32, Vec64, Vec128 };
struct SimtTileChoice {
  SimtTileKind tile = SimtTileKind::Auto;
  bool fold_forward_split = false;
  bool cluster_split = false;
};
void dense_force_simt_tile(SimtTileChoice choice);

// Benchmark hook (bench_kernels' ablation rows; never set by the engine): the next TF32 GEMMs on
// the 8-warp PipeTiles the engine runs layer 0 on at 4096-16384 rows (128x128 and 64x64 on the
// Forward GEMM, 64x64 on the Weight GEMM launched alone: dense_weight_partials,
// dense_backward_weights, not dense_backward_fused) and on the WgmmaWide forward tile (any other
// tile, kind or precision runs whole) run their main loop with parts removed, to time what each
// part costs: kAblateCopies (no cp.async issued: the stages keep whatever they held),
// kAblatePrepare (the stages neither rounded to TF32 nor expanded from image bytes in place),
// kAblateMath (no fragment loads, no mma or wgmma). Every wait and barrier, the epilogue and the
// split's finish stay. Bits: one of the three, all three (the loop's
// skeleton: launch, prologue, barriers, epilogue), or 0 (restores). Every memory access stays in
// bounds, but the results are meaningless (with kAblateMath alone the accumulators stay 0: the
// epilogue of zero sums). Another set of bits is an error. Not thread-safe. Defined in
// kernels/dense_tf32_ablation.cu, with the kernels: link the library mnist_dense_ablation.
constexpr unsigned kAblateCopies = 1, kAblatePrepare = 2, kAblateMath = 4;
void dense_force_ablation(unsigned bits);

// Benchmark hook (bench_kernels' pieces sweep): the weight GEMM's rows cut into `pieces` pieces of
// whole 32-row slices (fewer where B has fewer slices) instead of the model's count (about one
// 128x128-tile block an SM, at least 64 rows a piece, at most 64 pieces, none below 512 rows:
// dense.cu weight_split_rows); 0 restores the model. Every size
// and count that depends on the split (dense_workspace_floats, dense_weight_slices,
// dense_weight_partial_floats, dense_ticket_count) follows it: allocate after the call. Results
// stay deterministic for a given count; a different count sums in a different order. Not
// thread-safe; never set by the engine.
void dense_force_weight_pieces(int pieces);

// Autotuning of the tiles (the engine's --autotune; kernels/autotune.cuh says how one tuning runs).
// While a DenseAutotune scope is open on this thread, the first launch of each GEMM operation of at
// least 2^20 multiply-adds (smaller ones are launch-bound on every tile; kTuneMinWork) (the
// launcher, its precision and shape, X as floats or as the images, with or without a split-K
// workspace and tickets) runs every tile the launcher can force: FP32 the size model's pick, Scalar,
// Vec32/64/128 (and each Vec tile with a forward's K split folded); TF32/BF16 the model's pick, Mma,
// Pipe64, Pipe64x8, Pipe128 (folded too) and, where the device runs them (dense_wgmma_available),
// Wgmma and Wgmma128 on the forward and weight-only GEMMs ("wgmma", "wgmma128") and WgmmaWide on
// the forward ("wgmma2wg"); with tickets and a split, every unfolded
// tile also " 2-pass" (its pieces summed by the second kernel instead of by each tile's last block;
// bitwise the same, so only the time differs). Each is checked against the model's pick
// on the call's own operands, the agreeing ones are timed, and the fastest is kept for every later
// launch of that operation inside a scope, also inside a CUDA graph capture (a choice is host
// state). An operation first met inside a capture runs the model's pick, untuned (tuning needs
// events and copies); the engine runs one step uncaptured first. Outside a scope, or with a tile
// forced (dense_force_tile / dense_force_simt_tile win), the launchers keep their size models.
// Results: FP32's candidates and TF32/BF16's non-wgmma ones are bitwise equal (the contracts above),
// so tuning changes only the time; a wgmma tile, if kept, sums in the tensor core's order (within
// the tolerance, not bitwise), and then a row's bits can depend on the batch it is computed in.
// The choices are process-wide (one device); not thread-safe.
// timed false (the engine's --autotune check): each candidate is run and checked, none timed, and
// the model's pick kept (recorded as the choice, so a later timed scope does not retune it).
class DenseAutotune {
 public:
  explicit DenseAutotune(bool on = true, bool timed = true);
  ~DenseAutotune();
  DenseAutotune(const DenseAutotune&) = delete;
  DenseAutotune& operator=(const DenseAutotune&) = delete;

 private:
  bool on_, timed_before_;
};
// Every tuning so far, in the order they ran (what --autotune reports).
std::vector<autotune::Record> dense_autotune_records();
// Forgets every tuned operation and record (tests).
void dense_autotune_reset();
// Every operation tuned or preset so far and the tile kept for it (operation as the records name
// it -> candidate label), and their preset: a resumed run gets the interrupted run's tiles (the
// wgmma ones are not bitwise the others), and a preset operation is not tuned again, nor checked.
// A label that names no tile is an InputError naming it; a preset tile the device cannot run (wgmma
// elsewhere) falls back as a forced one does.
std::map<std::string, std::string> dense_autotune_choices();
void dense_autotune_preset(const std::map<std::string, std::string>& choices);
// Testing hook: the tile the last dense launcher call ran: "auto" (the size model), "forced" (a
// dense_force_* hook), or the label of the tuned candidate it used.
std::string dense_last_tile();

// Testing hook (test_dense_images): how many GEMMs with X from the images (DenseInput::images_by_index)
// the launchers have moved, since the process started, off the tile they picked or were forced to
// (dense_force_tile, dense_force_simt_tile) because that tile does not read the images, onto one
// that does (SimtTile / MmaTile). Results are the same bits either way (every tile reads the same
// floats), so only this count tells a test that a forced tile really ran on the images. Not thread-safe.
long long dense_images_fallbacks();

}  // namespace mnist::cuda
