// Engine: the contract every backend (CPU reference, CUDA) implements for the Sequential model.
//
// An engine owns the model's flat parameters, gradients and Adam moments (layout: model.hpp),
// every activation buffer (allocated once, for the configured batch size), and its own copy of
// the datasets it was given. It knows nothing of the CLI, callbacks or files: the trainer in
// apps/ drives it one epoch at a time and reads back metrics once per epoch.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/precision.hpp"
#include "layers/model.hpp"
#include "runtime/error.hpp"

namespace mnist {

// A dataset as the engine sees it: n examples of `dim` uint8 pixels and n labels < classes.
struct DataView {
  const uint8_t* images = nullptr;  // [n, dim]
  const uint8_t* labels = nullptr;  // [n]
  int n = 0;
  int dim = 0;
};

// CUDA GEMMs: the hand-written kernels, or cuBLAS/cuBLASLt (a reference, for comparison).
enum class Gemm { Native, Cublas };
// CUDA training step: `Fused` runs many steps (ideally a whole epoch) in one persistent kernel;
// `Graph` is the sequence of separate kernels per step, captured as CUDA graphs. A model the fused
// kernel cannot hold falls back to `Graph` with a one-line notice. `Auto` (the default) takes
// `Fused` where it is the faster of the two and can run (batch <= kFusedAutoMaxBatch in fp32,
// <= kFusedAutoMaxBatchRounded in tf32/bf16, native GEMMs); elsewhere (a larger batch, a model it
// cannot hold), with EngineConfig::autotune, the faster of `Tail` and `Graph` as the first epoch
// times them on the device (one step each from the same state, the graph path checked against the
// tail's moments first; Engine::autotune_report names the times), and `Tail` otherwise (faster at
// every batch measured, H200 a018989), `Graph` where the tail cannot run; never a notice. `Tail` is the graph path for large
// batches with fewer, larger launches: layer 0's forward, ONE launch for every later layer's
// forward, loss and backward (kernels/tail.cuh), layer 0's weight partials, and ONE launch that sums
// every layer's gradient pieces and runs Adam (cuda::adam_reduce_update); a model the tail kernel
// cannot hold falls back to `Graph` with a notice. Not yet measured on hardware: without autotuning
// `Auto` never picks it.
enum class Kernels { Auto, Fused, Graph, Tail };
// CUDA, native GEMMs: the GEMM tiles (and Auto's path) as the size models pick them (`Off`), timed
// on the device and the fastest kept (`On`), or every candidate run once and checked against the
// size model's pick without timing, the model's choices kept (`Check`: a self-test of every tile on
// the device, cheap enough under compute-sanitizer). EngineConfig::autotune says more.
enum class Autotune { Off, On, Check };
// CUDA: programmatic dependent launches on the tail path (EngineConfig::pdl).
enum class Pdl { Off, On };
// CUDA, tail path with programmatic launches: every launch asks for the largest shared-memory
// carveout (`Max`) or leaves the split to the driver (EngineConfig::carveout).
enum class Carveout { Driver, Max };
// CUDA, tail path: the tail kernel's blocks (EngineConfig::tail_rows): whole 32-row groups, at most
// 128 blocks (one an SM), or 16-row halves, at most 256 (two an SM).
enum class TailRows { Rows32, Rows16 };
// CUDA, tail path at tf32/bf16: layer 0's forward as a launch of its own or inside the tail kernel
// (the app's --layer0; EngineConfig::tail_layer0).
enum class Layer0 { Separate, Inside };
// ... and with it inside, how many tail blocks of a thread block cluster may share that work
// (EngineConfig::tail_layer0_cluster, the app's --layer0-cluster 1|2|4; cuda::TailLayer0::cluster).
enum class Layer0Cluster { One, Two, Four };
constexpr int cluster_blocks(Layer0Cluster c) { return c == Layer0Cluster::Four ? 4 : c == Layer0Cluster::Two ? 2 : 1; }
// Measured on an H200 (2026-11-26, profiling/results/2026-11-26-nvidia-h200-31770b8-bench-fused.txt,
// training ms/epoch, fused vs graph): 13.4 vs 18.2 at batch 128, 9.3 vs 11.6 at 256, 7.2 vs 7.5 at
// 512, 6.2 vs 2.4 at 4096 (1024 and 2048 not measured).
constexpr int kFusedAutoMaxBatch = 512;
// With --precision tf32|bf16 the fused kernel runs its SIMT chains on rounded inputs, so it keeps
// fp32's speed while the graph path's GEMMs move to tensor cores: measured on the H100 at fc62aa1,
// batch 128, fused fp32 14.6 ms/epoch against the graph path's 21.8 (tf32) and 20.9 (bf16); at 512
// fused fp32 8.3 against 6.9 and 6.5. Auto takes the fused kernel up to 256 rows there (between the
// two; a prediction from the H200's fp32 fused/graph ratio at 256, 9.3 vs 11.6 ms, not measured).
constexpr int kFusedAutoMaxBatchRounded = 256;
// Precision of the GEMMs' inputs (accumulation, weights and Adam state stay float32): `TF32` and
// `BF16` round the GEMM inputs to that format and run on tensor cores (the fused kernel, at the
// small batches where it runs, on its SIMT chains: the same rounded products, float32 sums); the
// CPU reference applies the same rounding so that every path computes the same thing.
using Precision = GemmPrecision;  // FP32, TF32, BF16: one enum, shared with kernels/ and cpu_ops

const char* to_string(Gemm g);
const char* to_string(Kernels k);
const char* to_string(Autotune a);
const char* to_string(Pdl p);
const char* to_string(Carveout c);
const char* to_string(TailRows r);
const char* to_string(Layer0 l);
const char* to_string(Layer0Cluster c);
const char* to_string(Precision p);

struct EngineConfig {
  ModelSpec spec;
  int batch_size = 128;
  // CPU engine: threads of a step (layers/cpu_engine.cpp), at most one per 16 rows; 0: OpenMP's
  // count (--threads, OMP_NUM_THREADS, else every core). Results agree across counts to float32
  // rounding (OpenBLAS sums a GEMM's slice in an order that can depend on its size).
  int cpu_threads = 0;
  uint64_t seed = 42;  // dropout masks and the epoch shuffle draw from it (kernels/philox.hpp)
  Init init = Init::Keras;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-7f;  // Adam, Keras's defaults
  bool shuffle = true;                              // reshuffle the training set every epoch
  Gemm gemm = Gemm::Native;                         // CUDA only
  Kernels kernels = Kernels::Auto;                  // CUDA only
  Precision precision = Precision::FP32;
  int graph_steps = 25;  // CUDA only: full-batch training steps per CUDA-graph replay or fused launch (>= 1)
  int fused_blocks = 0;  // CUDA only: cap on the fused kernel's blocks (0: one per SM); changes no result
  unsigned fused_phases = 7;  // profiling only (bench_fused): the fused step's phases that work (FusedStep::phases)
  bool fused_grid_barriers = false;  // comparison only: the fused step's two barriers back (FusedStep::grid_barriers)
  // CUDA graph path, native GEMMs: the last layer's forward, softmax + cross-entropy and backward
  // as one launch (kernels/head.cuh) where its shape qualifies; false keeps the separate launches
  // (for comparison: same loss and hits at fp32, dW/db up to float32 summation order).
  bool head_kernel = true;
  // ... from this training batch size up (measured on the H100, fc62aa1: the head takes 24.6 µs vs
  // 28.5 for the launches it replaces at 4096 rows, 45 vs 49 at 16384, but 17.4 vs 17.1 at 128, and
  // with it the graph path's training step at batch 128 went 48.6 -> 55.9 µs (a CUDA graph hides the
  // small launches' gaps that the one-launch bench counts). Below it, the separate launches.
  int head_min_batch = 1024;
  // Split-K of the GEMMs summed inside the GEMM's own launch (per-tile tickets, the last block of a
  // tile adds the pieces) instead of a second kernel, always. Off by default: measured slower on the
  // H100 (63006a1: weight GEMM 4096x784->128 tf32 43.9 vs 33.0 µs, 512 rows 17.3 vs 14.8) and the H200
  // (a018989: the 128x128 forward split at 4096 rows 45.5 vs 21.0 µs), when the last block added
  // its tile one output at a time, an L2 round trip each in sequence (kernels/dense.cu
  // finish_split_tile now loads a quad's pieces 4 at a time, 16 round trips for 64). With autotune On the tickets are passed
  // anyway and each GEMM's tuning times both ways (its candidates also run " 2-pass").
  bool split_in_launch = false;
  // CUDA graph and tail paths, native GEMMs: layer 0's GEMMs read X in place from the uint8 images
  // by index (kernels/dense.cuh DenseInput; no float batch), and the loss kernel the labels the
  // same way (kernels/labels.cuh): the step gathers nothing.
  // false: the batch gathered into floats first (the launches before; for the tests, which prove
  // the two bitwise equal). --gemm cublas always gathers; the fused step reads the images itself.
  // With Kernels::Auto and autotune above kFusedAutoMaxBatch, true lets the race try both.
  bool x_in_place = true;
  // Tail path with X in place: layer 0's weight GEMM reads X gathered into floats instead, by a
  // launch placed after the tail kernel that needs nothing of it, so that (programmatic launches,
  // `pdl`) it runs beside the tail kernel (cuda::gather_batch_overlapped). Measured on the H200
  // (a018989, bench_kernels layer0_input): the weight pieces on floats against the images, tf32,
  // 29.0 vs 38.5 µs at 4096 rows (fp32 42.9 vs 61.9, bf16 23.3 vs 34.4; 512 rows 22.0 vs 29.8),
  // the gather 6.8 µs alone; the forward stays faster on the images. Bitwise the same results
  // (test_dense_images). False: the weight GEMM reads the images too. With Kernels::Auto and
  // autotune, the race tries the tail path both ways.
  bool x_weight_gathered = true;
  // Tail path: layer 0's weight GEMM and its Adam in ONE launch (cuda::dense_weight_adam: each
  // output tile's pieces the blocks of one thread block cluster, summed from their shared memory and
  // applied to W, b, the moments and the rounded copy in the same launch), wherever the device holds
  // such clusters (sm_90; up to 16 pieces, layer 0's count at 1024-4096 rows). Bitwise the pieces in
  // memory and their segment of the optimizer launch. False: that older form. With Kernels::Auto
  // and autotune the race tries both.
  bool weight_adam = true;
  // Tail path: the tail kernel's rows in 16-row halves, up to 256 blocks, two an SM (Rows16:
  // cuda::TailRows::Half), where 32-row groups make one block an SM at most: a block's time was
  // latency, ≈ 10 µs + 0.375 µs a row whatever the grid (H200, a018989), which a second block beside
  // it hides. Other slices (each over fewer rows; more of them for the optimizer to add), so other
  // float32 sums for layers >= 1's gradients; the same dz0 and metrics. The app's --tail-rows 32|16.
  // With Kernels::Auto and autotune (at Rows32), the race tries Rows16 too wherever it makes more
  // blocks of 32 rows or fewer whose shared memory fits twice an SM (cuda::tail_half_rows_apply).
  TailRows tail_rows = TailRows::Rows32;
  // Tail path at TF32/BF16 with X in place: layer 0's forward inside the tail kernel
  // (cuda::TailLayer0: each block computes its rows' A0 from the images, W0 streamed through shared
  // memory), so the step has no layer-0 forward launch and A0 never goes to memory. Another float32
  // sum of layer 0's products (mma steps in ascending k), so other bits from A0 on; the evaluation's
  // tail launch computes layer 0 too, prediction keeps the separate forward (so the two may differ
  // in A0's last bits). Where cuda::tail_layer0_unsupported allows it, else
  // ignored with a notice. With Kernels::Auto and autotune (false here), the race tries it too. The
  // app's --layer0 separate|inside.
  bool tail_layer0 = false;
  // With layer 0 inside: the tail blocks of a thread block cluster (up to 4, or 2; One: none) share
  // layer 0's work, each computing 1/C of its units for the C blocks' rows and storing them into the
  // owners' shared memory over the cluster's network (sm_90), so that each streams 1/C of W0 where
  // alone each streams all of it (cuda::TailLayer0::cluster; the launch takes the largest size that
  // divides its blocks and that the device holds in one wave, cuda::tail_layer0_cluster). Changes no
  // result: every A0 element is the same mma chain. With Kernels::Auto and autotune, the race also
  // tries One. The app's --layer0-cluster 1|2|4.
  Layer0Cluster tail_layer0_cluster = Layer0Cluster::Four;
  // CUDA, native GEMMs: each GEMM's tile is timed on the device at its first launch and the fastest
  // kept (kernels/dense.cuh DenseAutotune: every tile the launcher can run, checked against the size
  // model's pick on the real operands first). Before the first graph capture the engine runs one
  // step's launches uncaptured, without the optimizer, so that every GEMM of the graphs is tuned;
  // evaluation and prediction tune theirs at first use. Off: the launchers' size models, the same
  // tiles on every run. The app turns it on (--autotune on, the default); the library default is off
  // so that tests comparing two engines bit for bit see the same tiles in both. Check: every
  // candidate (tile and path) runs and is checked as above, none is timed, the models' picks stay.
  Autotune autotune = Autotune::Off;
  // CUDA, tail path: the step's four launches and the evaluation's two are programmatic dependent
  // launches (kernels/pdl.cuh): each kernel is launched while the one before it runs, its blocks
  // take the SMs that one leaves free, and the part of it that needs nothing of that kernel (the
  // tail kernel's weight staging and labels, Adam on the tail's slices) runs before it waits. Only
  // where cuda::programmatic_launch_works (sm_90+, probed once at construction); else, and with
  // Off, ordinary launches. Changes no result (every kernel waits before it reads its
  // predecessor's output). The app's --pdl on|off. With Kernels::Auto and autotune, where the
  // probe passes, the race tries the tail step with ordinary launches too.
  Pdl pdl = Pdl::On;
  // CUDA, tail path, with the programmatic launches above: each of them asks for the largest
  // shared-memory carveout, so that the step's kernels share one split of the SM between shared
  // memory and L1 and a block of the next can start beside the one before (kernels/pdl_scope.hpp).
  // Driver: the driver's own split per launch. Changes no result. The app's --carveout max|driver.
  // With Kernels::Auto and autotune, where the probe passes, the race tries the driver's split too.
  Carveout carveout = Carveout::Max;
  // CUDA, graph and tail paths at TF32/BF16, native GEMMs: a copy of the parameters rounded to the
  // precision, written by the optimizer in the pass that updates them (and refreshed wherever the
  // parameters are written from the host), from which the GEMMs read W without rounding it again:
  // the TF32 pipelined and wgmma tiles skip their pass over W's stages (kernels/adam.cuh
  // RoundedParams). Changes no result (rounding is idempotent). False: the GEMMs read the raw
  // weights and round them, as before (for the tests, which prove the two bitwise equal).
  bool rounded_weights = true;
  // CUDA: rows of each evaluation and prediction chunk (the device buffers hold max(batch, this)
  // rows). A row's result does not depend on its chunk (kernels/dense.cuh), so this changes nothing
  // but the order in which the chunks' loss sums are added, and the launches: the tutorial's 12,000
  // validation rows are one chunk (two launches on the tail path: layer 0's forward and
  // tail_evaluate) where 4096-row chunks took three of each. 1 ... 65536 (the tail and head
  // kernels' most rows a launch); tests set a small value to cover several chunks.
  int eval_rows = 16384;
};

struct EpochStats {
  double loss = 0;      // mean per-example loss
  double accuracy = 0;  // fraction in [0, 1]
  int64_t examples = 0;
};

// Where an epoch stands: the next batch to run and the sums so far. Lets an interrupted epoch
// be checkpointed between two steps and resumed bit-identically (the epoch's order is a pure
// function of (seed, epoch) and dropout of (seed, step)).
struct EpochProgress {
  int next_batch = 0;
  int end_batch = -1;   // stop before this batch (-1: run to the epoch's end); not saved
  double loss_sum = 0;  // sum of per-example losses over the batches done
  int64_t correct = 0;
  int64_t examples = 0;
  // Optional, not saved: a live view for a progress bar. train_steps calls it as steps complete
  // with the batches done and the epoch's running loss/accuracy up to there. The CPU engine calls
  // it after every step; the CUDA engine between its launches, from metrics copied asynchronously
  // into pinned memory and read once their event has completed: never a stream synchronisation.
  std::function<void(int batches_done, int batches, const EpochStats& running)> on_steps;
  EpochStats stats() const {
    return {examples ? loss_sum / double(examples) : 0.0, examples ? double(correct) / double(examples) : 0.0, examples};
  }
};

// Parameters and optimiser state, each in the flat padded layout. Used for best-weight restore,
// checkpoints and for moving a model between backends.
struct TrainState {
  std::vector<float> params, m, v;
  int64_t step = 0;  // Adam steps taken so far (also the dropout counter)
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;  // "cpu" or "cuda"
  // A one-line notice for the user about how the configuration runs (e.g. a fallback from the
  // fused CUDA kernel to the graph path, and why); empty when there is nothing to say.
  virtual std::string notice() const { return {}; }
  // Whether the training steps run as the fused CUDA kernel (Kernels::Auto/Fused resolved).
  virtual bool fused_step() const { return false; }
  // Whether the CUDA graph path runs the last layer as the head kernel (EngineConfig::head_kernel).
  virtual bool head_kernel() const { return false; }
  // Whether the training steps run the tail kernel path (Kernels::Tail resolved).
  virtual bool tail_kernel() const { return false; }
  // Whether the tail path's launches are programmatic dependent launches (EngineConfig::pdl, where
  // the device passed the probe).
  virtual bool programmatic_launch() const { return false; }
  // ... and each of them asks for the largest shared-memory carveout (EngineConfig::carveout).
  virtual bool max_carveout() const { return false; }
  // ... and its tail kernel takes 16-row blocks, two an SM (EngineConfig::tail_rows, or the race's pick).
  virtual bool tail_rows16() const { return false; }
  // ... and its tail kernel computes layer 0's forward itself (EngineConfig::tail_layer0, or the race's pick).
  virtual bool tail_layer0() const { return false; }
  // ... in clusters of this many blocks (EngineConfig::tail_layer0_cluster; 1: none) at the batch size.
  virtual int tail_layer0_cluster() const { return 1; }
  // Whether the GEMMs read W from the optimizer's rounded copy (EngineConfig::rounded_weights).
  virtual bool rounded_weights() const { return false; }
  // What autotuning found (EngineConfig::autotune): one line per tuned GEMM, process-wide, in the
  // order they were tuned; empty when nothing was tuned.
  virtual std::vector<std::string> autotune_report() const { return {}; }
  // The choices autotuning has made, operation -> kept candidate (the GEMM tiles, process-wide, and
  // this engine's training path where --kernels auto raced it), and their preset: a resumed run
  // gets the interrupted run's, so that it continues bit for bit (a wgmma tile or the other path
  // would change the last bits). Preset operations are not tuned again; the others are, as usual.
  // A choice that names no tile or path is an InputError naming it.
  virtual std::map<std::string, std::string> autotune_choices() const { return {}; }
  virtual void set_autotune_choices(const std::map<std::string, std::string>& choices) { (void)choices; }
  virtual const ParamLayout& layout() const = 0;

