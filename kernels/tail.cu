#include "kernels/tail.cuh"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/clock.cuh"
#include "kernels/cluster.cuh"
#include "kernels/curand_draw.cuh"
#include "kernels/gemm_round.cuh"
#include "kernels/mma.cuh"
#include "kernels/pdl.cuh"
#include "kernels/philox.hpp"
#include "kernels/row_block.cuh"
#include "kernels/step_math.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kThreads = 256;
// Two blocks an SM (TailRows::Half): at most 128 registers a thread. ptxas gives the training
// kernels 95-113 under this bound, without spills (kernel_resources holds them), where the bound of
// one block an SM let it take 102-116 (the clocked and cut kernels lost up to 17). The bound applies
// to Wide's launches too: the same kernels. Shared memory: tail_half_rows_apply checks that a
// 32-row training plan fits twice in an SM (kSmPairBytes).
constexpr int kBlocksAnSm = 2;
// The dynamic shared memory a block may have for two to fit an SM of an H100/H200: 228 KB of shared
// memory an SM, less each block's 1 KB reserved and 3 KB for its static arrays (2.2 KB today).
constexpr int kSmPairBytes = 228 * 1024 / 2 - 1024 - 3 * 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxChunk = 64;                    // rows of a block on chip at once (a multiple of 32)
constexpr int kHalf = rowblock::kHalfRows;      // the metric slots' rows (16)
constexpr int kMaxHalvesPerBlock = 32;           // 512 rows a block at most (65536 rows, 128 blocks)
constexpr int kSmemBudget = 200 * 1024;          // dynamic shared memory a block may use (sm_90: 227 KB)
constexpr int kEvalRows = 32;                    // evaluation: one 32-row chunk a block
// Layer 0 inside the training launch (TailLayer0): 32-row chunks, X and W in slices of kL0Slice k's
// (rows l0_stride<PREC> floats apart: TF32 ≡ 4 mod 8, so that ldmatrix's 8 rows fall in distinct
// 16-byte bank groups; BF16 ≡ 8 mod 32, so that a half-warp's 8-byte pairs (lane 4g + t at row g,
// words 2t, 2t + 1) cover the 32 banks once, where ≡ 4 mod 32 hits each of 8 twice), X's slices
// double-buffered, W's in kL0Stages buffers (two slices in flight while one is multiplied), at most
// kL0TilesPerWarp 16x16 accumulator tiles a warp (w0 <= 256).
constexpr int kL0Chunk = 32;
constexpr int kL0Slice = 64;
constexpr int kL0Stride = kL0Slice + 8;  // (the plan's: the larger of the two)
template <GemmPrecision PREC>
constexpr int l0_stride() { return PREC == GemmPrecision::BF16 ? kL0Slice + 8 : kL0Slice + 4; }
constexpr int kL0Stages = 3;
// The launch's dynamic shared memory with layer 0 inside: an sm_90 block may have 227 KB with its
// static arrays (2.2 KB; 224 KB + 2,208 bytes = 231,584 of the 232,448 allowed). The model's plan
// is 179 KB at 32 rows a block, 213 KB with the running slice of blocks of several chunks (8192 rows
// and up).
constexpr int kL0SmemBudget = 224 * 1024;
constexpr int kL0TilesPerWarp = 4;
// Layer 0 shared across a thread block cluster (TailLayer0::cluster): the C <= kL0MaxCluster blocks
// of a cluster compute layer 0 for all their C chunks together, block (rank) q the units
// [q·Uq, (q+1)·Uq) of every one of the C·32 rows (Uq = l0_units(w0, C), whole 16-wide tiles), and
// store each row's values into the A0 region of the block that owns the row (distributed shared
// memory). Each block then streams 1/C of W0 and the X rows of all C chunks: per block and chunk,
// 401/C KB of W0 and C·25 KB of pixels for the model, 426 KB at C = 1, 200 KB at C = 4.
constexpr int kL0MaxCluster = 4;
constexpr int l0_units(int w0, int c) { return ((w0 + c - 1) / c + 15) / 16 * 16; }
static_assert(kMaxChunk <= kThreads, "one thread per row of a chunk (xent_row)");
static_assert(kMaxChunk % rowblock::kGroupRows == 0 && kTailGroupRows == rowblock::kGroupRows, "group layout");

// The row unit and the most blocks (slices) of a training launch (TailRows).
constexpr int unit_rows(TailRows r) { return r == TailRows::Half ? kHalf : kTailGroupRows; }
constexpr int max_slices(TailRows r) { return r == TailRows::Half ? 256 : 128; }

// A row stride (floats) for a width w: a multiple of 4 (float4 reads) with stride/4 odd, so that
// 8 consecutive rows start in 8 distinct 16-byte bank groups.
int padded_stride(int w) {
  int s = (w + 3) / 4 * 4;
  if ((s / 4) % 2 == 0) s += 4;
  return s;
}

// The shared-memory pool of one launch (offsets in floats, each a multiple of 4):
//   W_i rounded [w_i][ws_i]              i = 1..T     (ws_i = padded_stride(w_{i-1}))
//   b_i [w_i, padded to 4]               i = 1..T     (raw floats: the epilogues read them here,
//                                                      not from global memory, see tail_kernel)
//   acc: one slice [slice_floats]        (training with several chunks a block)
//   A_i rounded [chunk][as_i]            i = 0..T-1   (as_i = padded_stride(w_i); no ones column:
//                                                      db is summed apart)
//   logits [chunk][zs]                   zs = wT | 1: xent_row's thread-per-row reads hit distinct banks
//   dZ ping-pong [2][chunk][ds]          (training) ds = max padded_stride(w_i), i = 1..T
// Each region but acc is followed by kViewPad floats of its own: the tensor-core GEMMs (gemm_mma)
// read a 16-wide tile's columns past the view's last one (results dropped), which past the last
// row would otherwise reach the next region (another warp may be writing the dZ partner there) or
// past the pool's end (the last dZ buffer).
constexpr int kViewPad = 16;
//   (layer 0 inside: TailLayer0) X slices [2][C·chunk][kL0Stride], W slices [kL0Stages][Uq][kL0Stride]
//   (C: the blocks of a cluster sharing layer 0, 1 without; Uq = l0_units(w0, C): the units each
//   computes), from the end of A0's region on: the regions after it (A_1.., logits, dZ) are not in
//   use while layer 0 runs, so the slices alias them (the chunk's barriers part the two uses)
struct Plan {
  int off_w[kTailMaxLayers], ws[kTailMaxLayers];
  int off_b[kTailMaxLayers];
  int off_act[kTailMaxLayers], as[kTailMaxLayers];
  int off_acc, off_z, zs, off_dz0, off_dz1, ds;
  int off_l0x, off_l0w, l0_xrows, l0_wrows;  // -1, -1, 0, 0 without layer 0
  int total;
};

std::size_t slice_floats_of(const int* w, int T) {
  std::size_t n = 0;
  for (int i = 1; i <= T; ++i) n += std::size_t(w[i]) * std::size_t(w[i - 1] + 1);
  return (n + 3) / 4 * 4;
}

Plan make_plan(const int* w, int T, int chunk, bool backward, bool acc, bool layer0 = false, int l0_cluster = 1) {
  Plan p{};
  int o = 0;
  for (int i = 1; i <= T; ++i) {
    p.off_w[i - 1] = o;
    p.ws[i - 1] = padded_stride(w[i - 1]);
    o += w[i] * p.ws[i - 1] + kViewPad;
  }
  for (int i = 1; i <= T; ++i) {
    p.off_b[i - 1] = o;
    o += (w[i] + 3) / 4 * 4;
  }
  p.off_acc = -1;
  if (acc) {
    p.off_acc = o;
    o += int(slice_floats_of(w, T));
  }
  for (int i = 0; i < T; ++i) {
    p.off_act[i] = o;
    p.as[i] = padded_stride(w[i]);
    o += chunk * p.as[i] + kViewPad;
  }
  p.off_z = o;
  p.zs = w[T] | 1;
  o += (chunk * p.zs + 3) / 4 * 4 + kViewPad;
  p.ds = 0;
  p.off_dz0 = p.off_dz1 = o;
  if (backward) {
    for (int i = 1; i <= T; ++i) p.ds = std::max(p.ds, padded_stride(w[i]));
    o += chunk * p.ds + kViewPad;
    p.off_dz1 = o;
    if (T >= 2) o += chunk * p.ds + kViewPad;
  }
  p.off_l0x = p.off_l0w = -1;
  p.l0_xrows = p.l0_wrows = 0;
  if (layer0) {  // (the slices' views read no row or column past their regions: no pad)
    p.off_l0x = p.off_act[0] + chunk * p.as[0] + kViewPad;
    p.l0_xrows = l0_cluster * chunk;
    p.l0_wrows = l0_units(w[0], l0_cluster);
    p.off_l0w = p.off_l0x + 2 * p.l0_xrows * kL0Stride;
    o = std::max(o, p.off_l0w + kL0Stages * p.l0_wrows * kL0Stride);
  }
  p.total = o;
  return p;
}

std::size_t plan_bytes(const Plan& p) { return std::size_t(p.total) * sizeof(float); }

struct TailParams {
  float* partial;          // [blocks][slice_floats] (training)
  float* dz0;              // [B][w0] or null
  Metrics* metrics;        // null (training): the slots are the output (GroupMetrics)
  Metrics* slots;          // one per 16 rows (several blocks, or deferred): tail_xent_slots
  unsigned* done;          // completion counter (several blocks)
  const float* A0;         // [B][w0]
  LabelInput labels;       // the B rows' (kernels/labels.cuh)
  const float* W[kTailMaxLayers];
  const float* b[kTailMaxLayers];
  float* trace_act[kTailMaxLayers];
  float* trace_dz[kTailMaxLayers];
  int T;
  int w[kTailMaxLayers + 1];
  int slice_off[kTailMaxLayers];  // tail_layer_offset(i) at [i - 1]
  int slice_floats, slice_used;   // padded, unpadded
  Plan plan;
  uint32_t threshold;             // dropout (0: none)
  float drop_scale;               // 1/(1-p): the kept units' scale and the hidden layers' mask scale
  uint64_t seed, step;
  const TrainCounters* counters;
  unsigned long long* clocks;     // tail_force_clocks' stamps (the clocked kernel only)
  float mask_scale, grad_scale;
  int B, chunk;
  int unit, units;           // block j takes the unit-row pieces [j·U/n, (j+1)·U/n) of the U = units of B
  int halves;                // metric slots: 16-row halves of B
  // Layer 0 inside (TailLayer0; the L0 kernel only): X from x_images rows x_rows, W0 [w0][K0], b0.
  const uint8_t* x_images;
  RowIndex x_rows;
  const float* W0;
  const float* b0;
  float* trace_a0;
  int K0;
  int l0_cluster;                  // 1, or the blocks of a cluster that share layer 0 (2, 4)
  bool w0_rounded, x_vec, w0_vec;  // W0 rounded already; X rows and W0 rows 4- / 16-byte copyable
};

