// The dense GEMMs' host side: the split-K plan, the dispatch to each precision's launchers
// (kernels/dense_impl.cuh, compiled in dense_<precision>_forward.cu and _backward.cu), the autotuner and kernels/dense.cuh's
// functions.
#include "kernels/dense.cuh"

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "kernels/dense_impl.cuh"
#include "runtime/nvtx.hpp"

namespace mnist::cuda {
namespace dense_impl {

__global__ void wgmma_probe_kernel(int* out) { *out = MNIST_WGMMA; }

bool wgmma_available() {
  static const bool available = [] {
    int* d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, sizeof(int)));
    CUDA_CHECK(cudaMemset(d, 0, sizeof(int)));
    wgmma_probe_kernel<<<1, 1>>>(d);
    const cudaError_t launched = cudaGetLastError();  // no image for this device: no wgmma either
    int h = 0;
    const cudaError_t e = cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost);
    CUDA_CHECK(cudaFree(d));
    CUDA_CHECK(e);
    return launched == cudaSuccess && h == 1;
  }();
  return available;
}

bool clusters_available() {
  static const bool available = device_launches_clusters();  // (kernels/pdl.cuh)
  return available;
}

}  // namespace dense_impl
namespace {

using namespace dense_impl;

template <Kind KIND>
bool launch_gemm(const GemmParams& p, GemmPrecision prec, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0) return false;
  switch (prec) {
    case GemmPrecision::FP32: return launch_gemm_as<GemmPrecision::FP32, KIND>(p, stream);
    case GemmPrecision::TF32: return launch_gemm_as<GemmPrecision::TF32, KIND>(p, stream);
    case GemmPrecision::BF16: return launch_gemm_as<GemmPrecision::BF16, KIND>(p, stream);
  }
  MNIST_CHECK(false, "dense GEMM: unknown precision");
  return false;
}

void launch_backward(const GemmParams& w, const GemmParams& d, GemmPrecision prec, cudaStream_t stream) {
  switch (prec) {
    case GemmPrecision::FP32: launch_backward_as<GemmPrecision::FP32>(w, d, stream); return;
    case GemmPrecision::TF32: launch_backward_as<GemmPrecision::TF32>(w, d, stream); return;
    case GemmPrecision::BF16: launch_backward_as<GemmPrecision::BF16>(w, d, stream); return;
  }
  MNIST_CHECK(false, "dense backward: unknown precision");
}

// Split-K of a layer's weight GEMM (dW [N, K+1] over the B rows of the batch): a pure function of
// (B, K, N), so the split points, and with them every bit of the result, are the same whatever the
// tile choice, the launch (alone or fused with the data GEMM) or the device. Each piece is a
// multiple of 32 rows (whole K slices). 0: no split.
//
// The pieces aim at one wave of 128x128-tile blocks (one an SM of a 132-SM H100/H200): a018989's
// rows show every large GEMM's blocks taking in their operands at about 7 bytes a clock an SM
// whatever the tile, so the time is the bytes an SM reads, and the 128x128 tile reads each operand
// slice for twice the outputs of the 64x64 one. Layer 0's 4096 x 784 -> 128 (7 such tiles) is cut
// in 16 pieces of 256 rows (112 blocks of 8 slices: 27 MB read) where the earlier model (four
// 32x32-tile blocks an SM, pieces of at least 256 rows) cut 6 pieces, which filled the GPU only
// with 64x64 tiles (156 blocks of 22 slices: 54 MB). Shorter pieces also shorten each block's
// serial walk where few tiles are wide (the 10-output layer at 4096 rows took ~17 µs a launch in
// 16 pieces of 256 rows, a018989). Bounds: pieces of at least 64 rows (two slices: a block's fixed
// cost, its prologue and its partial's store, stays below its walk), at most 64 pieces (what the
// sum of the pieces reads: 64 x the outputs), and no split below 512 rows (a walk of at most 16
// slices, where the second pass would cost about what the split saves).
constexpr long long kSplitWaveBlocks = 128;
constexpr int kSplitPieceMinRows = 64;
constexpr int kSplitMaxPieces = 64;
constexpr int kSplitMinBatch = 512;
// The second pass's grid: at most four blocks an SM of a 132-SM GPU.
constexpr long long kSplitTargetBlocks = 528;
// The forward's K split: pieces of about kSplitMinCols inputs.
constexpr int kSplitMinCols = 256;