  // Copies a dataset into the engine (the GPU engine uploads it once) and returns its handle.
  virtual int add_dataset(const DataView& data) = 0;

  // Epoch `epoch` of training over dataset `train` in batches of batch_size (the last one may be
  // shorter), shuffled by (seed, epoch) when shuffling is on, dropout on, Adam with rate `lr`,
  // from batch progress.next_batch on (before progress.end_batch when that is >= 0), stopping
  // after a whole step once *interrupt (if given) reads true. Accumulates into `progress`;
  // returns true when the epoch is complete.
  virtual bool train_steps(int train, int64_t epoch, float lr, EpochProgress& progress,
                           const std::atomic<bool>* interrupt) = 0;

  // The whole epoch, uninterrupted.
  EpochStats train_epoch(int train, int64_t epoch, float lr) {
    EpochProgress p;
    train_steps(train, epoch, lr, p, nullptr);
    return p.stats();
  }

  // Loss and accuracy over a dataset in eval mode (no dropout), batch by batch.
  virtual EpochStats evaluate(int data) = 0;

  // A hint, given before train_steps: the caller evaluates dataset `data` as soon as that call
  // completes its epoch. The CUDA engine then enqueues the evaluation behind the epoch's last step
  // and reads both metrics with the epoch's one synchronisation, so the GPU does not idle while the
  // host returns and launches the evaluation; evaluate(data) returns that result, the same bits.
  // Without the hint, or when anything else comes first (an incomplete epoch, new parameters, another
  // dataset), evaluate runs as always. One epoch only: the next train_steps clears it.
  virtual void queue_evaluation(int data) { (void)data; }

  // Softmax probabilities [n, classes] for n images (eval mode).
  virtual void predict(float* probs, const uint8_t* images, int n) = 0;

  virtual void get_params(std::vector<float>& flat) = 0;
  virtual void set_params(const std::vector<float>& flat) = 0;
  virtual void get_state(TrainState& state) = 0;
  virtual void set_state(const TrainState& state) = 0;
};

// The CPU reference engine (layers/cpu_engine.cpp). Parameters start from init_params(seed).
std::unique_ptr<Engine> make_cpu_engine(const EngineConfig& cfg);

// The CUDA engine (layers/cuda_engine.cu). Throws CudaError when no device is usable.
std::unique_ptr<Engine> make_cuda_engine(const EngineConfig& cfg);

}  // namespace mnist