// Layer 0's rows for one chunk step of a cluster (l0_cluster blocks, 1 without): rank q's chunk
// starts at row c0[q] and has rows[q] rows (0 where block q has no chunk at this step).
struct L0Rows {
  int c0[kL0MaxCluster];
  int rows[kL0MaxCluster];
  int rank, count;
};
// a[i] of a small array held in registers: a select chain, where a[i] with i not known at compile
// time would put the array in local memory.
template <int N>
__device__ __forceinline__ int pick(const int (&a)[N], int i) {
  int v = a[0];
#pragma unroll
  for (int j = 1; j < N; ++j) v = i == j ? a[j] : v;
  return v;
}

// An epilogue that reads memory for its outputs (the masks: the staged A_{i-1} > 0; dz0's came
// from A0 in global memory until the twenty-first session) gives the GEMM a `fetch(r, c)`; the GEMM
// then reads every one of a thread's values before its first store, `store(r, c, v, fetched)`.
// Otherwise (`store(r, c, v)` only) each load would wait behind the previous output's store -- the
// compiler cannot tell that the store does not overwrite what the next load reads -- so a thread's
// 8 outputs would be 8 round trips in sequence, not one (profiling/sass.py's "serial global loads"
// counted them; NOTES "Epilogue loads in sequence").
template <class S, class = void>
struct HasFetch : std::false_type {};
template <class S>
struct HasFetch<S, std::void_t<decltype(std::declval<const S&>().fetch(0, 0))>> : std::true_type {};

// Stores a thread's NX x NY outputs v[x][y] at (r(x), c(y)) where ok(x, y): with a fetching epilogue
// its loads first, then the stores.
template <int NX, int NY, class Store, class Row, class Col, class Ok>
__device__ __forceinline__ void store_outputs(Store& store, const float (&v)[NX][NY], Row r, Col c, Ok ok) {
  if constexpr (HasFetch<Store>::value) {
    float f[NX][NY];
#pragma unroll
    for (int x = 0; x < NX; ++x)
#pragma unroll
      for (int y = 0; y < NY; ++y) f[x][y] = ok(x, y) ? store.fetch(r(x, y), c(x, y)) : 0.0f;
#pragma unroll
    for (int x = 0; x < NX; ++x)
#pragma unroll
      for (int y = 0; y < NY; ++y)
        if (ok(x, y)) store(r(x, y), c(x, y), v[x][y], f[x][y]);
  } else {
#pragma unroll
    for (int x = 0; x < NX; ++x)
#pragma unroll
      for (int y = 0; y < NY; ++y)
        if (ok(x, y)) store(r(x, y), c(x, y), v[x][y]);
  }
}

template <class T>
__device__ __forceinline__ float4 ld4(const T* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ float comp(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// ---- The three register-blocked GEMMs over shared memory (256 threads; every thread calls them).
// A warp owns a tile of 4 x 8 thread tiles; a thread's outputs are listed below. Rows or columns
// past the end are read at a clamped index (their results are dropped), so no operand read leaves
// its buffer; float4 reads need 16-byte aligned bases and strides that are multiples of 4.

// Forward: out(r, n) = Σ_k A[r·as + k]·W[n·ws + k], k ascending from 0 (one fmaf chain, dense_forward's
// order), r < I, n < J; store(r, n, v). A thread: rows r0 + 4a (a < 2), outputs n0 + 8c (c < 4),
// r0 = the warp tile's row + lane/8, n0 = its column + lane%8: a float4 of A is shared by the 8
// lanes of a row (broadcast), a float4 of W by the 4 lanes of a column; 4 rows / 8 rows at stride
// ≡ 4 (mod 8) floats: one wavefront each.
template <class Store>
__device__ __forceinline__ void gemm_forward(int I, int J, int K, const float* __restrict__ A, int as,
                                             const float* __restrict__ W, int ws, Store store) {
  constexpr int TI = 2, TJ = 4, WI = 4 * TI, WJ = 8 * TJ;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int tilesJ = (J + WJ - 1) / WJ, tiles = (I + WI - 1) / WI * tilesJ;
  for (int t = warp; t < tiles; t += kWarps) {
    const int r0 = t / tilesJ * WI + (lane >> 3), n0 = t % tilesJ * WJ + (lane & 7);
    const float* a[TI];
    const float* w[TJ];
#pragma unroll
    for (int x = 0; x < TI; ++x) a[x] = A + std::size_t(imin(r0 + 4 * x, I - 1)) * as;
#pragma unroll
    for (int y = 0; y < TJ; ++y) w[y] = W + std::size_t(imin(n0 + 8 * y, J - 1)) * ws;
    float acc[TI][TJ];
#pragma unroll
    for (int x = 0; x < TI; ++x)
#pragma unroll
      for (int y = 0; y < TJ; ++y) acc[x][y] = 0.0f;
    int k = 0;
    for (; k + 4 <= K; k += 4) {
      float4 av[TI], wv[TJ];
#pragma unroll
      for (int x = 0; x < TI; ++x) av[x] = ld4(a[x] + k);
#pragma unroll
      for (int y = 0; y < TJ; ++y) wv[y] = ld4(w[y] + k);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int x = 0; x < TI; ++x)
#pragma unroll
          for (int y = 0; y < TJ; ++y) acc[x][y] = fmaf(comp(av[x], kk), comp(wv[y], kk), acc[x][y]);
    }
    for (; k < K; ++k)
#pragma unroll
      for (int x = 0; x < TI; ++x)
#pragma unroll
        for (int y = 0; y < TJ; ++y) acc[x][y] = fmaf(a[x][k], w[y][k], acc[x][y]);
#pragma unroll
    for (int x = 0; x < TI; ++x)
#pragma unroll
      for (int y = 0; y < TJ; ++y)
        if (r0 + 4 * x < I && n0 + 8 * y < J) store(r0 + 4 * x, n0 + 8 * y, acc[x][y]);
  }
}

// Data: out(r, k) = Σ_n D[r·ds + n]·W[n·ws + k], n ascending from 0 (dense_backward_data's order),
// r < I, k < J; store(r, k, v). A thread: rows r0 + 4a (a < 2), columns k0..k0+3, k0 = the warp
// tile's column + 4·(lane%8): per 4 n, 2 float4 of D (broadcast along a row) and 4 float4 rows of W
// (8 lanes, 128 contiguous bytes: one wavefront).
template <class Store>
__device__ __forceinline__ void gemm_data(int I, int J, int N, const float* __restrict__ D, int ds,
                                          const float* __restrict__ W, int ws, Store store) {
  constexpr int TI = 2, WI = 4 * TI, WJ = 32;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int tilesJ = (J + WJ - 1) / WJ, tiles = (I + WI - 1) / WI * tilesJ;
  for (int t = warp; t < tiles; t += kWarps) {
    const int r0 = t / tilesJ * WI + (lane >> 3), k0 = t % tilesJ * WJ + 4 * (lane & 7);
    const float* d[TI];
#pragma unroll
    for (int x = 0; x < TI; ++x) d[x] = D + std::size_t(imin(r0 + 4 * x, I - 1)) * ds;
    const float* w = W + (k0 < J ? k0 : 0);
    float acc[TI][4];
#pragma unroll
    for (int x = 0; x < TI; ++x)
#pragma unroll
      for (int y = 0; y < 4; ++y) acc[x][y] = 0.0f;
    int n = 0;
    for (; n + 4 <= N; n += 4) {
      float4 dv[TI], wv[4];
#pragma unroll
      for (int x = 0; x < TI; ++x) dv[x] = ld4(d[x] + n);
#pragma unroll
      for (int u = 0; u < 4; ++u) wv[u] = ld4(w + std::size_t(n + u) * ws);
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int x = 0; x < TI; ++x)
#pragma unroll
          for (int y = 0; y < 4; ++y) acc[x][y] = fmaf(comp(dv[x], u), comp(wv[u], y), acc[x][y]);
    }
    for (; n < N; ++n) {
      const float4 wv = ld4(w + std::size_t(n) * ws);
#pragma unroll
      for (int x = 0; x < TI; ++x)
#pragma unroll
        for (int y = 0; y < 4; ++y) acc[x][y] = fmaf(d[x][n], comp(wv, y), acc[x][y]);
    }
    store_outputs(
        store, acc, [&](int x, int) { return r0 + 4 * x; }, [&](int, int y) { return k0 + y; },
        [&](int x, int y) { return r0 + 4 * x < I && k0 + y < J; });
  }
}

// Weight: out(n, c) = init(n, c) + Σ_r D[r·ds + n]·A[r·as + c], r = 0..R-1 ascending (one chain per
// element carried across chunks: dense_backward_weights' order over the block's rows), n < I,
// c < J; init(n, c) gives the chain's start, store(n, c, v) its end. A thread: n0..n0+3 x c0..c0+3,
// n0 = the warp tile's row + 4·(lane/8), c0 = its column + 4·(lane%8): per row r one float4 of D
// (4 distinct per warp) and one of A (8 distinct, 128 contiguous bytes): 16 FMAs per 2 loads.
template <class Init, class Store>
__device__ __forceinline__ void gemm_weight(int I, int J, int R, const float* __restrict__ D, int ds,
                                            const float* __restrict__ A, int as, Init init, Store store) {
  constexpr int WI = 16, WJ = 32;
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int tilesJ = (J + WJ - 1) / WJ, tiles = (I + WI - 1) / WI * tilesJ;
  for (int t = warp; t < tiles; t += kWarps) {
    const int n0 = t / tilesJ * WI + 4 * (lane >> 3), c0 = t % tilesJ * WJ + 4 * (lane & 7);
    const float* d = D + (n0 < I ? n0 : 0);
    const float* a = A + (c0 < J ? c0 : 0);
    float acc[4][4];
#pragma unroll
    for (int x = 0; x < 4; ++x)
#pragma unroll
      for (int y = 0; y < 4; ++y) acc[x][y] = n0 + x < I && c0 + y < J ? init(n0 + x, c0 + y) : 0.0f;
    for (int r = 0; r < R; ++r) {
      const float4 dv = ld4(d + std::size_t(r) * ds), av = ld4(a + std::size_t(r) * as);
#pragma unroll
      for (int x = 0; x < 4; ++x)
#pragma unroll
        for (int y = 0; y < 4; ++y) acc[x][y] = fmaf(comp(dv, x), comp(av, y), acc[x][y]);
    }
#pragma unroll
    for (int x = 0; x < 4; ++x)
#pragma unroll
      for (int y = 0; y < 4; ++y)
        if (n0 + x < I && c0 + y < J) store(n0 + x, c0 + y, acc[x][y]);
  }
}