// Split-K of a forward GEMM over its K inputs (layer 1's 784 at small batches runs as 16 blocks
// that each walk all of K): pieces of about 256 inputs (multiples of 32) once K >= 512. A function
// of K only, so a row's result still does not depend on the batch it is computed in. 0: no split.
int forward_split_cols(int K) {
  if (K < 2 * kSplitMinCols) return 0;
  const int splits = (K + kSplitMinCols - 1) / kSplitMinCols;
  return ((K + splits - 1) / splits + 31) / 32 * 32;
}

int g_forced_weight_pieces = 0;  // dense_force_weight_pieces (benchmarks); 0: the model below

int weight_split_rows(int B, int K, int N) {
  if (g_forced_weight_pieces > 0) {  // that many pieces of whole 32-row slices, where B has the rows
    const int splits = std::min(g_forced_weight_pieces, B / 32);
    return splits < 2 ? 0 : ((B + splits - 1) / splits + 31) / 32 * 32;
  }
  if (B < kSplitMinBatch) return 0;
  const long long t = (long long)((N + 127) / 128) * ((K + 1 + 127) / 128);  // 128x128 tiles of dW
  const long long want = std::max<long long>(1, kSplitWaveBlocks / t);
  const int splits = int(std::min<long long>({want, B / kSplitPieceMinRows, kSplitMaxPieces}));
  if (splits < 2) return 0;
  return ((B + splits - 1) / splits + 31) / 32 * 32;
}

void check_sizes(const char* op, int B, int K, int N) {
  MNIST_CHECK(B >= 0 && K > 0 && N > 0, op, ": invalid sizes B=", B, " K=", K, " N=", N);
}

// X's fields of p (DenseInput, dense.cuh): the float pointer, or the images read in place.
void set_input(GemmParams& p, const DenseInput& X) {
  p.images = X.images;
  p.rows = X.rows;
}

GemmParams forward_params(float* Y, const DenseInput& X, const float* W, const float* b, int B, int K, int N,
                          bool relu) {
  GemmParams p;
  p.M = B;
  p.N = N;
  p.K = K;
  p.a = X.images ? nullptr : X.x;
  set_input(p, X);
  p.lda = K;
  p.b = W;
  p.ldb = K;
  p.out = Y;
  p.ldo = N;
  p.bias = b;
  p.relu = relu;
  return p;
}

GemmParams weight_params(float* dW, float* db, const float* dZ, const DenseInput& X, int B, int K, int N) {
  GemmParams p;
  p.M = N;
  p.N = db ? K + 1 : K;
  p.K = B;
  p.a = dZ;
  p.lda = N;
  p.b = X.images ? nullptr : X.x;
  set_input(p, X);
  p.ldb = K;
  p.ones_col = db ? K : -1;
  p.out = dW;
  p.ldo = K;
  p.db = db;
  return p;
}

GemmParams data_params(float* dX, const float* dZ, const float* W, const float* mask, float mask_scale, int B,
                       int K, int N) {
  GemmParams p;
  p.M = B;
  p.N = K;
  p.K = N;
  p.a = dZ;
  p.lda = N;
  p.b = W;
  p.ldb = K;
  p.out = dX;
  p.ldo = K;
  p.mask = mask;
  p.mask_scale = mask_scale;
  return p;
}

// With a workspace, the weight GEMM w is split over its rows as weight_split_rows says (reduced in
// the GEMM's launch when tickets are given, else by a second kernel).
void set_split(GemmParams& w, float* workspace, unsigned* tickets, int B, int K, int N) {
  if (!workspace) return;
  w.split_k = weight_split_rows(B, K, N);
  if (w.split_k) w.partial = workspace, w.tickets = tickets;
}

// Launches split-K's second pass for p (when p was split and its blocks do not reduce it
// themselves: no tickets).
template <Kind KIND>
void launch_split_reduce(const GemmParams& p, cudaStream_t stream) {
  if (!p.partial || p.tickets) return;
  const std::size_t mn = std::size_t(p.M) * p.N;
  const unsigned blocks = unsigned(std::min<std::size_t>((mn + 255) / 256, std::size_t(kSplitTargetBlocks)));
  launch_kernel(dense_split_reduce_kernel<KIND>, dim3(blocks), dim3(256), 0, stream, p);
  MNIST_LAUNCH_CHECK(stream);
}

// dW/db, and dX when requested and B > 0: one launch for both when there are both; then, when the
// weight GEMM was split without tickets, the fixed-order sum of its partials.
void launch_weights_and_data(const GemmParams& w_in, const GemmParams* d, GemmPrecision prec, cudaStream_t stream) {
  if (w_in.M <= 0 || w_in.N <= 0) return;
  const GemmParams w = ticketed(w_in);
  if (d && d->M > 0)
    launch_backward(w, *d, prec, stream);
  else
    launch_gemm<Kind::Weight>(w, prec, stream);
  launch_split_reduce<Kind::Weight>(w, stream);  // the weight GEMM's split is never folded
}

