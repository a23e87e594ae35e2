#include "kernels/fused_step.cuh"

#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>

#include "kernels/cp_async.cuh"
#include "kernels/curand_draw.cuh"
#include "kernels/dep_wait.cuh"
#include "kernels/gather.cuh"
#include "kernels/gemm_round.cuh"
#include "kernels/load_l2.cuh"
#include "kernels/philox.hpp"
#include "kernels/row_block.cuh"
#include "kernels/step_math.cuh"
#include "runtime/cuda_check.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

namespace cg = cooperative_groups;


// Every phase is a chain of dependent global loads (L2 hits of ~0.5 µs, image bytes from memory):
// measured on an H200 (2026-11-26, 179fdc7) with slices of 64 (A) and 32 (C) and phase B reading
// the weights from global memory, a step took 42.7 µs, ~19 µs of it in A and C (one item a block)
// and ~24 µs in B and the barriers. So the tiles take their K range in as few slices as possible
// (each slice is one round trip; the next is loaded while the current one is multiplied), the
// batch's image indices sit in shared memory (one dependent load less per element), phase B stages
// the weights it reads in shared memory, and phase C loads Adam's state before its GEMM.
// Phase A tiles: [16 rows, 16 units] of layer 0's output, K in slices of 208 (a 392-deep range
// is 2 slices), one output a thread, the operands read 4 k's at a time (tile_chain's KVEC).
constexpr int kAM = 16, kAN = 16, kAK = 208;
// Phase C tiles: [32 units, 32 inputs (+ the bias column)] of a layer's gradient, rows in slices
// of 128 (a batch of 128 is one slice), a 2x2 micro-tile a thread.
constexpr int kCM = 32, kCN = 32, kCK = 128, kCTM = 2, kCTN = 2;
constexpr int kR = kFusedRows;
static_assert(kAM % kR == 0, "a phase-B item's rows lie in one phase-A row tile (its dependency counter)");

// Phase A splits layer 0's K into S = a_splits(K) fixed ranges of ceil(K / S) (split-K): the
// 784-deep chain becomes two 392-deep ones run by twice the items, and phase B adds the S partial
// sums in order s = 0, 1, ... before the bias (so still deterministic and grid-independent; with
// S = 1, i.e. K <= kASplitK, the chain and the bits are the graph path's).
constexpr int kASplitK = 392;
__host__ __device__ constexpr int a_splits(int K) { return (K + kASplitK - 1) / kASplitK; }
constexpr int kT = kFusedThreads;

constexpr std::size_t tile_floats(int bm, int bn, int bk) { return std::size_t(bk) * (bm + 1) + std::size_t(bk) * (bn + 1); }
// Phase C's tiles ([k][x] with pairs of x read as float2: tile_chain's PAIRS): rows of x + 2 floats.
constexpr std::size_t pair_tile_floats(int bm, int bn, int bk) { return std::size_t(bk) * (bm + 2) + std::size_t(bk) * (bn + 2); }
// Phase A's tiles, k-contiguous (tile_chain's KVEC): rows of bk + 4 floats, 16-byte aligned.
constexpr int kvec_stride(int bk) { return bk + 4; }
constexpr std::size_t kvec_tile_floats(int bm, int bn, int bk) { return std::size_t(bm + bn) * std::size_t(kvec_stride(bk)); }

// The fused kernel's dynamic shared memory, in floats (all regions 16-byte aligned):
//   [0, phase)          phase A/C's GEMM tiles, or phase B's: the kR losses (double) and hits,
//                       then per layer l its kR rows of activations and of gradients (row stride
//                       b_stride(out_l)), then, when `stage_w`, the weights of layers 1..L-1 (row
//                       stride b_stride(in_l)); every region a multiple of 4 floats
//   [phase, +2 stride)  the image indices (int32, one per batch row) of this step and the next
// widths[0] = input, widths[l + 1] = layer l's output; layers = widths - 1.
struct SmemLayout {
  std::size_t phase = 0;  // floats before the indices
  std::size_t total = 0;  // floats in all
  bool stage_w = false;   // phase B reads W_1 .. W_{L-1} from shared memory
};

__host__ __device__ constexpr std::size_t round4(std::size_t n) { return (n + 3) / 4 * 4; }

// Phase B's row stride in shared memory for rows of n floats. Where n is a multiple of 4: the next
// multiple of 4 above n whose quarter is odd (n + 4 or n + 8: 132 for 128, 68 for 64), so rows are
// 16-byte aligned, the dot products read 4 elements a load, and the 4 rows / 8 units a warp reads
// fall in distinct 16-byte bank groups (4 x odd apart); else n + 1 (distinct banks, scalar reads).
__host__ __device__ constexpr int b_stride(int n) {
  return n % 4 != 0 ? n + 1 : ((n + 4) / 4) % 2 == 1 ? n + 4 : n + 8;
}

// Σ_k a[k]·w_in(w[k]) for k = 0 .. K-1 ascending, added to acc, reading 4 k's a 16-byte load (K a
// multiple of 4, both rows 16-byte aligned): the same FMA chain as the one-float loop. Phase B's
// forward over staged weights and the evaluation's layers >= 1 (w_in rounds weights read raw).
template <class WIn>
__device__ __forceinline__ float dot_rows4(const float* a, const float* w, int K, float acc, const WIn& w_in) {
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* w4 = reinterpret_cast<const float4*>(w);
#pragma unroll 2
  for (int q = 0; q < K / 4; ++q) {
    const float4 x = a4[q], y = w4[q];
    acc = fmaf(x.x, w_in(y.x), acc);
    acc = fmaf(x.y, w_in(y.y), acc);
    acc = fmaf(x.z, w_in(y.z), acc);
    acc = fmaf(x.w, w_in(y.w), acc);
  }
  return acc;
}

__host__ __device__ inline SmemLayout smem_layout(const int* widths, int layers, int stride, std::size_t max_bytes) {
  std::size_t b = round4(kFusedRows * (sizeof(double) + sizeof(uint32_t)) / sizeof(float));
  std::size_t w = 0;
  for (int l = 0; l < layers; ++l) {
    b += 2 * round4(std::size_t(kFusedRows) * std::size_t(b_stride(widths[l + 1])));
    if (l > 0) w += round4(std::size_t(widths[l + 1]) * std::size_t(b_stride(widths[l])));
  }
  const std::size_t tiles = std::max(kvec_tile_floats(kAM, kAN, kAK), pair_tile_floats(kCM, kCN, kCK));
  const std::size_t idx = 2 * round4(std::size_t(stride));
  SmemLayout s;
  const std::size_t staged = round4(b + w);
  s.stage_w = (staged > tiles ? staged : tiles) + idx <= max_bytes / sizeof(float);
  s.phase = round4(s.stage_w ? staged : b);
  if (s.phase < tiles) s.phase = round4(tiles);
  s.total = s.phase + idx;
  return s;
}