// ---- The same three GEMMs on tensor cores (TF32: mma m16n8k8, BF16: m16n8k16; float32
// accumulation), one routine for all three: out(m, n) = init(m, n) + Σ_k A(m, k)·B(k, n), k ascending
// in steps of one mma (8 or 16 deep), m < M, n < N. Each operand is a view of a shared-memory tile
// in one of two layouts (x: m for A, n for B): KFast, element (x, k) at p[x·s + k] (the forward's A
// and W, the data GEMM's dZ), or XFast, at p[k·s + x] (the data GEMM's W, both operands of the weight
// GEMM). The operands are already rounded to PREC, so a TF32 fragment register is the float's bits
// (mma reads its 19 high bits) and a BF16 one packs the high halves of two floats: no cvt.
// A warp owns a 16 x 16 output tile (two n8 mmas share one A fragment) and walks the whole K; every
// lane of the warp calls every mma (warp-uniform loops). Its fragment rows and columns past M or N
// are read where the view continues (below; their results are dropped at the store); the K / KS
// full k-steps read without bounds checks, through per-lane pointers that step by KS (KFast) or
// KS·s (XFast); a last partial k-step reads the elements past K as 0 (their products are exact
// zeros), so the sums are those of the k < K terms in ascending steps.
// Fragment loads (kernels/mma.cuh's tables): TF32 KFast operands by ldmatrix.x4 (A: one per k-step;
// B: one per k-step for both n8 tiles), XFast ones as scalar LDS; BF16 KFast pairs (k, k+1) as one
// 8-byte load, XFast pairs as two scalars. (profiling/sass.py: the routine had been ≈ 95
// instructions per k-step of 2 mma, a bounds check and a 2-D index per element.)
// Banks (TF32): ldmatrix reads 8 rows x 16 bytes a phase, rows 4·odd words apart (padded_stride): 8
// distinct bank groups. A scalar XFast read, lane 4g+t at (k0 + t)·s + x0 + g with s ≡ 4 (mod 8),
// collides pairwise (2-way; s ≡ 8 mod 32 would suit it but not the row-major reads). BF16's
// KFast 8-byte pairs: 16 lanes a phase, conflict-free; XFast pairs 2-way.
struct KFast {  // element (x, k) at p[x·s + k]
  const float* p;
  int s;
  __device__ const float* at(int x, int k) const { return p + x * s + k; }
  __device__ int k_step(int ks) const { return ks; }
};
struct XFast {  // element (x, k) at p[k·s + x]
  const float* p;
  int s;
  __device__ const float* at(int x, int k) const { return p + k * s + x; }
  __device__ int k_step(int ks) const { return ks * s; }
};
template <class Op>
constexpr bool kIsKFast = std::is_same<Op, KFast>::value;
// Two BF16 values (already rounded: their low 16 bits are 0) packed as mma's .bf16x2 reads them.
// One PRMT: result bytes (lo.2, lo.3, hi.2, hi.3), i.e. (hi & 0xFFFF0000) | (lo >> 16).
__device__ __forceinline__ uint32_t pack_rounded_bf16(float lo, float hi) {
  return __byte_perm(float_bits(lo), float_bits(hi), 0x7632u);
}

// One operand's fragments of one warp tile: R registers per 16-row (A, R = 4) or 8-column (B, per
// n8 tile j, R = 2) block, register q at (x, k) = (x0 + xo, k0 + ko) with the PTX tables' offsets
// (kernels/mma.cuh). TF32: A xo = g + 8·(q&1), ko = t + 4·(q>>1); B xo = 8j + g, ko = t + 4q.
// BF16: the pair (k, k+1) with A xo = g + 8·(q&1), ko = 2t + 8·(q>>1); B xo = 8j + g, ko = 2t + 8q.
// The full k-steps read through NP per-lane pointers with the other offsets immediate: XFast one
// pointer per k row (TF32: t, t+4; BF16: 2t, 2t+1, 2t+8, 2t+9), x + 8 at +8 floats; KFast one per x
// row (g, g+8; TF32: one ldmatrix row address), k + 8 at +8 floats. They step by KS (KFast) or
// KS·s (XFast) floats. Rows or columns past M or N (up to 15) are read where the view continues,
// never past the pool and never where another warp writes in the same phase (make_plan): KFast rows
// past M lie in the chunk (a multiple of 32 rows) or, for W_T's rows past w_T, in the next region,
// which nothing writes during a forward; XFast columns past N lie in the next row of the same
// region or, after its last row, in that region's own kViewPad floats.
template <GemmPrecision PREC, bool IS_A, class Op>
struct Frags {
  static constexpr bool kBf16 = PREC == GemmPrecision::BF16;
  static constexpr int NB = IS_A ? 1 : 2;  // blocks per warp tile (A: one 16-row block; B: two n8 tiles)
  static constexpr int R = IS_A ? 4 : 2;   // registers per block
  static constexpr bool kK = kIsKFast<Op>;
  static constexpr bool kLdm = !kBf16 && kK;  // TF32 k-fast: ldmatrix
  static constexpr int NP = kLdm ? 1 : kK ? 2 : kBf16 ? 4 : 2;
  Op op;
  int K;
  int x0, g, t;
  const float* ptr[NP];

  __device__ void setup(int x0_, int lane) {
    x0 = x0_;
    g = lane >> 2;
    t = lane & 3;
    if constexpr (kLdm) {
      // ldmatrix.x4 row addresses (mma.cuh): A block b = rows x0 + 8·(b%2), columns 4·(b/2); B block
      // b = rows (columns of B) x0 + 8·(b/2), columns 4·(b%2). Lane l gives row l%8 of block l/8.
      const int b = lane >> 3, r = lane & 7;
      ptr[0] = op.at(x0 + r + (IS_A ? 8 * (b & 1) : 8 * (b >> 1)), IS_A ? 4 * (b >> 1) : 4 * (b & 1));
    } else if constexpr (kK) {
      // x rows g, g + 8 (A) or the two n8 tiles' column g (B): the same two x; k from 2t (BF16)
#pragma unroll
      for (int i = 0; i < 2; ++i) ptr[i] = op.at(x0 + g + 8 * i, 2 * t);
    } else {
#pragma unroll
      for (int i = 0; i < NP; ++i) ptr[i] = op.at(x0 + g, kBf16 ? 2 * t + (i & 1) + 8 * (i >> 1) : t + 4 * i);
    }
  }
  // The full k-step at k0 (k0 + KS <= K): no checks.
  __device__ void load(uint32_t (&f)[NB][R], int k0) const {
    const int step = op.k_step(k0);
    if constexpr (kLdm) {
      uint32_t r[4];
      ldmatrix_x4(r, ptr[0] + step);
#pragma unroll
      for (int i = 0; i < 4; ++i) f[IS_A ? 0 : i >> 1][IS_A ? i : i & 1] = r[i];
    } else if constexpr (kK) {  // BF16, pairs (k, k+1) as one 8-byte load
#pragma unroll
      for (int j = 0; j < NB; ++j)
#pragma unroll
        for (int q = 0; q < R; ++q) {
          const int i = IS_A ? (q & 1) : j, ko = IS_A ? 8 * (q >> 1) : 8 * q;
          const float2 v = *reinterpret_cast<const float2*>(ptr[i] + step + ko);
          f[j][q] = pack_rounded_bf16(v.x, v.y);
        }
    } else {
#pragma unroll
      for (int j = 0; j < NB; ++j)
#pragma unroll
        for (int q = 0; q < R; ++q) {
          const int xo = IS_A ? 8 * (q & 1) : 8 * j;
          if constexpr (kBf16) {
            const int i = 2 * (IS_A ? q >> 1 : q);  // rows 2t (+8), 2t + 1 (+8)
            f[j][q] = pack_rounded_bf16(ptr[i][step + xo], ptr[i + 1][step + xo]);
          } else {
            f[j][q] = float_bits(ptr[IS_A ? q >> 1 : q][step + xo]);
          }
        }
    }
  }
  // The last, partial k-step at k0: elements at k >= K read as 0.
  __device__ void load_tail(uint32_t (&f)[NB][R], int k0) const {
#pragma unroll
    for (int j = 0; j < NB; ++j)
#pragma unroll
      for (int q = 0; q < R; ++q) {
        const int x = x0 + (IS_A ? g + 8 * (q & 1) : 8 * j + g);
        const int k = k0 + (kBf16 ? (IS_A ? 2 * t + 8 * (q >> 1) : 2 * t + 8 * q) : (IS_A ? t + 4 * (q >> 1) : t + 4 * q));
        const float v0 = k < K ? *op.at(x, k) : 0.0f;
        if constexpr (!kBf16) {
          f[j][q] = float_bits(v0);
        } else {
          const float v1 = k + 1 < K ? *op.at(x, k + 1) : 0.0f;
          f[j][q] = pack_rounded_bf16(v0, v1);
        }
      }
  }
};

// One warp tile's k loop: d += A·B over k = 0 .. K-1 in ascending steps of one mma (8 or 16 deep;
// a last partial step reads k >= K as 0), the fragments read through fa and fb (set up at the tile).
// Every lane of the warp calls it.
template <GemmPrecision PREC, class OpA, class OpB>
__device__ __forceinline__ void warp_tile_mma(float (&d)[2][4], const Frags<PREC, true, OpA>& fa,
                                              const Frags<PREC, false, OpB>& fb, int K) {
  constexpr bool kBf16 = PREC == GemmPrecision::BF16;
  constexpr int KS = kBf16 ? 16 : 8;  // depth of one mma
  const int k_full = K / KS * KS;
  uint32_t a[1][4], b[2][2];
  const auto mma2 = [&] {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if constexpr (kBf16)
        mma_bf16_m16n8k16(d[j], a[0], b[j]);
      else
        mma_tf32_m16n8k8(d[j], a[0], b[j]);
    }
  };
#pragma unroll 2
  for (int k0 = 0; k0 < k_full; k0 += KS) {
    fa.load(a, k0);
    fb.load(b, k0);
    mma2();
  }
  if (k_full < K) {
    fa.load_tail(a, k_full);
    fb.load_tail(b, k_full);
    mma2();
  }
}

template <GemmPrecision PREC, class OpA, class OpB, class Init, class Store>
__device__ __forceinline__ void gemm_mma(int M, int N, int K, const OpA A, const OpB B, Init init, Store store) {
  static_assert(PREC != GemmPrecision::FP32, "FP32 keeps the SIMT chains");
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5, g = lane >> 2, t = lane & 3;
  const int tilesN = (N + 15) / 16, tiles = (M + 15) / 16 * tilesN;
  for (int tile = warp; tile < tiles; tile += kWarps) {
    const int m0 = tile / tilesN * 16, n0 = tile % tilesN * 16;
    float d[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int m = m0 + g + 8 * (q >> 1), n = n0 + 8 * j + 2 * t + (q & 1);
        d[j][q] = m < M && n < N ? init(m, n) : 0.0f;
      }
    Frags<PREC, true, OpA> fa{A, K};
    Frags<PREC, false, OpB> fb{B, K};
    fa.setup(m0, lane);
    fb.setup(n0, lane);
    warp_tile_mma(d, fa, fb, K);
    // d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1)
    const auto row = [&](int, int q) { return m0 + g + 8 * (q >> 1); };
    const auto col = [&](int j, int q) { return n0 + 8 * j + 2 * t + (q & 1); };
    store_outputs(store, d, row, col, [&](int j, int q) { return row(j, q) < M && col(j, q) < N; });
  }
}