// Forward GEMM p, split over K when a workspace is given and K is deep, then its reduction (in
// the GEMM's launch with tickets or when folded, else a second kernel).
void launch_forward(GemmParams p, float* workspace, unsigned* tickets, GemmPrecision prec, cudaStream_t stream) {
  if (workspace) {
    p.split_k = forward_split_cols(p.K);
    if (p.split_k) p.partial = workspace, p.tickets = tickets;
  }
  p = ticketed(p);
  if (launch_gemm<Kind::Forward>(p, prec, stream)) launch_split_reduce<Kind::Forward>(p, stream);
}

// ---- Autotuning (DenseAutotune, dense.cuh) ----

int g_autotune = 0;         // open DenseAutotune scopes that tune
bool g_autotune_timed = true;  // the innermost such scope times its candidates (else checks only)
const char* g_last_tile = "auto";  // dense_last_tile (tests): a literal or a kept option's label

// One tile a launcher can be made to run: the forcing hooks' values.
struct TileOption {
  std::string label;
  SimtTileChoice simt;
  GemmTileChoice tc;
  bool second_pass = false;  // a split's pieces summed by the second kernel, not the tickets (" 2-pass")
};
std::map<std::string, TileOption> g_tuned;  // operation (tune_key) -> the tile kept
std::vector<autotune::Record> g_records;

// Sets the forcing hooks to o for one launch, then back to Auto (tuning runs only when no test
// forces a tile).
class ForceFor {
 public:
  explicit ForceFor(const TileOption& o) {
    g_forced_simt = o.simt, g_forced_tile = o.tc, g_forced_second_pass = o.second_pass;
  }
  ~ForceFor() { g_forced_simt = {}, g_forced_tile = {}, g_forced_second_pass = false; }
};

// Which wgmma tiles an operation can run (where the device has them): the forward's (Wgmma,
// Wgmma128, WgmmaWide), the weight-only GEMM's (Wgmma, Wgmma128: WgmmaWeightTile), or none.
enum class WgmmaOp { None, Forward, Weight };

// Every tile that can run an operation at prec, its split (if any) summed in the launch.
std::vector<TileOption> tile_options_in_launch(GemmPrecision prec, bool fold, WgmmaOp wgmma) {
  std::vector<TileOption> o{{"model", {}, {}}};
  if (prec == GemmPrecision::FP32) {
    o.push_back({"scalar", {SimtTileKind::Scalar, false}, {}});
    const std::pair<const char*, SimtTileKind> vec[] = {
        {"vec32", SimtTileKind::Vec32}, {"vec64", SimtTileKind::Vec64}, {"vec128", SimtTileKind::Vec128}};
    for (const auto& [name, kind] : vec) {
      o.push_back({name, {kind, false}, {}});
      if (fold) o.push_back({cat(name, " fold"), {kind, true}, {}});
    }
    if (fold && clusters_available())  // a split forward's pieces summed across a cluster of blocks
      for (const auto& [name, kind] : vec) o.push_back({cat(name, " cluster"), {kind, false, true}, {}});
    return o;
  }
  o.push_back({"mma", {}, {GemmTile::Mma, false}});
  std::vector<std::pair<const char*, GemmTile>> tc = {
      {"pipe64", GemmTile::Pipe64}, {"pipe64x8", GemmTile::Pipe64x8}, {"pipe128", GemmTile::Pipe128}};
  if (wgmma != WgmmaOp::None) tc.insert(tc.end(), {{"wgmma", GemmTile::Wgmma}, {"wgmma128", GemmTile::Wgmma128}});
  if (wgmma == WgmmaOp::Forward) tc.push_back({"wgmma2wg", GemmTile::WgmmaWide});
  for (const auto& [name, tile] : tc) {
    o.push_back({name, {}, {tile, false}});
    if (fold) o.push_back({cat(name, " fold"), {}, {tile, true}});
  }
  // A split forward's pieces summed across a cluster of blocks (the pipelined tiles, sm_90)
  if (fold && clusters_available())
    for (const auto& [name, tile] : tc)
      if (tile == GemmTile::Pipe64 || tile == GemmTile::Pipe64x8 || tile == GemmTile::Pipe128)
        o.push_back({cat(name, " cluster"), {}, {tile, false, true}});
  return o;
}

