// The fused training step: many training steps of the Sequential MLP (ReLU hidden layers with
// dropout, softmax output, sparse cross-entropy, Adam) in ONE persistent cooperative kernel, the
// phases of a step separated by grid-wide barriers (or finer waits) instead of kernel boundaries.
//
// Fuses, per step (the 10 launches of the graph path, layers/cuda_engine.cu):
//   gather_batch + layer 0's dense_relu_dropout_forward       phase A (tiles of [rows, N0]; split-K
//                                                             over 392-deep K ranges when K0 > 392,
//                                                             the partials summed in phase B)
//   layers 1..L-1 forward (bias, ReLU, dropout), softmax_xent,
//   every layer's backward data GEMM + ReLU/dropout mask       phase B (tiles of R rows)
//   every layer's backward weight GEMM (dW and db) + adam_update phase C (tiles of each [N, K+1])
//   advance_train_counters                                    once per launch, at exit (by `steps`)
// with one grid barrier per step, after B. Elsewhere a phase waits on counters of the items it reads
// (kernels/dep_wait.cuh; FusedStep::ready): a phase-B item for the phase-A items of its 16-row tile,
// a phase-A item for the last step's phase-C items that updated its W0 rows, phase B for all of
// the last step's phase C (see fused_step_kernel).
//
// Reads: images/labels (uint8, resident), order (the epoch's permutation; each step's indices are
// copied to shared memory, the next step's during the current step's last phase), the counters
// (step, batch, lr: read once at entry), params/m/v (phase B copies W_1 .. W_{L-1} to shared memory
// once a step when they fit).
// Writes: params/m/v (Adam, in place), act[l] for the hidden layers and dz[l] for every layer
// (scratch in global memory, L2-resident), partial (split-K scratch), row_loss/row_hit (scratch),
// metrics (+= the steps' loss sum and correct count), counters (step and batch advanced by
// `steps` at exit, by one thread once every block is past its read: the graph path's
// advance_train_counters, done in place).
//
// Bitwise contract: every output element is the same FP32 fused-multiply-add chain as in
// kernels/dense.cu (k ascending from 0, bias added after, the bias gradient a chain over a ones
// column) -- except layer 0's forward when K0 > 392, split into fixed K ranges whose partial sums
// are added in order --, the same softmax and Adam arithmetic as kernels/softmax_xent.cu and
// kernels/adam.cu (the same functions: kernels/step_math.cuh, multiply-adds as explicit fmaf, so
// no compiler contraction choice can tell the two apart), and the same Philox dropout draws
// (kernels/philox.hpp layout, element index row * width + unit, counter = step). So without the
// split the parameters equal the graph path's bit for bit (proven in the host emulation; not yet
// shown on a GPU), with it to rounding; and they never depend on the grid size: the work is
// split into fixed items (tiles), each computed whole by one block; blocks only choose which
// items they run. No float atomics.
// The epoch's loss sum is accumulated per step by one thread in row order (double), so it equals
// the graph path's to rounding (1e-15 relative), not bitwise.
//
// Also here: fused_evaluate, the forward-only evaluation of a whole dataset in one launch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/metrics.cuh"
#include "kernels/precision.hpp"
#include "kernels/train_counters.cuh"