// The three GEMMs at PREC: FP32 the SIMT chains above, TF32/BF16 gemm_mma on the same tiles.
template <GemmPrecision PREC, class Store>
__device__ __forceinline__ void tail_forward(int I, int J, int K, const float* A, int as, const float* W, int ws,
                                             Store store) {
  if constexpr (PREC == GemmPrecision::FP32)
    gemm_forward(I, J, K, A, as, W, ws, store);
  else
    gemm_mma<PREC>(I, J, K, KFast{A, as}, KFast{W, ws}, [](int, int) { return 0.0f; }, store);
}
template <GemmPrecision PREC, class Store>
__device__ __forceinline__ void tail_data(int I, int J, int N, const float* D, int ds, const float* W, int ws,
                                          Store store) {
  if constexpr (PREC == GemmPrecision::FP32)
    gemm_data(I, J, N, D, ds, W, ws, store);
  else
    gemm_mma<PREC>(I, J, N, KFast{D, ds}, XFast{W, ws}, [](int, int) { return 0.0f; }, store);
}
template <GemmPrecision PREC, class Init, class Store>
__device__ __forceinline__ void tail_weight(int I, int J, int R, const float* D, int ds, const float* A, int as,
                                            Init init, Store store) {
  if constexpr (PREC == GemmPrecision::FP32)
    gemm_weight(I, J, R, D, ds, A, as, init, store);
  else
    gemm_mma<PREC>(I, J, R, XFast{D, ds}, XFast{A, as}, init, store);
}

// Element e of the tail's biases b_1, ..., b_T laid end to end: tail layer `layer` + 1, unit n.
// False past the last.
__device__ __forceinline__ bool bias_item(const TailParams& p, int e, int& layer, int& n) {
  for (int i = 0; i < p.T; ++i) {
    if (e < p.w[i + 1]) {
      layer = i;
      n = e;
      return true;
    }
    e -= p.w[i + 1];
  }
  return false;
}

// The data GEMM's epilogue for every layer, so that one copy of the GEMM's code serves them all (as
// the forward's one call: code run once a launch, profiling/NOTES.md "The tail kernel timed from
// inside its blocks"). It fetches the mask (HasFetch) from the staged A_{i-1} in shared memory, all
// of a thread's before its first store, then:
//   - tail layer i >= 2: dZ_{i-1} to shared memory (out, row stride ds), masked by kept(A_{i-1}),
//     × drop_scale, traced, rounded;
//   - layer 1: dz0(r, k) = round(v · mask_scale) where A0(r, k) > 0, else 0, rounded to PREC as
//     layer 0's weight GEMM reads it (round_gemm_input), so that GEMM need not
//     (dense_weight_partials' dz_rounded). The mask is the staged A0's (staged_input keeps the raw
//     A0 > 0 through its rounding: staged_positive), so the chunk's end waits on no global load.
template <GemmPrecision PREC>
struct DzStore {
  float* dz0;          // layer 1: dz0 [B, K]; null for layers >= 2
  const float* ain;    // the staged A_{i-1}, row stride as
  float* out;          // (layers >= 2)
  float* trace;        // (layers >= 2)
  int as, ds, K, c0;
  float scale;         // layer 1: mask_scale; layers >= 2: drop_scale
  __device__ float fetch(int r, int k) const { return ain[r * as + k]; }
  __device__ void operator()(int r, int k, float v, float a) const {
    if (dz0) {
      dz0[std::size_t(c0 + r) * K + k] = staged_positive<PREC>(a) ? round_gemm_input<PREC>(v * scale) : 0.0f;
      return;
    }
    const float g = kept(a) ? v * scale : 0.0f;
    if (trace) trace[std::size_t(c0 + r) * K + k] = g;
    out[r * ds + k] = round_gemm_input<PREC>(g);
  }
};

// A hidden layer's dropout as a pass after its GEMM (the chunk's rows x N raw outputs in `out`, row
// stride os): dense_unit's (keep iff draw(seed, step, layer, row·N + n) >= threshold, kept units ×
// scale) with one Philox block for 4 consecutive elements, where the GEMM's thread layout would draw
// one block per element: the chunk's first element c0·N is a multiple of 4 (c0 is a multiple of 16).
// Each value is traced raw and stored as the kernel keeps it: STAGED (A0, layer 0 inside) as
// staged_input, else as stored_activation.
template <GemmPrecision PREC, bool STAGED>
__device__ __forceinline__ void dropout_pass(const TailParams& p, int layer, int c0, int rows, int N, float* out, int os,
                                             float scale, float* trace, uint64_t step) {
  const int n_el = rows * N;
  const uint64_t g0 = uint64_t(c0) * uint64_t(N) / 4;
  for (int g = int(threadIdx.x); 4 * g < n_el; g += kThreads) {
    const uint4 bits = philox_block(p.seed, rng::kDropout, uint32_t(layer), g0 + uint64_t(g), step);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int e = 4 * g + j;
      if (e >= n_el) break;
      const int r = e / N, n = e - r * N;
      const float z = out[r * os + n];
      const float a = block_word(bits, unsigned(j)) >= p.threshold ? z * scale : 0.0f;
      if (trace) trace[std::size_t(c0) * std::size_t(N) + std::size_t(e)] = a;
      out[r * os + n] = STAGED ? staged_input<PREC>(a) : stored_activation<PREC>(a);
    }
  }
}

// ---- Layer 0 inside the training launch (TailLayer0) ----
// The chunk's A0 [rows][w0] = dropout_0(ReLU(round(X)·round(W0)ᵀ + b0)) into the staged A0 region
// (pool + off_act[0], in staged_input form, as the plain launch stages a global A0; trace_a0 the raw
// values). K0 in S = ceil(K0 / kL0Slice) slices: at slice s every thread stores its X pixels of slice
// s (loaded into registers one slice ahead) into X buffer s % 2, waits for its W0 copies of slice s
// (issued two slices ahead, into W buffer s % 3) and rounds them (unless W0 is rounded already), a
// barrier, then issues slice s + 2's copies and slice s + 1's pixel loads and runs slice s's mma
// steps: two slices of W0 in flight while one is multiplied (the streaming of W0 from L2, 401 KB a
// block for the model, is what this phase waits for). The barrier also frees the buffers those
// fill: X buffer (s + 1) % 2 and W buffer (s + 2) % 3 were last read by slice s - 1's mma. Warp w owns
// the 16x16 tiles w, w + 8, ... of the R x Uq outputs, their accumulators in registers across the
// slices (k ascending from 0; the last slice's partial mma step reads k >= K0 as 0): one mma chain
// over all of K0. X rows past a chunk's rows are stored as 0 and their outputs dropped; W0's rows past
// the block's units (up to a multiple of 16) are never written, and the outputs they feed are dropped.
// In a cluster (at.count = C > 1 blocks, TailLayer0::cluster) the R = 32·C rows are the C blocks'
// chunks (rank q's at rows [32q, 32q + 32)) and this block computes the units [u0, u0 + Uq) of them
// all (u0 = rank·Uq), storing each value into the A0 region of the row's block: after a cluster
// barrier (the peers have started and are done with their previous chunk's A0), and a second one
// before the rows' owners read them (the dropout pass, then the tail). Each element is the same mma
// chain on the same operands as without a cluster, at the same place in its 16x16 tile (32 and Uq
// are multiples of 16), so A0 is bitwise the unclustered launch's. A block without a chunk at this
// step (rows = 0) still computes its units for its peers.
template <GemmPrecision PREC>
__device__ __forceinline__ void layer0_forward(const TailParams& p, float* pool, const L0Rows& at, uint64_t step) {
  static_assert(PREC != GemmPrecision::FP32, "layer 0 inside: tensor cores only");
  constexpr int kQuads = kL0Slice / 4;                                       // pixel quads of a row's slice
  constexpr int kXStep = kThreads / kQuads;                                  // rows between a thread's quads
  constexpr int kXItems = kL0MaxCluster * kL0Chunk * kQuads / kThreads;      // a thread's quads a slice, at most
  static_assert(kL0Chunk % kXStep == 0, "a chunk's rows are whole item steps");
  const Plan& pl = p.plan;
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int K = p.K0, N = p.w[0], S = (K + kL0Slice - 1) / kL0Slice;
  const int C = at.count, R = C * kL0Chunk, nx = R / kXStep;  // (nx <= kXItems)
  const int uq = pl.l0_wrows, u0 = at.rank * uq, U = N - u0 < uq ? (N - u0 > 0 ? N - u0 : 0) : uq;
  float* const sx = pool + pl.off_l0x;
  float* const sw = pool + pl.off_l0w;
  constexpr int XS = l0_stride<PREC>();  // (the buffers are kL0Stride apart, XS <= kL0Stride)
  const int xbuf = pl.l0_xrows * kL0Stride, wbuf = uq * kL0Stride;

  // This thread's X quads: rows tid / kQuads + kXStep·j (j < nx), pixels 4·(tid % kQuads) + 0..3;
  // row r is row r % 32 of rank r / 32's chunk.
  const int q4 = tid % kQuads;
  const uint8_t* xrow[kXItems];
  {
    const int64_t base = row_base(p.x_rows);
#pragma unroll
    for (int j = 0; j < kXItems; ++j) {
      const int r = tid / kQuads + kXStep * j, q = r / kL0Chunk, lr = r % kL0Chunk;
      xrow[j] = j < nx && lr < pick(at.rows, q) ? p.x_images + source_row(p.x_rows, base, pick(at.c0, q) + lr) * int64_t(K)
                                                 : nullptr;
    }
  }
  uint32_t xr[kXItems];
  const auto load_x = [&](int s) {
    const int k = s * kL0Slice + 4 * q4;
#pragma unroll
    for (int j = 0; j < kXItems; ++j) {
      uint32_t v = 0;
      if (xrow[j] && k < K) {
        if (p.x_vec) {  // (K % 4 == 0: the whole quad lies before K)
          v = *reinterpret_cast<const uint32_t*>(xrow[j] + k);
        } else {  // (a fixed trip count: a loop that stops at K was compiled in several versions)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (k + e < K) v |= uint32_t(xrow[j][k + e]) << (8 * e);
        }
      }
      xr[j] = v;
    }
  };
  const auto store_x = [&](int buf) {
#pragma unroll
    for (int j = 0; j < kXItems; ++j) {
      if (j >= nx) break;
      const int r = tid / kQuads + kXStep * j;
      const uint32_t v = xr[j];
      *reinterpret_cast<float4*>(sx + buf * xbuf + r * XS + 4 * q4) = make_float4(
          gemm_input_from_raw<PREC>(v & 0xFFu, true), gemm_input_from_raw<PREC>((v >> 8) & 0xFFu, true),
          gemm_input_from_raw<PREC>((v >> 16) & 0xFFu, true), gemm_input_from_raw<PREC>(v >> 24, true));
    }
  };
  // This thread's W0 items of slice s (rows u0 .. u0 + U - 1 of W0): 16-byte quads where w0_vec
  // (K0 % 4 == 0, W0 16-byte aligned), else single floats; f(d, src) for each.
  const auto for_w_items = [&](int s, int buf, auto&& f) {
    const int k0 = s * kL0Slice, len = K - k0 < kL0Slice ? K - k0 : kL0Slice;
    const int per_row = p.w0_vec ? len / 4 : len, w = p.w0_vec ? 4 : 1, n_items = U * per_row;
    float* const dst = sw + buf * wbuf;
    if (tid >= n_items) return;
    rowblock::RowCol rc(tid, kThreads, per_row);
    const float* const W0 = p.W0 + std::size_t(u0) * std::size_t(K);
#pragma unroll 1
    for (int i = tid; i < n_items; i += kThreads, rc.next())
      f(dst + rc.row * XS + w * rc.col, W0 + std::size_t(rc.row) * std::size_t(K) + std::size_t(k0 + w * rc.col));
  };
  const auto copy_w = [&](int s, int buf) {
    for_w_items(s, buf, [&](float* d, const float* src) {
      if (p.w0_vec)
        cp_async16(d, src);
      else
        cp_async4(d, src);
    });
    cp_async_commit();
  };
  const auto round_w = [&](int s, int buf) {
    if (p.w0_rounded) return;
    for_w_items(s, buf, [&](float* d, const float*) {
      if (p.w0_vec) {
        const float4 v = *reinterpret_cast<const float4*>(d);
        *reinterpret_cast<float4*>(d) = make_float4(round_gemm_input<PREC>(v.x), round_gemm_input<PREC>(v.y),
                                                    round_gemm_input<PREC>(v.z), round_gemm_input<PREC>(v.w));
      } else {
        *d = round_gemm_input<PREC>(*d);
      }
    });
  };

  const int NT = (U + 15) / 16, tiles = (R / 16) * NT;
  float d[kL0TilesPerWarp][2][4] = {};  // (every tile's accumulators, across the slices)

  static_assert(kL0Stages == 3, "the waits below count one group in flight behind slice s");
  copy_w(0, 0);
  if (S > 1) copy_w(1, 1);
  load_x(0);
#pragma unroll 1
  for (int s = 0, wbuf_s = 0; s < S; ++s, wbuf_s = wbuf_s == kL0Stages - 1 ? 0 : wbuf_s + 1) {
    const int xb = s & 1;
    store_x(xb);
    if (s + 1 < S)  // (slice s + 1's group may still fly; slice s's is the older one)
      cp_async_wait<1>();
    else
      cp_async_wait<0>();
    round_w(s, wbuf_s);
    __syncthreads();
    if (s + 2 < S) copy_w(s + 2, wbuf_s == 0 ? kL0Stages - 1 : wbuf_s - 1);  // ((s + 2) % 3 = (s - 1) % 3)
    if (s + 1 < S) load_x(s + 1);
    const int len = K - s * kL0Slice < kL0Slice ? K - s * kL0Slice : kL0Slice;
    const KFast xa{sx + xb * xbuf, XS}, wb{sw + wbuf_s * wbuf, XS};
#pragma unroll
    for (int i = 0; i < kL0TilesPerWarp; ++i) {
      const int tile = warp + kWarps * i;
      if (tile >= tiles) break;  // (warp-uniform)
      Frags<PREC, true, KFast> fa{xa, len};
      Frags<PREC, false, KFast> fb{wb, len};
      fa.setup(tile / NT * 16, lane);
      fb.setup(tile % NT * 16, lane);
      warp_tile_mma(d[i], fa, fb, len);
    }
  }

  // + b0, ReLU (dense_unit), then without dropout straight to the staged form; with it, raw for the
  // dropout pass. The biases are loaded before the first store (a load behind a store waits for it).
  float* const a0 = pool + pl.off_act[0];
  const int as = pl.as[0];
  const bool dropout = p.threshold != 0u;
  float bias[kL0TilesPerWarp][2][2];
#pragma unroll
  for (int i = 0; i < kL0TilesPerWarp; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int tile = warp + kWarps * i, n = tile % NT * 16 + 8 * j + 2 * t + e;
        bias[i][j][e] = tile < tiles && n < U ? p.b0[u0 + n] : 0.0f;
      }
  if (C > 1) cluster_sync();  // (every peer has started, and is done with its previous chunk's A0)
#pragma unroll
  for (int i = 0; i < kL0TilesPerWarp; ++i) {
    const int tile = warp + kWarps * i;
    if (tile >= tiles) break;
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int m = tile / NT * 16 + g + 8 * (q >> 1), n = tile % NT * 16 + 8 * j + 2 * t + (q & 1);
        const int owner = m / kL0Chunk, lm = m % kL0Chunk;  // (owner 0 without a cluster)
        if (lm >= pick(at.rows, owner) || n >= U) continue;
        const float z = dense_unit(d[i][j][q], bias[i][j][q & 1], true, 0u, 1.0f, 0, 0, 0, 0);
        if (!dropout && p.trace_a0)
          p.trace_a0[std::size_t(pick(at.c0, owner) + lm) * std::size_t(N) + std::size_t(u0 + n)] = z;
        const float v = dropout ? z : staged_input<PREC>(z);
        if (owner == at.rank)
          a0[lm * as + u0 + n] = v;
        else
          *cluster_peer(a0 + lm * as + u0 + n, unsigned(owner)) = v;
      }
  }
  const int c0 = pick(at.c0, at.rank), rows = pick(at.rows, at.rank);
  if (C > 1)
    cluster_sync();  // (the chunk's A0 complete, every peer's stores visible)
  else if (dropout)
    __syncthreads();
  if (dropout && rows > 0) dropout_pass<PREC, true>(p, 0, c0, rows, N, a0, as, p.mask_scale, p.trace_a0, step);
}