// The tiles worth trying for an operation at prec: `fold` when a forward's K split can be folded
// into the block, `wgmma` the wgmma tiles the operation can run (where the device does), `tickets`
// when it splits and the caller passed tickets: then every unfolded tile also as " 2-pass", its
// pieces summed by the second kernel instead of its last block.
std::vector<TileOption> tile_options(GemmPrecision prec, bool fold, WgmmaOp wgmma, bool tickets) {
  std::vector<TileOption> o = tile_options_in_launch(prec, fold, wgmma);
  if (!tickets) return o;
  const std::size_t n = o.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (o[i].tc.fold_forward_split || o[i].simt.fold_forward_split || o[i].tc.cluster_split ||
        o[i].simt.cluster_split)
      continue;  // folded, or summed across the cluster: no pieces in memory to sum
    TileOption two = o[i];
    two.label += " 2-pass";
    two.second_pass = true;
    o.push_back(std::move(two));
  }
  return o;
}

const char* precision_name(GemmPrecision p) {
  return p == GemmPrecision::TF32 ? "tf32" : p == GemmPrecision::BF16 ? "bf16" : "fp32";
}

// The operation's key and report name: everything that decides which tiles can run it and how fast.
std::string tune_key(const char* op, int B, int K, int N, GemmPrecision prec, const DenseInput& X,
                     const float* workspace, const unsigned* tickets) {
  return cat(op, " ", B, "x", K, "->", N, " ", precision_name(prec),
             X.images ? ", X from the images" : "", workspace ? ", split-K workspace" : "",
             tickets ? " + tickets" : "");
}

// An operation as the tuner sees it: its key (tune_key) and the outputs its candidates must agree on.
struct Described {
  std::string key;
  std::vector<autotune::Output> outputs;
};

// Operations of fewer multiply-adds are not tuned: a launch's fixed cost (a few µs) dominates every
// tile there, and tuning them would cost more than it could save (a prediction of 10 rows, the
// small layers at batch 128).
constexpr double kTuneMinWork = double(1 << 20);

// Runs `launch` (the whole operation, enqueued on stream; idempotent; `work` multiply-adds) with
// the tile DenseAutotune chose for `key`, tuning it first where this is the operation's first
// launch in a scope and the stream is not capturing; the size models otherwise.
// `describe` returns the operation's key (tune_key) and its outputs; it runs only inside a tuning
// scope, so an untuned launch builds no string and allocates nothing.
// `tickets`: the operation splits and its caller passed tickets (its candidates also run " 2-pass").
template <class Describe, class Launch>
void run_tuned(double work, GemmPrecision prec, bool fold, WgmmaOp wgmma_op, bool tickets, cudaStream_t stream,
               const Describe& describe, const Launch& launch) {
  const bool forced = g_forced_tile.tile != GemmTile::Auto || g_forced_simt.tile != SimtTileKind::Auto;
  if (!g_autotune || forced || work < kTuneMinWork) {
    g_last_tile = forced ? "forced" : "auto";
    return launch();
  }
  const auto [key, outputs] = describe();
  auto it = g_tuned.find(key);
  if (it == g_tuned.end()) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    if (capture != cudaStreamCaptureStatusNone) {
      g_last_tile = "auto";
      return launch();
    }
    const std::vector<TileOption> options =
        tile_options(prec, fold, prec != GemmPrecision::FP32 && wgmma_available() ? wgmma_op : WgmmaOp::None, tickets);
    std::vector<autotune::Candidate> candidates;
    for (const TileOption& o : options)
      candidates.push_back({o.label, [&launch, &o] {
                              ForceFor force(o);
                              launch();
                            }});
    NvtxRange range("autotune");  // (profiles: every candidate's launches inside it)
    autotune::Record rec;
    rec.op = key;
    const int kept = autotune::tune(candidates, outputs, stream, rec, g_autotune_timed);
    g_records.push_back(rec);
    it = g_tuned.emplace(key, options[std::size_t(kept)]).first;
  }
  g_last_tile = it->second.label.c_str();  // (map nodes do not move)
  if (it->second.label == "model") return launch();
  ForceFor force(it->second);
  launch();
}

}  // namespace

void dense_force_tile(GemmTileChoice choice) { g_forced_tile = choice; }

// (dense_force_ablation: in dense_tf32_ablation.cu, the benchmarks' library mnist_dense_ablation)
void dense_force_weight_pieces(int pieces) { g_forced_weight_pieces = std::max(pieces, 0); }
bool dense_wgmma_available() { return wgmma_available(); }
bool dense_clusters_available() { return clusters_available(); }
int dense_cluster_capacity(GemmTile tile, int splits, GemmPrecision prec) {
  return prec == GemmPrecision::TF32   ? cluster_capacity_as<GemmPrecision::TF32>(tile, splits)
         : prec == GemmPrecision::BF16 ? cluster_capacity_as<GemmPrecision::BF16>(tile, splits)
                                       : 0;
}
void dense_force_simt_tile(SimtTileChoice choice) { g_forced_simt = choice; }