// An operand's element read in two steps (tile_chain): fetch(x, k) loads its raw 32 bits (a float's,
// or a pixel's byte) and nothing else, so that no instruction waits on a load until every load of
// the slice has been issued; make(raw) turns them into the GEMM's input (pixel_value, the
// precision's rounding) when the slice is stored into shared memory, a slice of FMAs later. A raw
// 0 makes +0, the value of the elements outside the operand. (With the conversion inside one
// function, each load's I2F or rounding came right after it in the unrolled loop, so a thread's
// loads of a slice went out one round trip at a time: phase A's 26 at TF32, 13 at FP32, where the
// weights need no conversion; the seventeenth session's reading of the SASS, profiling/NOTES.md.)
template <class Fetch, class Make>
struct Loader {
  Fetch fetch;
  Make make;
};
template <class Fetch, class Make>
__device__ __forceinline__ Loader<Fetch, Make> loader(const Fetch& fetch, const Make& make) {
  return {fetch, make};
}
// The two makes (gemm_round.cuh's gemm_input_from_raw): a float's bits, or a pixel's byte.
template <GemmPrecision PREC>
struct FloatInput {
  __device__ float operator()(uint32_t v) const { return gemm_input_from_raw<PREC>(v, false); }
};
template <GemmPrecision PREC>
struct PixelInput {
  __device__ float operator()(uint32_t v) const { return gemm_input_from_raw<PREC>(v, true); }
};

// One operand's part of a K slice [k0, k0 + BK) of an X x BK tile at x0, into registers as raw bits:
// thread tid takes elements tid, tid + kT, ... (KFAST: consecutive threads along k, else along x, so
// that they read consecutive addresses); load.fetch(x, k) reads an in-range element, the others are 0.
template <int X, int BK, bool KFAST, int NR, class Load>
__device__ __forceinline__ void load_operand(uint32_t (&r)[NR], int tid, int x0, int x_end, int k0, int K,
                                             const Load& load) {
#pragma unroll
  for (int it = 0; it < NR; ++it) {
    const int e = tid + it * kT;
    const int xx = KFAST ? e / BK : e % X, kk = KFAST ? e % BK : e / X;
    const int x = x0 + xx, k = k0 + kk;
    r[it] = (x < x_end && k < K) ? load.fetch(x, k) : 0u;
  }
}

// acc [TM][TN] = Σ_k A(m, k) · B(n, k) over k = k_begin .. K-1 ascending, for the thread's micro-tile of
// the BM x BN tile at (m0, n0): rows tr + i*(BM/TM), columns tc + j*(BN/TN). K advances in BK
// slices staged in shared memory; out-of-range elements load as 0. The same FMA chain as
// kernels/dense.cu's gemm_tile, so the same bits. Every thread of the block calls it (it
// synchronises the block, also before returning, so the caller may reuse As/Bs). load_a / load_b
// (Loader) read in-range elements (m, k) / (n, k); *_KFAST says which index is contiguous in
// memory, so that consecutive threads load consecutive addresses.
// Layout: As [BK][BM+1], Bs [BK][BN+1] (a thread reads one float per operand and FMA), or, with
// KVEC (one output a thread, both operands k-fast: phase A), k-contiguous rows As [BM][BK + 4],
// Bs [BN][BK + 4] (16-byte aligned, kvec_tile_floats) read four k's a 16-byte load: 2 shared loads
// per 4 FMAs instead of 8. There a warp's lanes read 2 rows of A (one broadcast wavefront) and 16
// rows of B, 4·53 floats apart, so each 8-lane quarter hits 8 distinct 16-byte bank groups (two
// wavefronts, no conflict), and the stores of a loaded slice are consecutive addresses. The
// one-float form cost phase A ≈ 416 wavefronts per warp and 208-deep slice, KVEC 156: the
// shared-memory issue that bound it (profiling/NOTES.md, "Measured again on the H200").
// PAIRS (2x2 micro-tiles over operands that are m/n-fast in memory: phase C) keeps [k][x] but with
// rows of x + 2 floats (pair_tile_floats), and a thread's micro-tile is 2 adjacent rows and 2
// adjacent columns (micro_index), read as one float2 each: 2 shared loads per 4 FMAs instead of 4 (a
// warp's 2 row pairs: one broadcast wavefront; its 16 column pairs, 128 contiguous bytes: one).
template <int TM, bool PAIRS>
__host__ __device__ constexpr int micro_index(int t, int i, int rows_per_step) {  // t: tr or tc; i: 0 .. TM-1
  return PAIRS ? TM * t + i : t + i * rows_per_step;
}
template <int TM, int TN, bool A_KFAST, bool B_KFAST>
constexpr bool chain_pairs() { return !A_KFAST && !B_KFAST && TM == 2 && TN == 2; }

template <int BM, int BN, int BK, int TM, int TN, bool A_KFAST, bool B_KFAST, bool KVEC = false, class LoadA,
          class LoadB>