// One block: rows [u·(j·U/n), u·((j+1)·U/n)) ∩ [0, B) (j = the block's index, n = the grid's blocks, u
// = p.unit rows, U = p.units: tail_block_row), in chunks of p.chunk rows (the grid is n x 1, or 1 x n
// where layer 0's clusters are its blocks along y):
// stage A0 (rounded) -> the forward of every layer -> xent_row per row -> the chunk's 16-row half
// group sums -> (BACKWARD) per layer i = T..1: the slice of layer i (+= over the chunk's rows) and dZ_{i-1}
// (dz0 for i = 1). Then the group slots go out, and the last block to finish adds them in
// softmax_xent's order and resets the counter (one block: from shared memory, no scratch); without
// p.metrics the slots are the output and every block ends there (GroupMetrics, kernels/adam.cuh).
// Staging of the weights and biases and the first labels come before pdl_start (kernels/pdl.cuh).
// The kernel's body. STOP (Whole in tail_kernel; the others only in tail_phases_kernel, for
// tail_force_stop): the phase after which each chunk ends, and the launch with it. CLOCKED (only in
// tail_clock_kernel, for tail_force_clocks): thread 0 writes the block's stamps to p.clocks.
template <GemmPrecision PREC, bool BACKWARD, TailStop STOP, bool CLOCKED = false, bool L0 = false>
__device__ __forceinline__ void tail_body(const TailParams& p) {
  extern __shared__ float4 tail_smem[];
  // The chunk's rows' losses and hits, each 16-row half followed by one pad slot (row r at
  // r + r/16): the threads that sum the halves (one each) then read 8-byte words 17 apart, in
  // distinct banks, where 16 apart they all hit the same ones.
  constexpr int kHalfStride = kHalf + 1;
  __shared__ double s_loss[kMaxChunk / kHalf * kHalfStride];
  __shared__ unsigned s_hit[kMaxChunk / kHalf * kHalfStride];
  __shared__ Metrics s_groups[kMaxHalvesPerBlock];  // this block's half group sums
  __shared__ double s_sum[kMaxChunk / 8];
  __shared__ unsigned s_sumhit[kMaxChunk / 8];
  __shared__ bool s_last;
  float* pool = reinterpret_cast<float*>(tail_smem);
  const Plan& pl = p.plan;
  const int tid = int(threadIdx.x), T = p.T;
  // A stamp of tail_force_clocks: thread 0 (after a barrier: every thread has passed it).
  const int bid = int(blockIdx.x + blockIdx.y * gridDim.x), nb = int(gridDim.x * gridDim.y);
  unsigned long long* const clocks = CLOCKED ? p.clocks + std::size_t(bid) * kTailClockSlots : nullptr;
  const auto stamp = [&](int slot, bool ns = false) {
    if constexpr (CLOCKED)
      if (tid == 0) clocks[slot] = ns ? global_ns() : sm_clock();
  };
  stamp(kTailClockStartNs, true);
  stamp(kTailClockStart);
  // Layer 0 inside: the launch before may write every weight (the step's optimizer), so nothing is
  // read before the programmatic wait (the plain launch's early staging overlaps layer 0's forward).
  if constexpr (L0) pdl_start();
  const auto first_row = [&](int j) { return p.unit * (j * p.units / nb); };
  const auto end_row = [&](int j) { return first_row(j + 1) < p.B ? first_row(j + 1) : p.B; };
  const int row0 = first_row(bid), row_end = end_row(bid);
  const bool multi = nb > 1;
  const uint64_t step = p.threshold ? (p.counters ? uint64_t(p.counters->step) : p.step) : 0;
  float* s_z = pool + pl.off_z;
  float* const s_dz0 = pool + pl.off_dz0;  // dZ_T, dZ_{T-2}, ... (ping-pong by layer parity)
  float* const s_dz1 = pool + pl.off_dz1;  // dZ_{T-1}, dZ_{T-3}, ...
  float* slice = BACKWARD ? p.partial + std::size_t(bid) * p.slice_floats : nullptr;

  // The label of the row this thread takes in the softmax below: by index three dependent loads
  // (the counters' batch, the row's index, the byte: kernels/labels.cuh), each issued while a round
  // trip that the block waits for anyway is in flight, so that none of the three waits alone: the
  // batch before the weights' copies, the index while they fly (before pdl_start), the byte while
  // the chunk's A0 copies fly (first used in the softmax).
  const LabelInput& lab = p.labels;
  const bool takes_label = tid < row_end - row0 && tid < p.chunk;
  StagedRowIndex lrow(lab.rows);  // (the batch's load goes out here)
  int32_t lidx = 0;

  // Every layer's weights and biases in one round trip of asynchronous copies (rowblock::stage_async:
  // no registers held, a short loop of code), the label's index loaded while they fly; then each
  // thread rounds the weights it copied (the biases stay raw).
  for (int i = 1; i <= T; ++i)
    rowblock::stage_async<kThreads>(pool + pl.off_w[i - 1], pl.ws[i - 1], p.W[i - 1], p.w[i], p.w[i - 1]);
  {
    int bl, bn;
    for (int e = tid; bias_item(p, e, bl, bn); e += kThreads) cp_async4(pool + pl.off_b[bl] + bn, p.b[bl] + bn);
  }
  cp_async_commit();
  lrow.settle();
  if (takes_label) lidx = lrow.index(row0 + tid);
  uint8_t label = 0;  // (read while each chunk's A0 copies fly: its index is out by then)
  if constexpr (BACKWARD)
    for (int e = p.slice_used + tid; e < p.slice_floats; e += kThreads) slice[e] = 0.0f;  // the slice's padding
  cp_async_wait<0>();
  for (int i = 1; i <= T; ++i)
    rowblock::round_staged<PREC, kThreads>(pool + pl.off_w[i - 1], pl.ws[i - 1], p.W[i - 1], p.w[i], p.w[i - 1]);

  // Everything above reads only what launches before the previous one wrote (the weights, biases,
  // counters, order and labels: the optimizer two launches back) and writes only this block's slice
  // padding, which the previous launch (layer 0's forward) does not touch: with a programmatic launch
  // it overlaps that launch (kernels/pdl.cuh). A0 is its output.
  stamp(kTailClockWeights);
  if constexpr (!L0) pdl_start();

  // Layer 0 in clusters (L0, p.l0_cluster > 1): the cluster's blocks step through their chunks
  // together, as many steps as the longest of them has chunks; a block past its own last chunk still
  // computes its share of layer 0 for the others (layer0_forward).
  L0Rows at{};
  int steps = (row_end - row0 + p.chunk - 1) / p.chunk;
  if constexpr (L0) {
    at.count = p.l0_cluster;
    at.rank = bid % at.count;
    for (int q = 0; q < at.count; ++q) {
      const int j = bid - at.rank + q, n = (end_row(j) - first_row(j) + p.chunk - 1) / p.chunk;
      steps = n > steps ? n : steps;
    }
  }
  for (int c0 = row0; c0 < row0 + steps * p.chunk; c0 += p.chunk) {
    const int rows = row_end - c0 < p.chunk ? row_end - c0 : p.chunk;
    if constexpr (L0) {
#pragma unroll
      for (int q = 0; q < kL0MaxCluster; ++q) {  // (unrolled: at stays in registers)
        const int j = bid - at.rank + q, r0 = first_row(j) + (c0 - row0), n = end_row(j) - r0;
        at.c0[q] = r0;
        at.rows[q] = q >= at.count || n < 0 ? 0 : n < p.chunk ? n : p.chunk;
      }
    }
    // (a later chunk's label: the index before A0's staging round; every chunk's byte after it)
    if (c0 != row0 && tid < rows) lidx = lrow.index(c0 + tid);
    const bool first = c0 == row0, last = c0 + p.chunk >= row_end;
    const int chunk_no = (c0 - row0) / p.chunk;  // (tail_force_clocks' slots)
    const auto phase_stamp = [&](int phase) {
      if (chunk_no < kTailClockChunks) stamp(tail_clock_slot(chunk_no, phase));
    };
    if constexpr (L0) {
      label = tid < rows ? lab.labels[lrow.source(c0 + tid, lidx)] : uint8_t(0);
      layer0_forward<PREC>(p, pool, at, step);  // (one call site: the routine's code once)
      if (rows <= 0) continue;  // (a step past this block's rows: its share of its peers' layer 0 only)
    } else {
      const float* a0 = p.A0 + std::size_t(c0) * p.w[0];
      rowblock::stage_async<kThreads>(pool + pl.off_act[0], pl.as[0], a0, rows, p.w[0]);
      cp_async_commit();
      label = tid < rows ? lab.labels[lrow.source(c0 + tid, lidx)] : uint8_t(0);
      cp_async_wait<0>();
      rowblock::round_staged<PREC, kThreads, true>(pool + pl.off_act[0], pl.as[0], a0, rows, p.w[0]);  // (the mask kept)
    }
    __syncthreads();  // (the first chunk: also the weights and biases)
    phase_stamp(kTailPhaseStaged);

    // Forward, layer by layer (none when STOP is Staged: tail_force_stop, timing only).
    for (int i = 1; STOP != TailStop::Staged && i <= T; ++i) {
      const int K = p.w[i - 1], N = p.w[i];
      const float* bias = pool + pl.off_b[i - 1];  // (staged: a global load here would wait behind
      float* trace = p.trace_act[i - 1];            // the previous output's trace store)
      const float* Ain = pool + pl.off_act[i - 1];
      const float* Wi = pool + pl.off_w[i - 1];
      // One GEMM call for every layer, its epilogue told apart by `hidden` (+ bias, ReLU, rounded
      // into the next A; the last layer + bias into the logits): one copy of the routine's code,
      // which the last layer runs again where two call sites made two copies (profiling/NOTES.md,
      // "The tail kernel timed from inside its blocks": code run once a launch).
      const bool hidden = i < T;
      float* out = hidden ? pool + pl.off_act[i] : s_z;
      const int os = hidden ? pl.as[i] : pl.zs;
      const bool dropout = hidden && BACKWARD && p.threshold;
      tail_forward<PREC>(rows, N, K, Ain, pl.as[i - 1], Wi, pl.ws[i - 1], [&](int r, int n, float v) {
        const float z = dense_unit(v, bias[n], hidden, 0u, 1.0f, 0, 0, 0, 0);  // + bias (ReLU if hidden)
        if (dropout) {
          out[r * os + n] = z;  // raw: the dropout pass below scales and rounds it
          return;
        }
        if (trace) trace[std::size_t(c0 + r) * std::size_t(N) + std::size_t(n)] = z;
        out[r * os + n] = hidden ? stored_activation<PREC>(z) : z;
      });
      if (dropout) {  // (dense_unit's dropout, one Philox block for 4 consecutive elements)
        __syncthreads();
        dropout_pass<PREC, false>(p, i, c0, rows, N, out, os, p.drop_scale, trace, step);
      }
      __syncthreads();
      phase_stamp(kTailPhaseForward + i - 1);
    }
    if (STOP == TailStop::Staged || STOP == TailStop::Forward) continue;

    // Softmax + cross-entropy: thread r takes row c0 + r (rows past the chunk's end count as +0).
    // Training: xent_row's parts spread over the block (the same arithmetic, so the same bits): every
    // (row, class) item's e_j into dZ_T's row, a barrier, each row's ordered sums, loss and hit by its
    // thread, a barrier, every item's gradient, rounded, over its e_j. One thread a row ran two
    // exp_shifted and a division per class in sequence (C = 10: about 600 dependent instructions in
    // warp 0 while the 7 others waited at the barrier). Evaluation keeps xent_row (no gradient).
    const int C = p.w[T];
    __shared__ XentRowScratch<kMaxChunk> s_x;  // (training: the rows' sums between the steps)
    if constexpr (BACKWARD) {
      xent_exp_items(s_z, pl.zs, s_dz0, pl.ds, rows, C, tid, kThreads);
      __syncthreads();
    }
    if (tid < p.chunk) {
      double loss = 0;
      unsigned hit = 0;
      if (tid < rows) {
        const float* z = s_z + tid * pl.zs;
        const XentRow x = BACKWARD ? xent_row_sums(z, s_dz0 + tid * pl.ds, C, label, tid, s_x)
                                   : xent_row(z, C, label, p.grad_scale, nullptr, nullptr);
        loss = x.loss;
        hit = x.hit ? 1u : 0u;
      }
      s_loss[tid + tid / kHalf] = loss;
      s_hit[tid + tid / kHalf] = hit;
    }
    if constexpr (BACKWARD) {
      __syncthreads();
      float* const trace = p.trace_dz[T - 1];
      xent_grad_items(s_dz0, pl.ds, rows, C, s_x, p.grad_scale, tid, kThreads, [&](int r, int j, float g) {
        if (trace) trace[std::size_t(c0 + r) * C + j] = g;
        s_dz0[r * pl.ds + j] = round_gemm_input<PREC>(g);
      });
    }
    __syncthreads();
    phase_stamp(kTailPhaseSoftmax);
    // The chunk's 16-row halves (s_loss is next written after the next chunk's first barrier): a
    // block of 16 rows holds half a group (TailRows::Half); the adder forms each group's sums from its
    // two halves, as the 32-row tree's last step (rowblock::add_group_sums<.., true>).
    if (tid < p.chunk / kHalf && tid * kHalf < rows) {
      const Metrics m = rowblock::group_sum<kHalf>(s_loss + tid * kHalfStride, s_hit + tid * kHalfStride);
      const int g = (c0 - row0) / kHalf + tid;  // the block's half index
      s_groups[g] = m;
      if (multi || !p.metrics) p.slots[c0 / kHalf + tid] = m;
    }
    if (STOP == TailStop::Softmax) continue;

    if constexpr (BACKWARD) {
      float* acc = pl.off_acc >= 0 ? pool + pl.off_acc : nullptr;  // several chunks: the running slice
      for (int i = T; i >= 1; --i) {
        const int K = p.w[i - 1], N = p.w[i], KA = K + 1;
        const float* D = (T - i) & 1 ? s_dz1 : s_dz0;
        const float* Ain = pool + pl.off_act[i - 1];
        const int as = pl.as[i - 1];
        float* gsl = slice + p.slice_off[i - 1];                     // global slice of layer i
        float* ssl = acc ? acc + p.slice_off[i - 1] : nullptr;       // shared running slice
        const auto init = [&](int n, int c) { return first ? 0.0f : ssl[n * KA + c]; };
        const auto store = [&](int n, int c, float v) {
          if (last)
            gsl[std::size_t(n) * KA + c] = v;
          else
            ssl[n * KA + c] = v;
        };
        // The slice: dW_i (n, c < K) ...
        tail_weight<PREC>(N, K, rows, D, pl.ds, Ain, as, init, store);
        // ... and db_i (column K): the sum of the rounded dZ, the ones column's chain.
        for (int n = tid; n < N; n += kThreads) {
          float s = init(n, K);
          for (int r = 0; r < rows; ++r) s += D[r * pl.ds + n];
          store(n, K, s);
        }
        // dZ_{i-1}: (dZ_i · W_i) masked by A_{i-1} > 0.
        const float* Wi = pool + pl.off_w[i - 1];
        if (i >= 2 || p.dz0) {
          const DzStore<PREC> st{i == 1 ? p.dz0 : nullptr, Ain, (T - i) & 1 ? s_dz0 : s_dz1,
                                 i >= 2 ? p.trace_dz[i - 2] : nullptr, as, pl.ds, K, c0,
                                 i == 1 ? p.mask_scale : p.drop_scale};
          tail_data<PREC>(rows, K, N, D, pl.ds, Wi, pl.ws[i - 1], st);
        }
        __syncthreads();
        phase_stamp(kTailPhaseBackward + T - i);
      }
    }
  }

  stamp(kTailClockEnd);
  stamp(kTailClockEndNs, true);
  if (!p.metrics || STOP != TailStop::Whole) return;  // the slots are the launch's output (a later launch adds them)
  __syncthreads();  // s_groups complete
  if (!multi) {  // the only block: its group sums are the launch's
    rowblock::add_group_sums<kMaxChunk, true>(p.metrics, s_groups, p.halves, s_loss, s_hit, s_sum, s_sumhit);
    return;
  }
  __threadfence();  // each thread's slice and slots before the block's count
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(p.done, 1u) == unsigned(nb - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // the last block: every other block's slots are out
  rowblock::add_group_sums<kMaxChunk, true>(p.metrics, p.slots, p.halves, s_loss, s_hit, s_sum, s_sumhit);
  if (tid == 0) *p.done = 0;  // ready for the next launch (graph replays included)
}

template <GemmPrecision PREC, bool BACKWARD>
__global__ void __launch_bounds__(kThreads, kBlocksAnSm) tail_kernel(const TailParams p) {
  tail_body<PREC, BACKWARD, TailStop::Whole>(p);
}

// A training launch that computes layer 0 itself (TailLayer0; TF32/BF16): one block an SM (its plan
// with the slices does not fit twice), so the register bound of two is not asked for.
template <GemmPrecision PREC, bool BACKWARD>
__global__ void __launch_bounds__(kThreads, 1) tail_l0_kernel(const TailParams p) {
  tail_body<PREC, BACKWARD, TailStop::Whole, false, true>(p);
}

// A training launch cut after the phase STOP (tail_force_stop; bench_kernels only).
template <GemmPrecision PREC, TailStop STOP>
__global__ void __launch_bounds__(kThreads, kBlocksAnSm) tail_phases_kernel(const TailParams p) {
  tail_body<PREC, true, STOP>(p);
}

// A training launch that also writes its clock stamps (tail_force_clocks; bench_kernels only).
template <GemmPrecision PREC>
__global__ void __launch_bounds__(kThreads, kBlocksAnSm) tail_clock_kernel(const TailParams p) {
  tail_body<PREC, true, TailStop::Whole, true>(p);
}

// Lets the kernel use the whole budget of dynamic shared memory (above the default 48 KB); kept in
// a static of the launcher instantiation, so it runs once per kernel.
template <class F>
bool allow_smem(F* kernel, int bytes = kSmemBudget) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  return true;
}