long long dense_images_fallbacks() { return g_images_fallbacks; }

DenseAutotune::DenseAutotune(bool on, bool timed) : on_(on), timed_before_(g_autotune_timed) {
  if (!on) return;
  ++g_autotune;
  g_autotune_timed = timed;
}
DenseAutotune::~DenseAutotune() {
  if (!on_) return;
  --g_autotune;
  g_autotune_timed = timed_before_;
}
std::vector<autotune::Record> dense_autotune_records() { return g_records; }
void dense_autotune_reset() {
  g_last_tile = "auto";  // (it may point into g_tuned)
  g_tuned.clear();
  g_records.clear();
}
std::string dense_last_tile() { return g_last_tile; }

std::map<std::string, std::string> dense_autotune_choices() {
  std::map<std::string, std::string> c;
  for (const auto& [key, option] : g_tuned) c[key] = option.label;
  return c;
}

void dense_autotune_preset(const std::map<std::string, std::string>& choices) {
  std::vector<TileOption> all = tile_options(GemmPrecision::FP32, true, WgmmaOp::None, true);
  for (TileOption& o : tile_options(GemmPrecision::TF32, true, WgmmaOp::Forward, true)) all.push_back(std::move(o));
  for (const auto& [key, label] : choices) {
    const std::string& want = label;  // (a lambda may not capture a structured binding before C++20)
    auto it = std::find_if(all.begin(), all.end(), [&want](const TileOption& o) { return o.label == want; });
    if (it == all.end()) throw InputError(cat("autotune choice '", label, "' for '", key, "' names no GEMM tile"));
    g_last_tile = "auto";  // (it may point at the label replaced here)
    g_tuned[key] = *it;
  }
}

void dense_prepare() {
  prepare_tiles<GemmPrecision::TF32, true>();
  prepare_tiles<GemmPrecision::TF32, false>();
  prepare_tiles<GemmPrecision::BF16, true>();
  prepare_tiles<GemmPrecision::BF16, false>();
}

namespace {

// dense_forward's / dense_backward_data's w_rounded: W (the B operand of the Forward and Data GEMMs)
// is already rounded to prec (FP32 has no rounding to skip: its launches and keys stay as they were).
void promise_w_rounded(GemmParams& p, GemmPrecision prec, bool w_rounded) {
  if (w_rounded && prec != GemmPrecision::FP32) p.rounded |= kRoundedB;
}
// The autotune key's note for it: the tiles that skip the pass run faster, so it is its own GEMM.
const char* w_note(const GemmParams& p) { return p.rounded & kRoundedB ? ", W rounded" : ""; }

}  // namespace

void dense_forward(float* Y, DenseInput X, const float* W, const float* b, int B, int K, int N, bool relu,
                   cudaStream_t stream, GemmPrecision prec, float* workspace, unsigned* tickets, bool w_rounded) {
  check_sizes("dense_forward", B, K, N);
  if (B == 0) return;
  MNIST_CHECK(Y && X.present() && W && b, "dense_forward: null pointer");
  GemmParams p = forward_params(Y, X, W, b, B, K, N, relu);
  promise_w_rounded(p, prec, w_rounded);
  const bool split = workspace && forward_split_cols(K) > 0;
  run_tuned(double(B) * K * N, prec, split, WgmmaOp::Forward, split && tickets, stream,
            [&] {
              return Described{tune_key("forward", B, K, N, prec, X, workspace, tickets) + w_note(p),
                               {{Y, std::size_t(B) * N}}};
            },
            [&] { launch_forward(p, workspace, tickets, prec, stream); });
}