namespace mnist::cuda {

constexpr int kFusedMaxLayers = 8;     // Dense layers (hidden + output) the kernel parameters hold
constexpr int kFusedRows = 4;          // rows per phase-B item
constexpr int kFusedThreads = 256;     // threads per block
constexpr std::size_t kFusedMaxSmem = 96 * 1024;  // dynamic shared memory the fused kernel may use

// One Dense layer: W [out, in] at params + w_offset, b [out] at params + b_offset (the same
// offsets index m and v); act [stride, out] is the post-ReLU, post-dropout output (hidden layers;
// unused for the output layer); dz [stride, out] the gradient w.r.t. the pre-activation.
struct FusedLayer {
  int in = 0, out = 0;
  std::size_t w_offset = 0, b_offset = 0;
  float* act = nullptr;
  float* dz = nullptr;
};

struct FusedStep {
  int layers = 0;  // 2 .. kFusedMaxLayers; every layer but the last is ReLU + dropout
  FusedLayer layer[kFusedMaxLayers];
  float* params = nullptr;  // flat layout (layers/model.hpp)
  float* m = nullptr;
  float* v = nullptr;
  const uint8_t* images = nullptr;  // [n, layer[0].in]
  const uint8_t* labels = nullptr;  // [n]
  const int32_t* order = nullptr;   // [n]: step s uses rows order[(batch + s) * stride + r]
  int stride = 0;                   // the full batch size
  float* partial = nullptr;         // [S, stride, layer[0].out] split-K scratch (fused_step_partial_floats)
  double* row_loss = nullptr;       // [stride] scratch
  uint32_t* row_hit = nullptr;      // [stride] scratch
  unsigned* ready = nullptr;        // [fused_step_ready_counters(widths, stride)]: the counters the phases
                                    // wait on (fused_step.cu); all 0 between launches (zero them once)
  Metrics* metrics = nullptr;
  TrainCounters* counters = nullptr;
  float dropout = 0;  // rate in [0, 1)
  uint64_t seed = 0;
  float b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
  // Profiling only (profiling/bench_fused): which phases do their work, bit 0 = A, 1 = B, 2 = C;
  // the barriers, index loads and counters run regardless. Anything but 7 trains nothing
  // meaningful: it exists to time the phases apart on a GPU.
  unsigned phases = 7;
  // Also a grid barrier between phases A and B and between steps, where the counters alone order
  // them (FusedStep::ready): the same results, bit for bit, at the cost of two barriers a step. For
  // comparison (bench_fused's "-barriers" rows, gpu_test_fused's counters-vs-barriers case); FP32
  // only (fused_train_steps refuses it at TF32/BF16).
  bool grid_barriers = false;
  // The GEMMs' input rounding (kernels/precision.hpp): every GEMM input (X, W, dZ, the hidden
  // activations) rounded to TF32's or BF16's mantissa as kernels/dense.cu rounds it, the products
  // summed in the same float32 FMA chains (SIMT: at the fused kernel's batches the GEMMs are latency
  // in small tiles, not tensor-core throughput). FP32: no rounding, the bitwise contract above.
  GemmPrecision precision = GemmPrecision::FP32;
};

// Why the fused kernel cannot train a model of these Dense widths (widths[0] = input, then each
// layer's output) at this batch size: "" when it can.
std::string fused_step_unsupported(const std::vector<int>& widths, int batch);

// Dynamic shared memory of one block for these widths and batch size, in bytes.
std::size_t fused_step_smem_bytes(const std::vector<int>& widths, int batch);

// Counters of FusedStep::ready for these widths at this batch size.
int fused_step_ready_counters(const std::vector<int>& widths, int batch);

// Floats of FusedStep::partial these widths need at this batch size (0: none, no split-K).
std::size_t fused_step_partial_floats(const std::vector<int>& widths, int batch);

// Blocks of the fused kernel that the device runs co-resident (one per SM, fewer if the occupancy
// API allows none), capped at max_blocks when > 0; 0 when the device has no cooperative launch.
int fused_step_grid(const std::vector<int>& widths, int batch, int max_blocks,
                    GemmPrecision prec = GemmPrecision::FP32);

// `steps` consecutive training steps of `rows` rows each (rows <= f.stride; rows < stride only for
// an epoch's last, partial batch) in one cooperative launch of `blocks` blocks
// (<= fused_step_grid). Step s reads order[(counters.batch + s) * stride ...], Adam's t and the
// dropout counter are counters.step + s, the learning rate counters.lr.
void fused_train_steps(const FusedStep& f, int steps, int rows, int blocks, cudaStream_t stream);

// Evaluation scratch: per-block sums [fused_eval_blocks(n)] and the count of finished blocks
// (0 before the first launch; the last block resets it).
struct FusedEval {
  double* block_loss = nullptr;
  uint32_t* block_hit = nullptr;
  uint32_t* done = nullptr;
  Metrics* metrics = nullptr;
};

// Whether fused_evaluate can run a model of these widths (its rows' activations fit on chip).
bool fused_eval_supported(const std::vector<int>& widths);
int fused_eval_blocks(int n);

// *e.metrics += (Σ loss, Σ correct) over rows first .. first+n-1 of f.images/f.labels in eval
// mode (no dropout): one launch, 32 rows a block, every layer forward on chip, the softmax
// cross-entropy of softmax_xent; the sums are added in block order by the last block. Reads
// f.layers, f.layer[].in/out/offsets, f.params, f.images, f.labels, f.precision. At fp32 the logits
// equal the graph path's dense_forward chain bit for bit (layer 0 is not split here); at tf32/bf16
// every GEMM input is rounded as in training (FusedStep::precision).
void fused_evaluate(const FusedStep& f, const FusedEval& e, int64_t first, int n, cudaStream_t stream);

}  // namespace mnist::cuda