TailStop g_stop = TailStop::Whole;  // tail_force_stop
unsigned long long* g_clocks = nullptr;  // tail_force_clocks

template <GemmPrecision PREC, TailStop STOP>
void launch_phases(const TailParams& p, int blocks, std::size_t smem, cudaStream_t stream) {
  static const bool allowed = allow_smem(tail_phases_kernel<PREC, STOP>);
  (void)allowed;
  launch_kernel(tail_phases_kernel<PREC, STOP>, dim3(unsigned(blocks)), dim3(kThreads), smem, stream, p);
}

template <GemmPrecision PREC, bool BACKWARD>
void launch(const TailParams& p, int blocks, std::size_t smem, cudaStream_t stream) {
  if constexpr (BACKWARD && PREC != GemmPrecision::BF16) {  // (the cut and clocked kernels: fp32 and tf32 only)
    if (g_clocks) {
      static const bool clock_allowed = allow_smem(tail_clock_kernel<PREC>);
      (void)clock_allowed;
      TailParams q = p;
      q.clocks = g_clocks;
      return launch_kernel(tail_clock_kernel<PREC>, dim3(unsigned(blocks)), dim3(kThreads), smem, stream, q);
    }
    switch (g_stop) {
      case TailStop::Whole: break;
      case TailStop::Staged: return launch_phases<PREC, TailStop::Staged>(p, blocks, smem, stream);
      case TailStop::Forward: return launch_phases<PREC, TailStop::Forward>(p, blocks, smem, stream);
      case TailStop::Softmax: return launch_phases<PREC, TailStop::Softmax>(p, blocks, smem, stream);
    }
  }
  static const bool allowed = allow_smem(tail_kernel<PREC, BACKWARD>);
  (void)allowed;
  launch_kernel(tail_kernel<PREC, BACKWARD>, dim3(unsigned(blocks)), dim3(kThreads), smem, stream, p);
}