void dense_relu_dropout_forward(float* D, DenseInput X, const float* W, const float* b, int B, int K, int N,
                                const DropoutSpec& drop, cudaStream_t stream, GemmPrecision prec,
                                float* workspace, unsigned* tickets, bool w_rounded) {
  check_sizes("dense_relu_dropout_forward", B, K, N);
  MNIST_CHECK(drop.p >= 0.0f && drop.p < 1.0f, "dropout probability must be in [0, 1), got ", drop.p);
  if (B == 0) return;
  MNIST_CHECK(D && X.present() && W && b, "dense_relu_dropout_forward: null pointer");
  GemmParams p = forward_params(D, X, W, b, B, K, N, true);
  if (drop.p > 0.0f) {
    p.dropout = true;
    p.threshold = rng::dropout_threshold(drop.p);
    p.scale = dropout_scale(drop.p);
    p.seed = drop.seed;
    p.step = drop.step;
    p.counters = drop.counters;
    p.layer = drop.layer;
  }
  promise_w_rounded(p, prec, w_rounded);
  const bool split = workspace && forward_split_cols(K) > 0;
  run_tuned(double(B) * K * N, prec, split, WgmmaOp::Forward, split && tickets, stream,
            [&] {
              return Described{tune_key("forward", B, K, N, prec, X, workspace, tickets) + w_note(p),
                               {{D, std::size_t(B) * N}}};
            },
            [&] { launch_forward(p, workspace, tickets, prec, stream); });
}

std::size_t dense_workspace_floats(int B, int K, int N) {
  if (B <= 0 || K <= 0 || N <= 0) return 0;
  const int rows = weight_split_rows(B, K, N), cols = forward_split_cols(K);
  const std::size_t weight = rows ? std::size_t((B + rows - 1) / rows) * std::size_t(N) * std::size_t(K + 1) : 0;
  const std::size_t forward = cols ? std::size_t((K + cols - 1) / cols) * std::size_t(B) * std::size_t(N) : 0;
  return std::max(weight, forward);
}

std::size_t dense_ticket_count(int B, int K, int N) {
  if (B <= 0 || K <= 0 || N <= 0) return 0;
  // one per output tile of the smallest tile (32x32) of a GEMM that splits
  auto tiles32 = [](long long M, long long N) { return std::size_t((M + 31) / 32) * std::size_t((N + 31) / 32); };
  const std::size_t weight = weight_split_rows(B, K, N) ? tiles32(N, K + 1) : 0;
  const std::size_t forward = forward_split_cols(K) ? tiles32(B, N) : 0;
  return std::max(weight, forward);
}

void dense_backward_weights(float* dW, float* db, const float* dZ, DenseInput X, int B, int K, int N,
                            cudaStream_t stream, GemmPrecision prec, float* workspace, unsigned* tickets) {
  check_sizes("dense_backward_weights", B, K, N);
  MNIST_CHECK(dW && (B == 0 || (dZ && X.present())), "dense_backward_weights: null pointer");
  if (B == 0) return launch_weights_and_data(weight_params(dW, db, dZ, X, B, K, N), nullptr, prec, stream);
  GemmParams w = weight_params(dW, db, dZ, X, B, K, N);
  set_split(w, workspace, tickets, B, K, N);
  run_tuned(double(B) * K * N, prec, false, WgmmaOp::Weight, w.tickets != nullptr, stream,
            [&] {
              Described desc{tune_key(db ? "weight+db" : "weight", B, K, N, prec, X, workspace, tickets),
                             {{dW, std::size_t(N) * K}}};
              if (db) desc.outputs.push_back({db, std::size_t(N)});
              return desc;
            },
            [&] { launch_weights_and_data(w, nullptr, prec, stream); });
}

int dense_weight_slices(int B, int K, int N) {
  if (B <= 0 || K <= 0 || N <= 0) return 1;
  const int rows = weight_split_rows(B, K, N);
  return rows ? (B + rows - 1) / rows : 1;
}

std::size_t dense_weight_partial_floats(int B, int K, int N) {
  return std::size_t(dense_weight_slices(B, K, N)) * std::size_t(std::max(N, 0)) * std::size_t(std::max(K, 0) + 1);
}

void dense_weight_partials(float* partial, const float* dZ, DenseInput X, int B, int K, int N, cudaStream_t stream,
                           GemmPrecision prec, bool dz_rounded, bool x_rounded) {
  check_sizes("dense_weight_partials", B, K, N);
  MNIST_CHECK(partial && (B == 0 || (dZ && X.present())), "dense_weight_partials: null pointer");
  if (B == 0) {  // one slice of zeros: the sum of no rows
    CUDA_CHECK(cudaMemsetAsync(partial, 0, dense_weight_partial_floats(B, K, N) * sizeof(float), stream));
    return;
  }
  // The unsplit GEMM with p.partial set stores its raw sums as slice 0 (split_count = 1).
  GemmParams w = weight_params(partial, partial, dZ, X, B, K, N);
  w.split_k = weight_split_rows(B, K, N);
  w.partial = partial;
  // (FP32 has no rounding to skip: its launches and keys stay as they were)
  if (prec != GemmPrecision::FP32)
    w.rounded = (dz_rounded ? kRoundedA : 0u) | (x_rounded && !X.images ? kRoundedB : 0u);
  run_tuned(double(B) * K * N, prec, false, WgmmaOp::Weight, false, stream,
            [&] {
              const char* note = w.rounded == (kRoundedA | kRoundedB) ? ", inputs rounded"
                                 : w.rounded == kRoundedA             ? ", dZ rounded"
                                 : w.rounded == kRoundedB             ? ", X rounded"
                                                                      : "";
              return Described{tune_key("weight pieces", B, K, N, prec, X, nullptr, nullptr) + note,
                               {{partial, dense_weight_partial_floats(B, K, N)}}};
            },
            [&] { (void)launch_gemm<Kind::Weight>(w, prec, stream); });  // no reduction pass: the caller's
}