__device__ __forceinline__ void tile_chain(float (&acc)[TM][TN], int m0, int n0, int M, int N, int k_begin, int K,
                                           const LoadA& load_a, const LoadB& load_b, float* __restrict__ As,
                                           float* __restrict__ Bs) {
  constexpr int RM = BM / TM, RN = BN / TN, SK = kvec_stride(BK);
  constexpr bool PAIRS = chain_pairs<TM, TN, A_KFAST, B_KFAST>();
  constexpr int SA = PAIRS ? BM + 2 : BM + 1, SB = PAIRS ? BN + 2 : BN + 1;  // [k][x] row strides
  static_assert(RM * RN == kT, "one micro-tile per thread");
  static_assert((BM * BK) % kT == 0 && (BN * BK) % kT == 0, "tile loads must split evenly");
  static_assert(!KVEC || (TM == 1 && TN == 1 && A_KFAST && B_KFAST && BK % 4 == 0),
                "k-contiguous rows: one output a thread, k-fast operands, whole 16-byte groups");
  const int tid = int(threadIdx.x);
  const int tr = tid / RN, tc = tid % RN;
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
  // The next slice is loaded into registers while the current one is multiplied out of shared
  // memory, so a slice costs max(load latency, FMAs) rather than their sum.
  constexpr int NA = BM * BK / kT, NB = BN * BK / kT;
  uint32_t ra[NA], rb[NB];  // raw bits (Loader), made into inputs as they are stored
  auto load_slice = [&](int k0) {
    load_operand<BM, BK, A_KFAST>(ra, tid, m0, M, k0, K, load_a);
    load_operand<BN, BK, B_KFAST>(rb, tid, n0, N, k0, K, load_b);
  };
  // Where element e of a slice goes: KVEC row (e / BK), column e % BK; else [k][x], rows of S.
  auto slot = [](int e, int X, int S, bool kfast) {
    if (KVEC) return (e / BK) * SK + e % BK;
    return (kfast ? e % BK : e / X) * S + (kfast ? e / BK : e % X);
  };
  if (K > k_begin) load_slice(k_begin);
  for (int k0 = k_begin; k0 < K; k0 += BK) {
#pragma unroll
    for (int it = 0; it < NA; ++it) As[slot(tid + it * kT, BM, SA, A_KFAST)] = load_a.make(ra[it]);
#pragma unroll
    for (int it = 0; it < NB; ++it) Bs[slot(tid + it * kT, BN, SB, B_KFAST)] = load_b.make(rb[it]);
    __syncthreads();
    if (k0 + BK < K) load_slice(k0 + BK);
    if constexpr (KVEC) {
      const float4* const a4 = reinterpret_cast<const float4*>(As + tr * SK);
      const float4* const b4 = reinterpret_cast<const float4*>(Bs + tc * SK);
#pragma unroll 8
      for (int q = 0; q < BK / 4; ++q) {
        const float4 a = a4[q], b = b4[q];
        acc[0][0] = fmaf(a.x, b.x, acc[0][0]);
        acc[0][0] = fmaf(a.y, b.y, acc[0][0]);
        acc[0][0] = fmaf(a.z, b.z, acc[0][0]);
        acc[0][0] = fmaf(a.w, b.w, acc[0][0]);
      }
    } else {
#pragma unroll 8
      for (int kk = 0; kk < BK; ++kk) {
        float av[TM], bv[TN];
        if constexpr (PAIRS) {
          const float2 a = *reinterpret_cast<const float2*>(As + kk * SA + 2 * tr);
          const float2 b = *reinterpret_cast<const float2*>(Bs + kk * SB + 2 * tc);
          av[0] = a.x, av[1] = a.y, bv[0] = b.x, bv[1] = b.y;
        } else {
#pragma unroll
          for (int i = 0; i < TM; ++i) av[i] = As[kk * SA + micro_index<TM, false>(tr, i, RM)];
#pragma unroll
          for (int j = 0; j < TN; ++j) bv[j] = Bs[kk * SB + micro_index<TN, false>(tc, j, RN)];
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
}

// FusedStep::ready, in unsigned counters, each kind in 2 sets by step parity: [a: one per 16-row tile
// of the batch (phase A's items done)] [c0: one per 32-unit tile of layer 0 (phase C's layer-0
// items done)] [c: one (phase C's items and the metrics, all layers)].
__host__ __device__ constexpr int ready_a(int stride) { return (stride + kAM - 1) / kAM; }
__host__ __device__ constexpr int ready_c0(int n0) { return (n0 + kCM - 1) / kCM; }
__host__ __device__ constexpr int ready_total(int stride, int n0) { return 2 * (ready_a(stride) + ready_c0(n0) + 1); }
static_assert(kCM % kAN == 0, "a phase-A item's units lie in one phase-C row tile of layer 0");

// Items of each phase for `rows` rows.
__device__ __forceinline__ int a_items(const FusedStep& f, int rows) {
  return a_splits(f.layer[0].in) * ((rows + kAM - 1) / kAM) * ((f.layer[0].out + kAN - 1) / kAN);
}
__device__ __forceinline__ int c_tiles(const FusedLayer& l) {
  return ((l.out + kCM - 1) / kCM) * ((l.in + 1 + kCN - 1) / kCN);
}

// What it fuses, reads and writes: fused_step.cuh's header. Shapes: images [n, K0] uint8, labels
// [n], order [n]; params/m/v the flat span (layers/model.hpp: W_l [N_l, K_l], b_l [N_l]); act[l],
// dz[l] [stride, N_l]; partial [splits, stride, N0]; row_loss/row_hit [stride].
// f: the model, buffers and constants (fused_step.cuh); steps: training steps to run; rows: rows
// per step. Every buffer but the images, labels and order is written by some block during the
// launch and read by others after a grid barrier or a counter wait (an acquire: dep_wait), so
// loads are plain coherent loads: no __ldg,
// no __restrict__ on them (which would let the compiler use the non-coherent read-only path);
// the helpers' __restrict__ parameters here are shared-memory tiles (tile_chain, xent_row's z and
// d0) or elements read and written (adam_element), never a read-only global pointer. Shared
// memory (dynamic): the phase A/C GEMM tiles, or phase B's activations and gradients of kR rows
// for every layer, [kR] losses and hits.
// BARRIERS (FusedStep::grid_barriers, comparison only, FP32 only): the two grid barriers a step
// that the counters replaced, put back. A separate instantiation: even an untaken branch to them
// made ptxas spill 32/68 bytes in the TF32/BF16 kernels, which sit at the register cap.
template <GemmPrecision PREC, bool BARRIERS = false>
__global__ void __launch_bounds__(kT) fused_step_kernel(const FusedStep f, int steps, int rows) {
  extern __shared__ float4 fused_smem[];
  float* smem = reinterpret_cast<float*>(fused_smem);
  cg::grid_group grid = cg::this_grid();
  const int tid = int(threadIdx.x);
  const int L = f.layers;
  const int K0 = f.layer[0].in, N0 = f.layer[0].out;
  int widths[kFusedMaxLayers + 1];
  widths[0] = K0;
  for (int l = 0; l < L; ++l) widths[l + 1] = f.layer[l].out;
  const SmemLayout lay = smem_layout(widths, L, f.stride, kFusedMaxSmem);

  const TrainCounters c0 = *f.counters;  // read by every block before its first barrier
  // The image indices of the step's rows, double-buffered: step s + 1's are copied asynchronously
  // (cp.async, 4 bytes each) from the start of step s's phase C, so their latency hides behind its
  // work (there is no barrier after phase C to hide it any more), and waited for at the step's end.
  // (The order is read-only here.)
  int32_t* const idx_buf = reinterpret_cast<int32_t*>(smem + lay.phase);
  const std::size_t idx_stride = round4(std::size_t(f.stride));
  auto load_indices = [&](int s, int32_t* dst) {
    const int32_t* idx = f.order + std::size_t(c0.batch + s) * std::size_t(f.stride);
    for (int r = tid; r < rows; r += kT)
      cp_async4(reinterpret_cast<float*>(dst + r), reinterpret_cast<const uint8_t*>(idx + r));
    cp_async_commit();
  };
  const bool dropping = f.dropout > 0.0f;
  const uint32_t threshold = dropping ? rng::dropout_threshold(f.dropout) : 0u;
  const float scale = dropping ? 1.0f / (1.0f - f.dropout) : 1.0f;  // = dropout_scale(p)
  const float grad_scale = 1.0f / float(rows);

  int c_items = 0;
  for (int l = 0; l < L; ++l) c_items += c_tiles(f.layer[l]);
  const int b_items = (rows + kR - 1) / kR;

  // The step's dependencies on counters instead of grid barriers (kernels/dep_wait.cuh):
  //   phase B item  <- the phase-A items of its 16-row tile, this step (a_ready)
  //   phase A item  <- step s-1's phase-C items of layer 0 that update its 16 units' W0 rows and b0
  //                    (c0_ready: the 32-unit tile's (K0 + 1) / 32 items), and, without split-K, all
  //                    of them (it overwrites act0, which layer 1's items read)
  //   phase B       <- all of step s-1's phase-C items and its metrics (c_done; B rewrites dz, the
  //                    activations and the item losses they read, and stages the W_l they update)
  // with one grid barrier between phases B and C. Each counter is zeroed by block 0 once every wait
  // on it is over: after the barrier of step s, step s's a_ready set and step s-1's c0/c sets; the
  // launch's last c0/c set at its end, after block 0 has waited for it to fill. Two sets by step
  // parity, because a set's next counts may start before block 0 has zeroed it otherwise (step
  // s+1's phase-A items can run before block 0 is past the barrier of step s); with two, a set is
  // next counted after the barrier of the following step, which block 0 reaches only once it has
  // zeroed it. Cycles cannot form: phase-C items wait for nothing, phase-A items only for phase C,
  // and a block does its items in the order C, A, B.
  const bool c_counts = (f.phases & 4u) != 0;  // (profiling knob: without phase C nothing counts)
  auto a_ready = [&](int parity) { return f.ready + parity * ready_a(f.stride); };
  auto c0_ready = [&](int parity) { return f.ready + 2 * ready_a(f.stride) + parity * ready_c0(N0); };
  auto c_done = [&](int parity) { return f.ready + 2 * (ready_a(f.stride) + ready_c0(N0)) + parity; };
  const unsigned c0_target = unsigned((K0 + 1 + kCN - 1) / kCN), c_target = unsigned(c_items + 1);

  for (int s = 0; s < steps; ++s) {
    const uint64_t step = uint64_t(c0.step + s);
    int32_t* const s_idx = idx_buf + std::size_t(s & 1) * idx_stride;
    if (s == 0) {
      load_indices(0, s_idx);
      cp_async_wait<0>();
    }
    __syncthreads();

    // ---- Phase A: act0 [rows, N0] = dropout(ReLU(X · W0ᵀ + b0)), X gathered from the images
    // (S = 1); or, split-K (S > 1), the S partial products X · W0ᵀ over fixed K ranges into
    // f.partial [S, rows, N0], finished in phase B.
    if (f.phases & 1u) {
      const float* W0 = f.params + f.layer[0].w_offset;
      const float* b0 = f.params + f.layer[0].b_offset;
      const int S = a_splits(K0), chunk = (K0 + S - 1) / S;
      const int cols = (N0 + kAN - 1) / kAN, tiles = ((rows + kAM - 1) / kAM) * cols, items = a_items(f, rows);
      const auto load_x = loader([&](int r, int k) { return uint32_t(f.images[std::size_t(s_idx[r]) * K0 + k]); },
                                 PixelInput<PREC>{});
      const auto load_w = loader([&](int n, int k) { return float_bits(W0[std::size_t(n) * K0 + k]); },
                                 FloatInput<PREC>{});
      for (int it = int(blockIdx.x); it < items; it += int(gridDim.x)) {
        const int split = it / tiles, t = it % tiles;
        const int m0 = (t / cols) * kAM, n0 = (t % cols) * kAN;
        const int k_begin = split * chunk, k_end = k_begin + chunk < K0 ? k_begin + chunk : K0;
        if (s > 0 && c_counts) {  // W0's rows (and b0) as the last step's Adam left them
          dep_wait(c0_ready((s - 1) & 1) + n0 / kCM, c0_target);
          if (S == 1) dep_wait(c_done((s - 1) & 1), c_target);  // (act0 is rewritten below)
        }
        float acc[1][1];
        tile_chain<kAM, kAN, kAK, 1, 1, true, true, true>(acc, m0, n0, rows, N0, k_begin, k_end, load_x, load_w, smem,
                                                          smem + kAM * kvec_stride(kAK));
        const int r = m0 + tid / kAN, n = n0 + tid % kAN;
        if (r < rows && n < N0) {
          if (S > 1) {
            f.partial[(std::size_t(split) * f.stride + r) * N0 + n] = acc[0][0];
          } else {
            f.layer[0].act[std::size_t(r) * N0 + n] =
                dense_unit(acc[0][0], b0[n], true, threshold, scale, f.seed, step, 0, uint64_t(r) * uint64_t(N0) + uint64_t(n));
          }
        }
        dep_signal(a_ready(s & 1) + m0 / kAM);  // this item's rows of act0 / partial are out
      }
    }
    // Phase B's shared memory, set up before its items wait for their rows of phase A: the rows'
    // activations and gradients (row stride b_stride(width)) and, when they fit, the weights W_1 ..
    // W_{L-1} (row stride b_stride(in)), staged now. They do not depend on phase A, only on the last
    // step's phase C (c_done), so their L2 round trip overlaps the phase-A items' tail instead of
    // starting phase B. Phase A's tiles are done with the memory: tile_chain synchronises the block
    // before it returns.
    const bool b_block = (f.phases & 2u) && int(blockIdx.x) < b_items;
    double* s_loss = reinterpret_cast<double*>(smem);
    uint32_t* s_hit = reinterpret_cast<uint32_t*>(s_loss + kR);
    // Per layer, offsets (floats) into `smem`, not pointers: a table of pointers lives in local
    // memory and loses their address space, so every read through it was a generic load with 64-bit
    // address arithmetic (profiling/sass.py showed phase B's loops as LD.E); smem + offset stays a
    // shared-memory address (LDS, 32-bit). Layer l's activations at smem + oA[l], its gradients at
    // smem + oD[l], W_l's rows (staged) at smem + oW[l] + n * ws[l], else in global memory.
    int oA[kFusedMaxLayers], oD[kFusedMaxLayers], oW[kFusedMaxLayers];
    int ws[kFusedMaxLayers];
    // The label of row tid of the block's first phase-B item, read now for the same reason.
    uint8_t first_label = 0;
    const int first_row = int(blockIdx.x) * kR + tid;
    if (b_block && tid < kR && first_row < rows) first_label = f.labels[s_idx[first_row]];
    if (b_block) {
      if (s > 0 && c_counts) dep_wait(c_done((s - 1) & 1), c_target);  // the last step's phase C is over
      float* p = smem + round4(kR * (sizeof(double) + sizeof(uint32_t)) / sizeof(float));
      for (int l = 0; l < L; ++l) {
        const std::size_t w = round4(std::size_t(kR) * std::size_t(b_stride(f.layer[l].out)));
        oA[l] = int(p - smem);
        p += w;
        oD[l] = int(p - smem);
        p += w;
      }
      for (int l = 1; l < L; ++l) {
        const float* W = f.params + f.layer[l].w_offset;
        const int K = f.layer[l].in, N = f.layer[l].out;
        if (!lay.stage_w) {
          ws[l] = K;
          continue;
        }
        // Staged once per step by each block that has items (Adam rewrote them in the last C):
        // coalesced, 8 float4 (or 16 floats) in flight a thread.
        oW[l] = int(p - smem);
        ws[l] = b_stride(K);
        const int total = N * K;
        constexpr int kU = 16;
        if (K % 4 == 0 && f.layer[l].w_offset % 4 == 0) {  // float4 loads (params is 16-byte aligned)
          const float4* W4 = reinterpret_cast<const float4*>(W);
          const int total4 = total / 4, K4 = K / 4;
          constexpr int kU4 = 8;  // 8 float4 a thread: W_1 of the default model in one round
          for (int e0 = tid; e0 < total4; e0 += kU4 * kT) {
            float4 v[kU4];
#pragma unroll
            for (int u = 0; u < kU4; ++u) {
              const int e = e0 + u * kT;
              v[u] = e < total4 ? W4[e] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
            rowblock::RowCol rc(e0, kT, K4);  // element e's row and float4 column, without a division each
#pragma unroll
            for (int u = 0; u < kU4; ++u, rc.next()) {
              const int e = e0 + u * kT;
              if (e >= total4) continue;
              float* d = p + rc.row * b_stride(K) + rc.col * 4;
              d[0] = round_gemm_input<PREC>(v[u].x);
              d[1] = round_gemm_input<PREC>(v[u].y);
              d[2] = round_gemm_input<PREC>(v[u].z);
              d[3] = round_gemm_input<PREC>(v[u].w);
            }
          }
        } else {
          for (int e0 = tid; e0 < total; e0 += kU * kT) {
            float v[kU];
#pragma unroll
            for (int u = 0; u < kU; ++u) {
              const int e = e0 + u * kT;
              v[u] = e < total ? W[e] : 0.0f;
            }
            rowblock::RowCol rc(e0, kT, K);
#pragma unroll
            for (int u = 0; u < kU; ++u, rc.next()) {
              const int e = e0 + u * kT;
              if (e < total) p[rc.row * b_stride(K) + rc.col] = round_gemm_input<PREC>(v[u]);
            }
          }
        }
        p += round4(std::size_t(N) * std::size_t(b_stride(K)));
      }
    }
    if constexpr (BARRIERS) grid.sync();  // (comparison only: the counters below order phases A and B)
    // No grid barrier between phases A and B: a phase-B item waits only for the S x cols phase-A
    // items of its 16-row tile (a_ready, dep_wait), so it starts as soon as its rows are done, and
    // blocks without phase-B work go straight on to the barrier before phase C.

    // ---- Phase B, per kR rows: layers 1..L-1 forward, softmax + cross-entropy + dlogits, and
    // every layer's data gradient down to dz[0], with the rows' activations in shared memory.
    if (b_block) {
      // (the first __syncthreads below, after layer 0's rows, also covers the staged weights)
      // W_l's elements as the GEMMs take them: rounded once when staged, else at each read.
      const bool staged = lay.stage_w;
      auto w_in = [staged](float w) { return staged ? w : round_gemm_input<PREC>(w); };
      for (int it = int(blockIdx.x); it < b_items; it += int(gridDim.x)) {
        const int r0 = it * kR, nr = rows - r0 < kR ? rows - r0 : kR;
        const int S = a_splits(K0);
        const float* b0 = f.params + f.layer[0].b_offset;
        if (f.phases & 1u) dep_wait(a_ready(s & 1) + r0 / kAM, unsigned(S * ((N0 + kAN - 1) / kAN)));
        // (other blocks wrote them in this step: read from L2, past any line this SM's L1 kept)
        // kPer elements a thread are loaded before any is used or stored: the compiler may not move
        // a load above the store to act before it (it cannot tell the arrays apart), so one element
        // at a time was one L2 round trip each, in sequence (sass.py's "serial global loads").
        constexpr int kPer = 4;
        for (int o0 = tid; o0 < kR * N0; o0 += kPer * kT) {
          // Element u's source: act0 (S == 1) or its first partial sum; null past the rows.
          const float* src[kPer];
#pragma unroll
          for (int u = 0; u < kPer; ++u) {
            const int o = o0 + u * kT, r = o / N0, n = o % N0;
            src[u] = o < kR * N0 && r < nr ? (S == 1 ? &f.layer[0].act[std::size_t(r0) * N0 + o]
                                                     : &f.partial[std::size_t(r0 + r) * N0 + n])
                                           : nullptr;
          }
          float acc[kPer];
#pragma unroll
          for (int u = 0; u < kPer; ++u) acc[u] = src[u] ? load_l2(src[u]) : 0.0f;
          // split-K: the partial sums in order, piece by piece for all kPer elements at once
          // (phase A's epilogue below)
          for (int sp = 1; sp < S; ++sp) {
            float t[kPer];
#pragma unroll
            for (int u = 0; u < kPer; ++u) t[u] = src[u] ? load_l2(src[u] + std::size_t(sp) * f.stride * N0) : 0.0f;
#pragma unroll
            for (int u = 0; u < kPer; ++u) acc[u] += t[u];
          }
#pragma unroll
          for (int u = 0; u < kPer; ++u) {
            const int o = o0 + u * kT, r = o / N0, n = o % N0;
            if (o >= kR * N0) break;
            float z = acc[u];
            if (r < nr && S > 1) {
              const std::size_t e = std::size_t(r0 + r) * N0 + n;
              z = dense_unit(acc[u], b0[n], true, threshold, scale, f.seed, step, 0, uint64_t(e));
              f.layer[0].act[e] = z;
            }
            smem[oA[0] + r * b_stride(N0) + n] = stored_activation<PREC>(z);  // the GEMM's input, the mask (kept)
          }
        }
        __syncthreads();
        for (int l = 1; l < L; ++l) {
          const FusedLayer& ly = f.layer[l];
          const int K = ly.in, N = ly.out;
          const bool hidden = l + 1 < L;
          const float* b = f.params + ly.b_offset;
          // W: staged (shared memory, already rounded; rows of a multiple of 4 read 4 k's a load with
          // the row of A: both 16-byte aligned by b_stride, 2 loads per 4 FMAs instead of 8, the same
          // chain, k ascending) or in global memory (rounded at each read). One body, instantiated
          // for each address space, so that neither read is a generic load.
          auto forward = [&](const float* W, bool vec) {
            for (int o = tid; o < kR * N; o += kT) {
              const int r = o % kR, n = o / kR;
              if (r >= nr) continue;
              const float* a = smem + oA[l - 1] + r * b_stride(K);
              const float* w = W + n * ws[l];
              float acc = 0.0f;
              if (vec) {
                acc = dot_rows4(a, w, K, acc, [](float v) { return v; });
              } else {
                for (int k = 0; k < K; ++k) acc = fmaf(a[k], w_in(w[k]), acc);
              }
              const uint64_t e = uint64_t(r0 + r) * uint64_t(N) + uint64_t(n);
              const float z = dense_unit(acc, b[n], hidden, hidden ? threshold : 0u, scale, f.seed, step, uint32_t(l), e);
              if (hidden) ly.act[e] = z;
              smem[oA[l] + r * b_stride(N) + n] = hidden ? stored_activation<PREC>(z) : z;  // (logits: xent's input)
            }
          };
          if (staged)
            forward(smem + oW[l], K % 4 == 0);
          else
            forward(f.params + ly.w_offset, false);
          __syncthreads();
        }
        // Softmax + cross-entropy: xent_row's parts (step_math.cuh) spread over the block, the same
        // arithmetic and order as softmax_xent_kernel's xent_row, so the same bits: every (row,
        // class) item's e_j into the row of dZ, a barrier, each row's ordered sums, loss and hit by
        // its thread, a barrier, every item's gradient (one thread a row ran its C exp_shifted twice
        // and C divisions in sequence on every phase-B item's path).
        const FusedLayer& out = f.layer[L - 1];
        const int C = out.out;
        __shared__ XentRowScratch<kR> s_x;
        float* const e = smem + oD[L - 1];  // (the rows of dZ: e_j, then the gradient over it)
        const float* const z = smem + oA[L - 1];
        xent_exp_items(z, b_stride(C), e, b_stride(C), nr, C, tid, kT);
        __syncthreads();
        if (tid < nr) {
          const int r = tid;
          const uint8_t label = it == int(blockIdx.x) ? first_label : f.labels[s_idx[r0 + r]];
          const XentRow row = xent_row_sums(z + r * b_stride(C), e + r * b_stride(C), C, label, r, s_x);
          s_loss[r] = row.loss;
          s_hit[r] = row.hit ? 1u : 0u;
        }
        __syncthreads();
        xent_grad_items(e, b_stride(C), nr, C, s_x, grad_scale, tid, kT, [&](int r, int j, float g) {
          out.dz[std::size_t(r0 + r) * C + j] = g;
          e[r * b_stride(C) + j] = PREC != GemmPrecision::FP32 ? round_gemm_input<PREC>(g) : g;  // dZ as the GEMMs take it
        });
        __syncthreads();
        if (tid == 0) {  // the item's loss and hits, rows in order
          double loss = 0;
          uint32_t hits = 0;
          for (int r = 0; r < nr; ++r) {
            loss += s_loss[r];
            hits += s_hit[r];
          }
          f.row_loss[it] = loss;
          f.row_hit[it] = hits;
        }
        // Data gradients: dz[l-1] = (dz[l] · W_l) ⊙ [act[l-1] > 0] / (1-p), n ascending.
        for (int l = L - 1; l >= 1; --l) {
          const FusedLayer& ly = f.layer[l];
          const int K = ly.in, N = ly.out;
          float* dprev = f.layer[l - 1].dz;
          const bool vec = N % 4 == 0;  // the row of dz[l] 16-byte aligned (b_stride): 4 n's a load
          // W staged or in global memory, one body per address space (as the forward above); the
          // column walk in 32-bit offsets (W has < 2^31 elements: FusedLayer's int sizes).
          auto backward = [&](const float* W) {
            const int wsl = ws[l];
            for (int o = tid; o < kR * K; o += kT) {
              const int r = o % kR, k = o / kR;
              if (r >= nr) continue;
              const float* d = smem + oD[l] + r * b_stride(N);
              const float* wk = W + k;
              float acc = 0.0f;
              if (vec) {
                const float4* d4 = reinterpret_cast<const float4*>(d);
                const float* wq = wk;  // W[n][k], n = 4q + j: one row (wsl floats) further each FMA
#pragma unroll 2
                for (int q = 0; q < N / 4; ++q) {
                  const float4 x = d4[q];
                  acc = fmaf(x.x, w_in(*wq), acc);
                  wq += wsl;
                  acc = fmaf(x.y, w_in(*wq), acc);
                  wq += wsl;
                  acc = fmaf(x.z, w_in(*wq), acc);
                  wq += wsl;
                  acc = fmaf(x.w, w_in(*wq), acc);
                  wq += wsl;
                }
              } else {
                for (int n = 0; n < N; ++n) acc = fmaf(d[n], w_in(wk[n * wsl]), acc);
              }
              const float v = kept(smem[oA[l - 1] + r * b_stride(K) + k]) ? acc * scale : 0.0f;
              smem[oD[l - 1] + r * b_stride(K) + k] = round_gemm_input<PREC>(v);
              dprev[std::size_t(r0 + r) * K + k] = v;
            }
          };
          if (staged)
            backward(smem + oW[l]);
          else
            backward(f.params + ly.w_offset);
          __syncthreads();
        }
      }
    }
    grid.sync();
    // Every wait on this step's a_ready set and on the last step's phase-C set is over: they go back
    // to 0 (their next counts come after the next step's barrier, which block 0 reaches after this).
    // Step s + 1's indices into the other buffer (this block is done with step s - 1's), landing
    // while phase C runs.
    if (s + 1 < steps) load_indices(s + 1, idx_buf + std::size_t((s + 1) & 1) * idx_stride);
    if (blockIdx.x == 0) {
      for (int i = tid; i < ready_a(rows); i += kT) a_ready(s & 1)[i] = 0;
      if (s > 0) {
        for (int i = tid; i < ready_c0(N0); i += kT) c0_ready((s - 1) & 1)[i] = 0;
        if (tid == 0) *c_done((s - 1) & 1) = 0;
      }
    }

    // ---- Phase C: every layer's gradient [N, K+1] (dW and the db column) = dzᵀ · [X | 1], rows
    // ascending, and Adam on it at once (no gradient is stored). Each thread loads its elements'
    // parameter and moments before the GEMM, so their latency hides behind it (each element is
    // owned by one tile: nothing else reads or writes it in this phase).
    if (f.phases & 4u) {
      const float alpha = adam_step_size(c0.lr, f.b1, f.b2, int64_t(step));  // as adam_kernel
      if (blockIdx.x == 0 && tid == 0) {  // the step's metrics, items in order
        double loss = 0;
        unsigned long long hits = 0;
        for (int it = 0; it < b_items; ++it) {
          loss += f.row_loss[it];
          hits += f.row_hit[it];
        }
        f.metrics->loss_sum += loss;
        f.metrics->correct += hits;
      }
      if (blockIdx.x == 0) dep_signal(c_done(s & 1));  // (the next step's phase B rewrites row_loss)
      for (int it = int(blockIdx.x); it < c_items; it += int(gridDim.x)) {
        int l = 0, t = it;
        while (t >= c_tiles(f.layer[l])) t -= c_tiles(f.layer[l++]);
        const FusedLayer& ly = f.layer[l];
        const int N = ly.out, K = ly.in;
        const int cols = (K + 1 + kCN - 1) / kCN;
        const int m0 = (t / cols) * kCM, n0 = (t % cols) * kCN;
        constexpr int RM = kCM / kCTM, RN = kCN / kCTN;
        constexpr bool kPairs = chain_pairs<kCTM, kCTN, false, false>();  // tile_chain's PAIRS micro-tiles
        std::size_t at[kCTM][kCTN];
        float pp[kCTM][kCTN], pm[kCTM][kCTN], pv[kCTM][kCTN];
#pragma unroll
        for (int i = 0; i < kCTM; ++i)
#pragma unroll
          for (int j = 0; j < kCTN; ++j) {
            const int m = m0 + micro_index<kCTM, kPairs>(tid / RN, i, RM), n = n0 + micro_index<kCTN, kPairs>(tid % RN, j, RN);
            at[i][j] = m < N && n <= K ? (n == K ? ly.b_offset + m : ly.w_offset + std::size_t(m) * K + n) : ~std::size_t(0);
            if (at[i][j] != ~std::size_t(0)) {
              pp[i][j] = f.params[at[i][j]];
              pm[i][j] = f.m[at[i][j]];
              pv[i][j] = f.v[at[i][j]];
            }
          }
        const float* dz = ly.dz;
        const auto load_dz = loader([&](int m, int r) { return float_bits(dz[std::size_t(r) * N + m]); },
                                    FloatInput<PREC>{});
        float acc[kCTM][kCTN];
        float* As = smem;
        float* Bs = smem + kCK * (kCM + (kPairs ? 2 : 1));
        if (l == 0) {
          const auto load_x = loader(
              [&](int n, int r) { return n == K ? 255u : uint32_t(f.images[std::size_t(s_idx[r]) * K + n]); },
              PixelInput<PREC>{});
          tile_chain<kCM, kCN, kCK, kCTM, kCTN, false, false>(acc, m0, n0, N, K + 1, 0, rows, load_dz, load_x, As,
                                                              Bs);
        } else {
          const float* X = f.layer[l - 1].act;
          const auto load_a = loader(
              [&](int n, int r) { return n == K ? float_bits(1.0f) : float_bits(X[std::size_t(r) * K + n]); },
              FloatInput<PREC>{});
          tile_chain<kCM, kCN, kCK, kCTM, kCTN, false, false>(acc, m0, n0, N, K + 1, 0, rows, load_dz, load_a, As,
                                                              Bs);
        }
#pragma unroll
        for (int i = 0; i < kCTM; ++i)
#pragma unroll
          for (int j = 0; j < kCTN; ++j) {
            if (at[i][j] == ~std::size_t(0)) continue;
            adam_element(pp[i][j], pm[i][j], pv[i][j], acc[i][j], alpha, f.b1, f.b2, f.eps);  // as adam_kernel
            f.params[at[i][j]] = pp[i][j];
            f.m[at[i][j]] = pm[i][j];
            f.v[at[i][j]] = pv[i][j];
          }
        // This tile's parameters are the next step's: count it (layer 0's also per 32 units, for
        // the phase-A items that read those W0 rows).
        if (l == 0) dep_signal(c0_ready(s & 1) + m0 / kCM);
        dep_signal(c_done(s & 1));
      }
    }
    if (s + 1 < steps) {
      cp_async_wait<0>();  // this thread's copies of step s + 1's indices; the barrier below, everyone's
      if constexpr (BARRIERS)
        grid.sync();  // (comparison only)
      else
        __syncthreads();  // (no grid barrier: the next step's items wait on the counters above)
    }
  }
  // The launch's last phase-C set has no waits on it: block 0 waits for it to fill, then zeroes it,
  // so that every counter is 0 when the launch ends.
  if (steps > 0 && c_counts && blockIdx.x == 0) {
    const int last = (steps - 1) & 1;
    dep_wait(c_done(last), c_target);
    for (int i = tid; i < ready_c0(N0); i += kT) c0_ready(last)[i] = 0;
    if (tid == 0) *c_done(last) = 0;
  }
  // Every block read the counters before its first barrier, and block 0 is past them all.
  if (blockIdx.x == 0 && tid == 0) {
    f.counters->step = c0.step + steps;
    f.counters->batch = c0.batch + steps;
  }
}

// Evaluation, fusing every layer's forward with softmax_xent's loss and hit count (no gradient).
// Reads params (W_l [N_l, K_l], b_l [N_l]), images [n, K0] uint8, labels [n] at rows first ..
// first+n-1; writes block_loss/block_hit [blocks] (scratch), *done, and adds to *e.metrics.
// kER consecutive rows a block, every layer forward (no dropout) with the rows'
// activations in shared memory, then the rows' loss and hits; the last block to finish adds the
// blocks' sums to *e.metrics in block order. Layer 0 is one full-depth FMA chain per output (no
// split), as the graph path's dense_forward, so the same logits bit for bit.
constexpr int kER = 32;

template <GemmPrecision PREC>
__global__ void __launch_bounds__(kT) fused_eval_kernel(const FusedStep f, const FusedEval e, int64_t first, int n) {
  extern __shared__ float4 eval_smem[];
  float* smem = reinterpret_cast<float*>(eval_smem);
  const int tid = int(threadIdx.x);
  const int L = f.layers, K0 = f.layer[0].in, N0 = f.layer[0].out;
  const int r0 = int(blockIdx.x) * kER, nr = n - r0 < kER ? n - r0 : kER;
  double* s_loss = reinterpret_cast<double*>(smem);
  uint32_t* s_hit = reinterpret_cast<uint32_t*>(s_loss + kER);
  float* As = reinterpret_cast<float*>(s_hit + kER);
  float* Bs = As + kCK * (kCM + 1);
  float* act = Bs + kCK * (kCN + 1);  // layer l's [kER, out_l] (row stride b_stride(out_l)) follows layer l-1's

  const uint8_t* img = f.images + (first + r0) * K0;
  const float* W0 = f.params + f.layer[0].w_offset;
  const float* b0 = f.params + f.layer[0].b_offset;
  const auto load_x = loader([&](int r, int k) { return uint32_t(img[std::size_t(r) * K0 + k]); }, PixelInput<PREC>{});
  const auto load_w = loader([&](int u, int k) { return float_bits(W0[std::size_t(u) * K0 + k]); }, FloatInput<PREC>{});
  constexpr int RM = kCM / kCTM, RN = kCN / kCTN;
  static_assert(kCM == kER, "one row tile a block");
  for (int n0 = 0; n0 < N0; n0 += kCN) {
    float acc[kCTM][kCTN];
    tile_chain<kCM, kCN, kCK, kCTM, kCTN, true, true>(acc, 0, n0, nr, N0, 0, K0, load_x, load_w, As, Bs);
#pragma unroll
    for (int i = 0; i < kCTM; ++i)
#pragma unroll
      for (int j = 0; j < kCTN; ++j) {
        const int r = micro_index<kCTM, false>(tid / RN, i, RM), u = n0 + micro_index<kCTN, false>(tid % RN, j, RN);
        if (r < nr && u < N0) {
          const float z = acc[i][j] + b0[u];
          act[r * b_stride(N0) + u] = round_gemm_input<PREC>(z > 0.0f ? z : 0.0f);  // (the next GEMM's input only)
        }
      }
  }
  __syncthreads();
  float* prev = act;
  for (int l = 1; l < L; ++l) {
    const FusedLayer& ly = f.layer[l];
    const int K = ly.in, N = ly.out;
    const float* W = f.params + ly.w_offset;
    const float* b = f.params + ly.b_offset;
    float* out = prev + round4(std::size_t(kER) * std::size_t(b_stride(K)));
    // Rows at phase B's stride (b_stride): a warp's 32 rows of one unit read distinct banks (the
    // bank model, tests/gpu/emu/banks.cpp, counted 32 wavefronts a read at stride K = 128), and
    // where K and the weights' offset are multiples of 4, 4 k's a load (the same chain, k ascending).
    const bool vec = K % 4 == 0 && ly.w_offset % 4 == 0;
    for (int o = tid; o < kER * N; o += kT) {
      const int r = o % kER, u = o / kER;
      if (r >= nr) continue;
      const float* a = prev + r * b_stride(K);
      const float* w = W + std::size_t(u) * K;
      float acc = 0.0f;
      if (vec) {
        acc = dot_rows4(a, w, K, acc, [](float v) { return round_gemm_input<PREC>(v); });
      } else {
        for (int k = 0; k < K; ++k) acc = fmaf(a[k], round_gemm_input<PREC>(w[k]), acc);
      }
      const float z = acc + b[u];
      out[r * b_stride(N) + u] = l + 1 < L ? round_gemm_input<PREC>(z > 0.0f ? z : 0.0f) : z;
    }
    __syncthreads();
    prev = out;
  }
  const int C = f.layer[L - 1].out;
  if (tid < nr) {  // xent_row (step_math.cuh), as softmax_xent_kernel, without the gradient
    const XentRow row = xent_row(prev + tid * b_stride(C), C, f.labels[first + r0 + tid], 1.0f, nullptr, nullptr);
    s_loss[tid] = row.loss;
    s_hit[tid] = row.hit ? 1u : 0u;
  }
  __syncthreads();
  if (tid == 0) {
    double loss = 0;
    uint32_t hits = 0;
    for (int r = 0; r < nr; ++r) {
      loss += s_loss[r];
      hits += s_hit[r];
    }
    e.block_loss[blockIdx.x] = loss;
    e.block_hit[blockIdx.x] = hits;
    __threadfence();  // the block's sums before its count
    if (atomicAdd(e.done, 1u) == gridDim.x - 1) {  // the last block: every other block's sums are out
      __threadfence();
      const volatile double* bl = e.block_loss;
      const volatile uint32_t* bh = e.block_hit;
      double total = 0;
      unsigned long long correct = 0;
      for (unsigned b = 0; b < gridDim.x; ++b) {
        total += bl[b];
        correct += bh[b];
      }
      e.metrics->loss_sum += total;
      e.metrics->correct += correct;
      *e.done = 0;
    }
  }
}

std::size_t eval_smem_bytes(const std::vector<int>& widths) {
  std::size_t floats = tile_floats(kCM, kCN, kCK);
  for (std::size_t l = 1; l < widths.size(); ++l) floats += round4(std::size_t(kER) * std::size_t(b_stride(widths[l])));
  return (kER * (sizeof(double) + sizeof(uint32_t)) + floats * sizeof(float) + 15) / 16 * 16;
}

SmemLayout layout_of(const std::vector<int>& widths, int batch) {
  return smem_layout(widths.data(), int(widths.size()) - 1, batch, kFusedMaxSmem);
}

std::size_t smem_bytes(const std::vector<int>& widths, int batch) { return layout_of(widths, batch).total * sizeof(float); }

template <class Kernel>
void allow_smem(Kernel* kernel, std::size_t bytes) {
  if (bytes > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

using StepKernel = void (*)(const FusedStep, int, int);
using EvalKernel = void (*)(const FusedStep, const FusedEval, int64_t, int);
StepKernel step_kernel(GemmPrecision prec, bool grid_barriers = false) {
  if (grid_barriers) {
    MNIST_CHECK(prec == GemmPrecision::FP32, "the fused kernel's grid barriers (a comparison knob) exist at fp32 only");
    return fused_step_kernel<GemmPrecision::FP32, true>;
  }
  switch (prec) {
    case GemmPrecision::TF32: return fused_step_kernel<GemmPrecision::TF32>;
    case GemmPrecision::BF16: return fused_step_kernel<GemmPrecision::BF16>;
    default: return fused_step_kernel<GemmPrecision::FP32>;
  }
}
EvalKernel eval_kernel(GemmPrecision prec) {
  switch (prec) {
    case GemmPrecision::TF32: return fused_eval_kernel<GemmPrecision::TF32>;
    case GemmPrecision::BF16: return fused_eval_kernel<GemmPrecision::BF16>;
    default: return fused_eval_kernel<GemmPrecision::FP32>;
  }
}

}  // namespace

std::string fused_step_unsupported(const std::vector<int>& widths, int batch) {
  const int layers = int(widths.size()) - 1;
  if (layers < 2) return "the fused kernel needs at least one hidden layer";
  if (layers > kFusedMaxLayers)
    return cat("the fused kernel holds at most ", kFusedMaxLayers - 1, " hidden layers, the model has ", layers - 1);
  for (int w : widths)
    if (w <= 0) return "the fused kernel needs positive widths";
  if (batch <= 0) return "the fused kernel needs a positive batch size";
  const std::size_t bytes = smem_bytes(widths, batch);
  if (bytes > kFusedMaxSmem)
    return cat("the fused kernel keeps ", kFusedRows, " rows of every layer and the batch's ", batch,
               " image indices in shared memory: these widths and this batch size need ", bytes / 1024,
               " KiB, more than its ", kFusedMaxSmem / 1024, " KiB");
  return {};
}

std::size_t fused_step_smem_bytes(const std::vector<int>& widths, int batch) { return smem_bytes(widths, batch); }

std::size_t fused_step_partial_floats(const std::vector<int>& widths, int batch) {
  const int S = widths.size() >= 2 ? a_splits(widths[0]) : 1;
  return S > 1 ? std::size_t(S) * std::size_t(batch) * std::size_t(widths[1]) : 0;
}

int fused_step_ready_counters(const std::vector<int>& widths, int batch) {
  return ready_total(std::max(batch, 1), widths.size() >= 2 ? widths[1] : 1);
}

int fused_step_grid(const std::vector<int>& widths, int batch, int max_blocks, GemmPrecision prec) {
  int dev = 0, coop = 0, sms = 0, per_sm = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
  if (!coop) return 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const std::size_t bytes = smem_bytes(widths, batch);
  const StepKernel kernel = step_kernel(prec);
  allow_smem(kernel, bytes);
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kT, bytes));
  if (per_sm <= 0) return 0;
  // One block per SM: every phase has at most ~130 items at batch 128, and a barrier's cost grows
  // with the blocks that arrive at it.
  int blocks = sms;
  if (max_blocks > 0) blocks = std::min(blocks, max_blocks);
  return blocks;
}

void fused_train_steps(const FusedStep& f, int steps, int rows, int blocks, cudaStream_t stream) {
  MNIST_CHECK(f.layers >= 2 && f.layers <= kFusedMaxLayers, "fused_train_steps: ", f.layers, " layers");
  MNIST_CHECK(rows >= 1 && rows <= f.stride, "fused_train_steps: rows ", rows, " of a batch of ", f.stride);
  MNIST_CHECK(blocks >= 1, "fused_train_steps: ", blocks, " blocks");
  MNIST_CHECK(f.params && f.m && f.v && f.images && f.labels && f.order && f.row_loss && f.row_hit && f.metrics &&
                  f.counters && f.ready && (a_splits(f.layer[0].in) == 1 || f.partial),
              "fused_train_steps: null pointer");
  std::vector<int> widths{f.layer[0].in};
  for (int l = 0; l < f.layers; ++l) {
    MNIST_CHECK(f.layer[l].dz && (l + 1 == f.layers || f.layer[l].act), "fused_train_steps: null layer buffer");
    MNIST_CHECK(l == 0 || f.layer[l].in == f.layer[l - 1].out, "fused_train_steps: layer widths do not chain");
    widths.push_back(f.layer[l].out);
  }
  if (steps <= 0) return;
  const std::size_t bytes = smem_bytes(widths, f.stride);
  MNIST_CHECK(bytes <= kFusedMaxSmem, "fused_train_steps: ", bytes, " bytes of shared memory");
  const StepKernel kernel = step_kernel(f.precision, f.grid_barriers);
  allow_smem(kernel, bytes);
  FusedStep arg = f;
  void* args[] = {&arg, &steps, &rows};
  CUDA_CHECK(cudaLaunchCooperativeKernel(kernel, dim3(unsigned(blocks)), dim3(unsigned(kT)), args, bytes, stream));
  MNIST_LAUNCH_CHECK(stream);
}

bool fused_eval_supported(const std::vector<int>& widths) {
  return fused_step_unsupported(widths, 1).empty() && eval_smem_bytes(widths) <= kFusedMaxSmem;
}

int fused_eval_blocks(int n) { return (n + kER - 1) / kER; }

void fused_evaluate(const FusedStep& f, const FusedEval& e, int64_t first, int n, cudaStream_t stream) {
  MNIST_CHECK(f.layers >= 2 && f.layers <= kFusedMaxLayers && first >= 0 && n >= 0, "fused_evaluate: invalid sizes");
  if (n == 0) return;
  MNIST_CHECK(f.params && f.images && f.labels && e.block_loss && e.block_hit && e.done && e.metrics,
              "fused_evaluate: null pointer");
  std::vector<int> widths{f.layer[0].in};
  for (int l = 0; l < f.layers; ++l) widths.push_back(f.layer[l].out);
  const std::size_t bytes = eval_smem_bytes(widths);
  MNIST_CHECK(bytes <= kFusedMaxSmem, "fused_evaluate: ", bytes, " bytes of shared memory");
  const EvalKernel kernel = eval_kernel(f.precision);
  allow_smem(kernel, bytes);
  kernel<<<unsigned(fused_eval_blocks(n)), kT, bytes, stream>>>(f, e, first, n);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