// How many clusters of c blocks of the layer-0 kernel (smem bytes each) the device holds at once
// (cluster_capacity), asked once per device, size and smem (the engine asks before it captures any
// graph: tail_layer0_cluster). An answer of 0 (none fits, or the query failed) is not kept: asked
// again next time, so that a passing error does not turn the clusters off for the process.
template <GemmPrecision PREC, bool BACKWARD>
int l0_cluster_capacity(int c, std::size_t smem) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, std::size_t, int>, int> known;
  int device = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));  // (the emulation varies it)
  const auto key = std::make_tuple(device, c, smem, sms);
  const std::lock_guard<std::mutex> lock(mutex);
  const auto it = known.find(key);
  if (it != known.end()) return it->second;
  static const bool allowed = allow_smem(tail_l0_kernel<PREC, BACKWARD>, kL0SmemBudget);
  (void)allowed;
  const int n = cluster_capacity(tail_l0_kernel<PREC, BACKWARD>, unsigned(kThreads), unsigned(c), smem);
  if (n > 0) known.emplace(key, n);
  return n;
}

// The cluster size of a layer-0 launch of `blocks` blocks that asks for clusters of up to `want`
// (TailLayer0::cluster): the largest of 4 and 2 that is at most `want`, divides `blocks` in training
// (its slices are one a block: no block may be empty; an evaluation pads its grid with empty blocks
// instead; either way at least c blocks), whose units leave no block without any (w0 > Uq·(C - 1)),
// whose plan fits kL0SmemBudget, and of which the device holds enough at once for min(blocks, 128)
// blocks: 128 is the most a launch of 32-row blocks has, about one an SM, so that the clusters cost
// no wave (16-row blocks, up to 256, and an evaluation's grid run in waves either way); else 1.
// plan_of(c): the launch's plan at that size.
template <GemmPrecision PREC, bool BACKWARD, class PlanOf>
int l0_cluster_size(int blocks, int want, int w0, PlanOf&& plan_of) {
  for (int c = kL0MaxCluster; c >= 2; c /= 2) {
    if (c > want || blocks < c || (BACKWARD && blocks % c != 0) || w0 <= l0_units(w0, c) * (c - 1)) continue;
    // (the accumulator tiles, (C·32/16) x (Uq/16), at most kL0TilesPerWarp a warp: C·Uq <= 256, true
    // for every w0 <= 256 that tail_layer0_unsupported allows; checked, since a tile past it would be
    // left out silently)
    if (2 * c * (l0_units(w0, c) / 16) > kL0TilesPerWarp * kWarps) continue;
    const std::size_t bytes = plan_bytes(plan_of(c));
    if (bytes > std::size_t(kL0SmemBudget)) continue;  // (a narrow w0: C chunks of X outweigh the W0 saved)
    const int padded = (blocks + c - 1) / c * c;
    if (l0_cluster_capacity<PREC, BACKWARD>(c, bytes) * c >= std::min(padded, 128)) return c;
  }
  return 1;
}

template <GemmPrecision PREC, bool BACKWARD>
void launch_l0(const TailParams& p, int blocks, std::size_t smem, cudaStream_t stream) {
  static const bool allowed = allow_smem(tail_l0_kernel<PREC, BACKWARD>, kL0SmemBudget);
  (void)allowed;
  if (p.l0_cluster > 1) {  // (the grid along y: clusters of consecutive blocks, padded to whole clusters)
    const unsigned c = unsigned(p.l0_cluster), n = (unsigned(blocks) + c - 1) / c * c;
    MNIST_CHECK(n <= 65535u, "tail kernel: ", n, " blocks in clusters exceed the grid's y limit");
    launch_kernel_in_clusters(tail_l0_kernel<PREC, BACKWARD>, dim3(1u, n), dim3(kThreads), c, smem, stream, p);
    return;
  }
  launch_kernel(tail_l0_kernel<PREC, BACKWARD>, dim3(unsigned(blocks)), dim3(kThreads), smem, stream, p);
}

// A layer-0 launch's blocks (before a cluster's padding), cluster size and plan: training in
// 32-row chunks (with the running slice where a block takes more), evaluation one chunk a block.
struct L0Launch {
  int blocks, cluster;
  Plan plan;
};
L0Launch l0_launch(const int* w, int T, int B, bool backward, TailRows rows, int want, GemmPrecision prec) {
  const int blocks = backward ? tail_blocks(B, rows) : (B + kEvalRows - 1) / kEvalRows;
  const bool acc = backward && tail_rows_per_block(B, rows) > kL0Chunk;
  const auto plan_of = [&](int c) { return make_plan(w, T, kL0Chunk, backward, acc, true, c); };
  int c = 1;
  if (want > 1 && B > 0) {
    if (prec == GemmPrecision::TF32)
      c = backward ? l0_cluster_size<GemmPrecision::TF32, true>(blocks, want, w[0], plan_of)
                   : l0_cluster_size<GemmPrecision::TF32, false>(blocks, want, w[0], plan_of);
    else if (prec == GemmPrecision::BF16)
      c = backward ? l0_cluster_size<GemmPrecision::BF16, true>(blocks, want, w[0], plan_of)
                   : l0_cluster_size<GemmPrecision::BF16, false>(blocks, want, w[0], plan_of);
  }
  return {blocks, c, plan_of(c)};
}

template <GemmPrecision PREC>
void prepare_prec() {
  allow_smem(tail_kernel<PREC, true>);
  allow_smem(tail_kernel<PREC, false>);
  if constexpr (PREC != GemmPrecision::FP32) {
    allow_smem(tail_l0_kernel<PREC, true>, kL0SmemBudget);
    allow_smem(tail_l0_kernel<PREC, false>, kL0SmemBudget);
  }
}

std::vector<int> widths_of(const TailNet& net) {
  const int T = std::clamp(net.layers, 0, kTailMaxLayers);
  return std::vector<int>(net.width, net.width + T + 1);
}

// The chunk of a training launch with R rows a block, and whether it needs the running slice:
// 64 rows when the plan fits, else 32.
struct ChunkChoice {
  int chunk;
  bool acc;
};
ChunkChoice train_chunk(const int* w, int T, int R) {
  for (int c = kMaxChunk; c >= kTailGroupRows; c /= 2) {
    if (c > R) continue;
    const bool acc = R > c;
    if (plan_bytes(make_plan(w, T, c, true, acc)) <= std::size_t(kSmemBudget) || c == kTailGroupRows) return {c, acc};
  }
  return {kTailGroupRows, R > kTailGroupRows};
}