namespace {

int weight_adam_capacity(bool large, bool images, int pieces, GemmPrecision prec) {
  if (!clusters_available()) return 0;
  switch (prec) {
    case GemmPrecision::FP32: return weight_adam_capacity_as<GemmPrecision::FP32>(large, images, pieces);
    case GemmPrecision::TF32: return weight_adam_capacity_as<GemmPrecision::TF32>(large, images, pieces);
    case GemmPrecision::BF16: return weight_adam_capacity_as<GemmPrecision::BF16>(large, images, pieces);
  }
  return 0;
}

}  // namespace

int dense_weight_adam_clusters(int B, int K, int N, GemmPrecision prec, bool images, WeightAdamTile tile) {
  if (B <= 0 || K <= 0 || N <= 0 || (tile != WeightAdamTile::Large && tile != WeightAdamTile::Small)) return 0;
  return weight_adam_capacity(tile == WeightAdamTile::Large, images, dense_weight_slices(B, K, N), prec);
}

WeightAdamTile dense_weight_adam_tile(int B, int K, int N, GemmPrecision prec, bool images, WeightAdamTile want) {
  if (B <= 0 || K <= 0 || N <= 0 || want == WeightAdamTile::None) return WeightAdamTile::None;
  // (the tensor-core tiles copy dZ [B,N] and X [B,K] in 16-byte chunks: rows of whole chunks)
  if (prec != GemmPrecision::FP32 && (K % 4 != 0 || N % 4 != 0)) return WeightAdamTile::None;
  const int pieces = dense_weight_slices(B, K, N);
  const long long tiles_large = (long long)((N + 127) / 128) * ((K + 1 + 127) / 128);
  const long long tiles_small = (long long)((N + 63) / 64) * ((K + 1 + 63) / 64);
  const int large = want == WeightAdamTile::Small ? 0 : weight_adam_capacity(true, images, pieces, prec);
  const int small = want == WeightAdamTile::Large ? 0 : weight_adam_capacity(false, images, pieces, prec);
  if (want != WeightAdamTile::Auto) return (want == WeightAdamTile::Large ? large : small) > 0 ? want : WeightAdamTile::None;
  if (large > 0 && large >= tiles_large) return WeightAdamTile::Large;  // one wave of the 128x128 clusters
  if (large <= 0 && small <= 0) return WeightAdamTile::None;
  const auto waves = [](long long tiles, int held) { return held > 0 ? (tiles + held - 1) / held : (1LL << 62); };
  return waves(tiles_large, large) <= waves(tiles_small, small) ? WeightAdamTile::Large : WeightAdamTile::Small;
}

void dense_weight_adam(const WeightAdam& adam, const float* dZ, DenseInput X, int B, int K, int N, cudaStream_t stream,
                       GemmPrecision prec, bool dz_rounded, bool x_rounded, WeightAdamTile tile) {
  check_sizes("dense_weight_adam", B, K, N);
  MNIST_CHECK(B > 0, "dense_weight_adam: no rows (the gradient of no rows is not a step)");
  MNIST_CHECK(dZ && X.present() && adam.p && adam.m && adam.v && adam.counters, "dense_weight_adam: null pointer");
  MNIST_CHECK(adam.p != adam.m && adam.p != adam.v && adam.m != adam.v &&
                  (!adam.g_out || (adam.g_out != adam.p && adam.g_out != adam.m && adam.g_out != adam.v)),
              "dense_weight_adam: p, m, v, g_out must be distinct");
  MNIST_CHECK(!adam.rounded.on() || (adam.rounded.q != adam.p && adam.rounded.q != adam.m && adam.rounded.q != adam.v &&
                                     adam.rounded.q != adam.g_out),
              "dense_weight_adam: the rounded copy must not alias p, m, v or g_out");
  const WeightAdamTile run = dense_weight_adam_tile(B, K, N, prec, X.images != nullptr, tile);
  MNIST_CHECK(run != WeightAdamTile::None, "dense_weight_adam: cannot run here (",
              !clusters_available() ? std::string("the device launches no thread block clusters")
              : prec != GemmPrecision::FP32 && (K % 4 != 0 || N % 4 != 0)
                  ? cat("K = ", K, " and N = ", N, " must be multiples of 4 at ", precision_name(prec))
                  : cat(dense_weight_slices(B, K, N), " pieces: no cluster of that many blocks fits"),
              ")");
  // [dW | db] as dense_weight_partials computes it: the same split, the same rounding promises.
  GemmParams w = weight_params(nullptr, adam.p, dZ, X, B, K, N);  // (db set: the ones column; nothing is stored)
  w.db = nullptr;
  w.split_k = weight_split_rows(B, K, N);
  MNIST_CHECK(prec == GemmPrecision::FP32 || pipelined_ok(w), "dense_weight_adam: dZ and X must be 16-byte aligned at ",
              precision_name(prec));
  if (prec != GemmPrecision::FP32)
    w.rounded = (dz_rounded ? kRoundedA : 0u) | (x_rounded && !X.images ? kRoundedB : 0u);
  WeightAdam a = adam;
  if (!a.rounded.on()) a.rounded = RoundedParams{};
  const bool large = run == WeightAdamTile::Large;
  switch (prec) {
    case GemmPrecision::FP32: launch_weight_adam_as<GemmPrecision::FP32>(large, w, a, stream); return;
    case GemmPrecision::TF32: launch_weight_adam_as<GemmPrecision::TF32>(large, w, a, stream); return;
    case GemmPrecision::BF16: launch_weight_adam_as<GemmPrecision::BF16>(large, w, a, stream); return;
  }
}

void dense_backward_data(float* dX, const float* dZ, const float* W, const float* mask, float mask_scale, int B,
                         int K, int N, cudaStream_t stream, GemmPrecision prec, bool w_rounded) {
  check_sizes("dense_backward_data", B, K, N);
  if (B == 0) return;
  MNIST_CHECK(dX && dZ && W, "dense_backward_data: null pointer");
  MNIST_CHECK(dX != dZ && dX != W, "dense_backward_data: dX must not alias its inputs");
  GemmParams d = data_params(dX, dZ, W, mask, mask_scale, B, K, N);
  promise_w_rounded(d, prec, w_rounded);
  run_tuned(double(B) * K * N, prec, false, WgmmaOp::None, false, stream,
            [&] {
              return Described{tune_key(mask ? "data+mask" : "data", B, K, N, prec, DenseInput(), nullptr, nullptr) +
                                   w_note(d),
                               {{dX, std::size_t(B) * K}}};
            },
            [&] { (void)launch_gemm<Kind::Data>(d, prec, stream); });
}

void dense_backward_fused(float* dW, float* db, float* dX, const float* dZ, DenseInput X, const float* W,
                          const float* mask, float mask_scale, int B, int K, int N, cudaStream_t stream,
                          GemmPrecision prec, float* workspace, unsigned* tickets, bool w_rounded) {
  check_sizes("dense_backward_fused", B, K, N);
  MNIST_CHECK(dW && (B == 0 || (dZ && X.present())) && (!dX || W), "dense_backward_fused: null pointer");
  MNIST_CHECK(!dX || (dX != dZ && dX != W && dX != dW), "dense_backward_fused: dX must not alias its inputs");
  GemmParams w = weight_params(dW, db, dZ, X, B, K, N);
  set_split(w, workspace, tickets, B, K, N);
  GemmParams d = data_params(dX, dZ, W, mask, mask_scale, B, K, N);
  if (dX) promise_w_rounded(d, prec, w_rounded);
  if (B == 0) return launch_weights_and_data(w, dX ? &d : nullptr, prec, stream);
  run_tuned(double(B) * K * N * (dX ? 2 : 1), prec, false, dX ? WgmmaOp::None : WgmmaOp::Weight, w.tickets != nullptr,
            stream,
            [&] {
              const char* op = dX ? (mask ? "backward (weight, data+mask)" : "backward (weight, data)")
                               : db ? "weight+db"
                                    : "weight";
              Described desc{tune_key(op, B, K, N, prec, X, workspace, tickets) + (dX ? w_note(d) : ""),
                             {{dW, std::size_t(N) * K}}};
              if (db) desc.outputs.push_back({db, std::size_t(N)});
              if (dX) desc.outputs.push_back({dX, std::size_t(B) * K});
              return desc;
            },
            [&] { launch_weights_and_data(w, dX ? &d : nullptr, prec, stream); });
}

}  // namespace mnist::cuda