void run(TailParams& p, const TailNet& net, bool backward, const XentScratch& xent, cudaStream_t stream,
         GemmPrecision prec, const TailTrace* trace, const char* who, TailRows rows = TailRows::Wide,
         const TailLayer0* l0 = nullptr) {
  const std::vector<int> widths = widths_of(net);
  const std::string why = tail_unsupported(widths);
  MNIST_CHECK(net.layers >= 1 && net.layers <= kTailMaxLayers && why.empty(), who, ": ",
              why.empty() ? std::string("bad layer count") : why);
  MNIST_CHECK(p.B >= 0 && p.B <= kTailMaxRows, who, ": ", p.B, " rows (at most ", kTailMaxRows, ")");
  if (l0) {
    const std::string why0 = tail_layer0_unsupported(widths, l0->K, prec);
    MNIST_CHECK(why0.empty(), who, ": ", why0);
    MNIST_CHECK(p.B == 0 || (l0->images && l0->W && l0->b), who, ": null layer-0 images, weights or bias");
    p.x_images = l0->images;
    p.x_rows = l0->rows;
    p.W0 = l0->W;
    p.b0 = l0->b;
    p.K0 = l0->K;
    p.w0_rounded = l0->w_rounded;
    p.x_vec = l0->K % 4 == 0 && reinterpret_cast<uintptr_t>(l0->images) % 4 == 0;
    p.w0_vec = l0->K % 4 == 0 && reinterpret_cast<uintptr_t>(l0->W) % 16 == 0;
    p.trace_a0 = trace ? trace->a0 : nullptr;
    MNIST_CHECK(l0->cluster >= 1, who, ": layer 0's cluster size must be at least 1, got ", l0->cluster);
  }
  if (p.B == 0) return;
  MNIST_CHECK((p.metrics || backward) && (p.A0 || l0) && p.labels.present(), who, ": null pointer");
  const int T = net.layers;
  p.T = T;
  for (int i = 0; i <= T; ++i) p.w[i] = net.width[i];
  for (int i = 0; i < T; ++i) {
    MNIST_CHECK(net.layer[i].W && net.layer[i].b, who, ": null weights or bias of tail layer ", i + 1);
    p.W[i] = net.layer[i].W;
    p.b[i] = net.layer[i].b;
    p.slice_off[i] = int(tail_layer_offset(widths, i + 1));
    p.trace_act[i] = trace ? trace->act[i] : nullptr;
    p.trace_dz[i] = trace && backward ? trace->dz[i] : nullptr;
  }
  p.slice_floats = int(tail_slice_floats(widths));
  p.slice_used = int(tail_layer_offset(widths, T + 1));
  int blocks;
  p.l0_cluster = 1;
  if (l0) {  // (32-row chunks: kL0Chunk; the evaluation's, kEvalRows, is the same)
    static_assert(kEvalRows == kL0Chunk, "an evaluation chunk is layer 0's chunk");
    const L0Launch ll = l0_launch(p.w, T, p.B, backward, rows, l0->cluster, prec);
    blocks = ll.blocks;
    p.l0_cluster = ll.cluster;
    p.chunk = kL0Chunk;
    p.plan = ll.plan;
    p.unit = backward ? unit_rows(rows) : kEvalRows;
  } else if (backward) {
    blocks = tail_blocks(p.B, rows);
    const ChunkChoice cc = train_chunk(p.w, T, tail_rows_per_block(p.B, rows));
    p.chunk = cc.chunk;
    p.plan = make_plan(p.w, T, cc.chunk, true, cc.acc);
    p.unit = unit_rows(rows);
  } else {
    p.chunk = kEvalRows;
    blocks = (p.B + kEvalRows - 1) / kEvalRows;  // one group a block
    p.plan = make_plan(p.w, T, kEvalRows, false, false);
    p.unit = kEvalRows;
  }
  p.units = (p.B + p.unit - 1) / p.unit;
  MNIST_CHECK((blocks == 1 && p.metrics) || (xent.blocks && xent.done && xent.capacity >= tail_xent_slots(p.B)), who, ": ", p.B,
              " rows need a scratch of ", tail_xent_slots(p.B), " group slots and a counter (have ", xent.capacity,
              ")");
  p.halves = tail_xent_slots(p.B);
  p.slots = xent.blocks;
  p.done = xent.done;
  const std::size_t smem = plan_bytes(p.plan);
  if (l0) {
    if (prec == GemmPrecision::TF32)
      backward ? launch_l0<GemmPrecision::TF32, true>(p, blocks, smem, stream)
               : launch_l0<GemmPrecision::TF32, false>(p, blocks, smem, stream);
    else
      backward ? launch_l0<GemmPrecision::BF16, true>(p, blocks, smem, stream)
               : launch_l0<GemmPrecision::BF16, false>(p, blocks, smem, stream);
    MNIST_LAUNCH_CHECK(stream);
    return;
  }
  switch (prec) {
    case GemmPrecision::FP32:
      backward ? launch<GemmPrecision::FP32, true>(p, blocks, smem, stream)
               : launch<GemmPrecision::FP32, false>(p, blocks, smem, stream);
      break;
    case GemmPrecision::TF32:
      backward ? launch<GemmPrecision::TF32, true>(p, blocks, smem, stream)
               : launch<GemmPrecision::TF32, false>(p, blocks, smem, stream);
      break;
    case GemmPrecision::BF16:
      backward ? launch<GemmPrecision::BF16, true>(p, blocks, smem, stream)
               : launch<GemmPrecision::BF16, false>(p, blocks, smem, stream);
      break;
  }
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace

void tail_force_stop(TailStop stop) { g_stop = stop; }

void tail_force_clocks(unsigned long long* stamps) { g_clocks = stamps; }

std::string tail_unsupported(const std::vector<int>& widths) {
  const int T = int(widths.size()) - 1;
  if (T < 1 || T > kTailMaxLayers)
    return cat("the tail kernel runs 1 to ", kTailMaxLayers, " layers after the first, not ", std::max(T, 0));
  for (int i = 0; i <= T; ++i)
    if (widths[std::size_t(i)] < 1) return cat("tail width ", i, " is ", widths[std::size_t(i)], " (at least 1)");
  if (widths.back() > kTailMaxClasses)
    return cat(widths.back(), " classes: the tail kernel's softmax takes at most ", kTailMaxClasses);
  // The largest plan a training launch can need: 32-row chunks with the running slice.
  const std::size_t bytes = plan_bytes(make_plan(widths.data(), T, kTailGroupRows, true, true));
  if (bytes > std::size_t(kSmemBudget))
    return cat("tail layers too wide for the tail kernel: their weights, gradients and 32 rows need ",
               (bytes + 1023) / 1024, " KB of shared memory (at most ", kSmemBudget / 1024, " KB)");
  return "";
}

std::string tail_layer0_unsupported(const std::vector<int>& widths, int K, GemmPrecision prec) {
  const std::string why = tail_unsupported(widths);
  if (!why.empty()) return why;
  if (prec == GemmPrecision::FP32)
    return "layer 0 inside the tail kernel runs on tensor cores only (tf32 or bf16, not fp32)";
  if (K < 1) return cat("layer 0 has ", K, " inputs (at least 1)");
  const int max_w0 = kL0TilesPerWarp * kWarps / (kL0Chunk / 16) * 16;
  if (widths[0] > max_w0)
    return cat("layer 0 has ", widths[0], " units: inside the tail kernel at most ", max_w0);
  const int T = int(widths.size()) - 1;
  const std::size_t bytes = plan_bytes(make_plan(widths.data(), T, kL0Chunk, true, true, true));
  if (bytes > std::size_t(kL0SmemBudget))
    return cat("layer 0 inside the tail kernel: its slices, the tail's weights, gradients and 32 rows need ",
               (bytes + 1023) / 1024, " KB of shared memory (at most ", kL0SmemBudget / 1024, " KB)");
  return "";
}

int tail_layer0_cluster(int B, bool training, const std::vector<int>& widths, int want, GemmPrecision prec,
                        TailRows rows) {
  const int T = int(widths.size()) - 1;
  // (the plan does not depend on layer 0's inputs: K = 1 asks only about the widths and precision)
  if (B <= 0 || !tail_layer0_unsupported(widths, 1, prec).empty()) return 1;
  return l0_launch(widths.data(), T, B, training, rows, want, prec).cluster;
}

namespace {
int units_of(int B, TailRows rows) { return (B + unit_rows(rows) - 1) / unit_rows(rows); }
}  // namespace

int tail_blocks(int B, TailRows rows) { return B <= 0 ? 0 : std::min(max_slices(rows), units_of(B, rows)); }

int tail_rows_per_block(int B, TailRows rows) {
  if (B <= 0) return unit_rows(rows);
  const int U = units_of(B, rows), n = tail_blocks(B, rows);
  return unit_rows(rows) * ((U + n - 1) / n);
}

int tail_block_row(int B, int j, TailRows rows) {
  if (B <= 0) return 0;
  const int n = tail_blocks(B, rows);
  return j >= n ? B : unit_rows(rows) * (j * units_of(B, rows) / n);
}

bool tail_half_rows_apply(int B, const std::vector<int>& widths) {
  if (B <= kHalf || tail_rows_per_block(B, TailRows::Half) > kTailGroupRows || !tail_unsupported(widths).empty()) return false;
  const int T = int(widths.size()) - 1;
  return plan_bytes(make_plan(widths.data(), T, kTailGroupRows, true, false)) <= std::size_t(kSmPairBytes);
}

std::size_t tail_slice_floats(const std::vector<int>& widths) {
  return widths.size() < 2 ? 0 : slice_floats_of(widths.data(), int(widths.size()) - 1);
}

std::size_t tail_layer_offset(const std::vector<int>& widths, int i) {
  std::size_t n = 0;
  for (int j = 1; j < i && j < int(widths.size()); ++j)
    n += std::size_t(widths[std::size_t(j)]) * std::size_t(widths[std::size_t(j - 1)] + 1);
  return n;
}

int tail_xent_slots(int B) { return B <= 0 ? 0 : (B + kHalf - 1) / kHalf; }

void tail_prepare() {
  prepare_prec<GemmPrecision::FP32>();
  prepare_prec<GemmPrecision::TF32>();
  prepare_prec<GemmPrecision::BF16>();
}

void tail_train(float* partial, float* dz0, Metrics* metrics, const XentScratch& scratch, const TailNet& net,
                const float* A0, const LabelInput& labels, const DropoutSpec& drop, float mask_scale, float grad_scale,
                int B, cudaStream_t stream, GemmPrecision prec, const TailTrace* trace, TailRows rows,
                const TailLayer0* layer0) {
  MNIST_CHECK(B <= 0 || partial, "tail_train: null partial slices");
  MNIST_CHECK(drop.p >= 0.0f && drop.p < 1.0f, "tail_train: dropout probability must be in [0, 1), got ", drop.p);
  TailParams p{};
  p.partial = partial;
  p.dz0 = dz0;
  p.metrics = metrics;
  p.A0 = A0;
  p.labels = labels;
  p.drop_scale = 1.0f;
  if (drop.p > 0.0f) {
    p.threshold = rng::dropout_threshold(drop.p);
    p.drop_scale = dropout_scale(drop.p);
    p.seed = drop.seed;
    p.step = drop.step;
    p.counters = drop.counters;
  }
  p.mask_scale = mask_scale;
  p.grad_scale = grad_scale;
  p.B = B;
  run(p, net, true, scratch, stream, prec, trace, "tail_train", rows, layer0);
}

void tail_evaluate(Metrics* metrics, const XentScratch& scratch, const TailNet& net, const float* A0,
                   const LabelInput& labels, int B, cudaStream_t stream, GemmPrecision prec, const TailTrace* trace,
                   const TailLayer0* layer0) {
  TailParams p{};
  p.metrics = metrics;
  p.A0 = A0;
  p.labels = labels;
  p.drop_scale = 1.0f;
  p.mask_scale = 1.0f;
  p.B = B;
  run(p, net, false, scratch, stream, prec, trace, "tail_evaluate", TailRows::Wide, layer0);
}

}  // namespace mnist::cuda
