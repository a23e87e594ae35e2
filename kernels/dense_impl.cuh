// The dense GEMMs' device code and launch templates (kernels/dense.cu's private header): the tiles,
// their kernels and the per-precision launchers launch_gemm_as / launch_backward_as / prepare_tiles.
// Each precision's forward and backward instantiations are compiled apart (dense_<precision>_forward.cu
// and _backward.cu: the extern templates at the end), so that the six build in parallel; dense.cu holds the host
// dispatch, the split-K plan, the autotuner and the public functions of kernels/dense.cuh.
#pragma once

#include "kernels/dense.cuh"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "kernels/cluster.cuh"
#include "kernels/cp_async.cuh"
#include "kernels/gather.cuh"
#include "kernels/gemm_round.cuh"
#include "kernels/load_l2.cuh"
#include "kernels/curand_draw.cuh"
#include "kernels/mma.cuh"
#include "kernels/pdl.cuh"
#include "kernels/philox.hpp"
#include "kernels/step_math.cuh"
#include "kernels/wgmma.cuh"
#include "runtime/cuda_check.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda::dense_impl {

// The three GEMMs of a dense layer, C [M,N] = Σ_k A(m,k) · B(n,k):
//   Forward  Y  = X · Wᵀ    M = batch, N = out, K = in;   A = X  [M,K] (k fastest), B = W [N,K] (k fastest)
//   Data     dX = dZ · W    M = batch, N = in,  K = out;  A = dZ [M,K] (k fastest), B = W [K,N] (n fastest)
//   Weight   dW = dZᵀ · X   M = out,   N = in+1, K = batch; A = dZ [K,M] (m fastest), B = X [K,N] (n fastest)
// Each has its own epilogue (bias + ReLU + dropout; ReLU/dropout mask; dW and the db column).
enum class Kind { Forward, Data, Weight };
constexpr unsigned kRoundedA = 1, kRoundedB = 2;  // GemmParams::rounded

struct GemmParams {
  int M = 0, N = 0, K = 0;
  const float* a = nullptr;
  int lda = 0;
  const float* b = nullptr;
  int ldb = 0;
  int ones_col = -1;  // Weight: column n == ones_col of B is all ones (the bias-gradient column)
  float* out = nullptr;
  int ldo = 0;
  // Forward epilogue
  const float* bias = nullptr;
  bool relu = false;
  bool dropout = false;
  uint32_t threshold = 0;
  float scale = 1.0f;
  uint64_t seed = 0, step = 0;
  const TrainCounters* counters = nullptr;
  uint32_t layer = 0;
  // Data epilogue
  const float* mask = nullptr;
  float mask_scale = 1.0f;
  // Weight epilogue
  float* db = nullptr;
  // kRoundedA / kRoundedB: that float operand's values are already rounded to the GEMM's precision
  // by whoever wrote them (dense_weight_partials' dz_rounded / x_rounded; dense_forward's and
  // dense_backward_data's w_rounded: W, the engine's rounded copy), so PipeTile and WgmmaTile skip
  // their rounding pass over them (TF32; at BF16 and FP32 PipeTile's pass does nothing, WgmmaTile's
  // BF16 pass writes the bf16 copy and always runs). Never set for an operand read from the images:
  // their expansion is the same pass.
  unsigned rounded = 0;
  // Split-K (Weight, and Forward over a deep K): when split_k > 0, block split z sums k in
  // [z·split_k, min(K, (z+1)·split_k)) and stores its raw partial at partial[(z·M + m)·N + n]; a
  // second kernel sums the partials in the fixed order z = 0, 1, ... and applies the epilogue, or,
  // with tickets, the last of a tile's blocks to finish does it (finish_split_tile).
  int split_k = 0;
  float* partial = nullptr;
  unsigned* tickets = nullptr;  // one counter per output tile, 0 between launches
  // X read in place from the uint8 images (DenseInput, dense.cuh), when images is set: the A
  // operand of a Forward GEMM (a = null, lda = K), the B operand of a Weight GEMM (b = null, ldb =
  // K). Element (r, c) of X = pixel_value(images[src(r)·ld + c]) (image_row).
  const uint8_t* images = nullptr;
  RowIndex rows;  // src(r) (kernels/row_index.cuh)
};

// Whether GEMM KIND reads its A (operand 0) or B (operand 1) from the images.
template <Kind KIND>
__host__ __device__ inline bool images_a(const GemmParams& p) {
  return KIND == Kind::Forward && p.images;
}
template <Kind KIND>
__host__ __device__ inline bool images_b(const GemmParams& p) {
  return KIND == Kind::Weight && p.images;
}
// The first X row's position in idx (or in the images without idx): read once per block.
__device__ __forceinline__ int64_t image_base(const GemmParams& p) { return row_base(p.rows); }
// Row r of X in the images (ld = K pixels a row).
__device__ __forceinline__ const uint8_t* image_row(const GemmParams& p, int64_t base, int r, int ld) {
  return p.images + source_row(p.rows, base, r) * ld;
}

__host__ __device__ inline int split_count(const GemmParams& p) {
  return p.split_k > 0 ? (p.K + p.split_k - 1) / p.split_k : 1;
}


// Which element of a [ROWS][BK] k-fast operand slice the e-th load takes, stored transposed at
// S[kk][row] (row stride STRIDE floats). A warp's 32 loads cover MW rows x KW k's: with MW =
// gcd(STRIDE mod 32, 32) (32 for a multiple of 32) and KW = 32 / MW, the 32 stores kk·STRIDE + row
// fall in 32 distinct banks (STRIDE = MW·odd: the kk·odd are distinct mod KW). A warp along k alone
// (the plain e / BK, e % BK) stores at kk·STRIDE: 8 ways for MmaTile's TF32 stride ≡ 8 (mod 32), 4 for
// BF16's ≡ 4 (the bank model, tests/gpu/emu/banks.cpp, counted them). Global reads: MW rows of KW
// consecutive k's (32 bytes a row for BF16, 16 for TF32). Where the shape does not split so (BK < KW,
// ROWS % MW), the plain order.
template <int ROWS, int BK, int STRIDE, int THREADS>
struct KFastOrder {
  static constexpr int P = STRIDE % 32 == 0 ? 32 : STRIDE % 32;
  static constexpr int MW = (P & -P) < 32 ? (P & -P) : 32, KW = 32 / MW;  // MW: P's largest power-of-2 factor
  static constexpr bool kBlocked = THREADS % 32 == 0 && BK % KW == 0 && ROWS % MW == 0 && MW > 1;
  __device__ __forceinline__ static void at(int e, int& row, int& kk) {
    if constexpr (kBlocked) {
      const int w = e / 32, lane = e % 32;
      row = (w % (ROWS / MW)) * MW + lane / KW;
      kk = (w / (ROWS / MW)) * KW + lane % KW;
    } else {
      row = e / BK;
      kk = e % BK;
    }
  }
};

// Loads the K slice [k0, k0+BK) of the block's A and B tiles into shared memory as As[k][m],
// Bs[k][n] (row strides SA, SB), each element rounded to PREC's input format (kernels/precision.hpp;
// the masking of A comes first, and 0 and the ones column are exact in every format). Loads walk
// global memory along its contiguous dimension (k-fast operands in KFastOrder's warp blocks);
// out-of-range elements (row, column or k tails) load as 0. THREADS threads share the work.
// In two passes: every element's raw 32 bits first (a float's bits, or a pixel's byte from the
// images; 0 outside; the ones column as 1.0f's bits or the byte 255, pixel_value(255) being 1.0f
// exactly), then each made into its input and stored. With the conversion and the store right
// after each load, a thread's loads of a slice went out one round trip at a time (the seventeenth
// session's reading of the SASS: 24 of SimtTile 32x32's 33 loads a slice waited on the one before).
template <int BM, int BN, int BK, int THREADS, Kind KIND, GemmPrecision PREC, int SA, int SB>
__device__ __forceinline__ void load_slice(const GemmParams& p, int m0, int n0, int k0, int k_end,
                                           float (&As)[BK][SA], float (&Bs)[BK][SB]) {
  constexpr bool A_KFAST = KIND != Kind::Weight;
  constexpr bool B_KFAST = KIND == Kind::Forward;
  static_assert((BM * BK) % THREADS == 0 && (BN * BK) % THREADS == 0, "tile loads must split evenly");
  constexpr int NA = BM * BK / THREADS, NB = BN * BK / THREADS;
  const int tid = int(threadIdx.x);
  const int64_t base = p.images ? image_base(p) : 0;
  const bool a_img = images_a<KIND>(p), b_img = images_b<KIND>(p);
  auto a_at = [&](int it, int& mm, int& kk) {
    const int e = tid + it * THREADS;
    mm = e % BM, kk = e / BM;
    if constexpr (A_KFAST) KFastOrder<BM, BK, SA, THREADS>::at(e, mm, kk);
  };
  auto b_at = [&](int it, int& nn, int& kk) {
    const int e = tid + it * THREADS;
    nn = e % BN, kk = e / BN;
    if constexpr (B_KFAST) KFastOrder<BN, BK, SB, THREADS>::at(e, nn, kk);
  };
  uint32_t ra[NA], rb[NB];
#pragma unroll
  for (int it = 0; it < NA; ++it) {
    int mm, kk;
    a_at(it, mm, kk);
    const int m = m0 + mm, k = k0 + kk;
    uint32_t v = 0u;
    if (m < p.M && k < k_end) {
      if (a_img) {
        v = image_row(p, base, m, p.lda)[k];
      } else {
        const std::size_t idx = A_KFAST ? std::size_t(m) * p.lda + k : std::size_t(k) * p.lda + m;
        v = float_bits(p.a[idx]);
      }
    }
    ra[it] = v;
  }
#pragma unroll
  for (int it = 0; it < NB; ++it) {
    int nn, kk;
    b_at(it, nn, kk);
    const int n = n0 + nn, k = k0 + kk;
    uint32_t v = 0u;
    if (n < p.N && k < k_end) {
      if (n == p.ones_col)
        v = b_img ? 255u : float_bits(1.0f);
      else if (b_img)
        v = image_row(p, base, k, p.ldb)[n];
      else
        v = float_bits(p.b[B_KFAST ? std::size_t(n) * p.ldb + k : std::size_t(k) * p.ldb + n]);
    }
    rb[it] = v;
  }
#pragma unroll
  for (int it = 0; it < NA; ++it) {
    int mm, kk;
    a_at(it, mm, kk);
    As[kk][mm] = gemm_input_from_raw<PREC>(ra[it], a_img);
  }
#pragma unroll
  for (int it = 0; it < NB; ++it) {
    int nn, kk;
    b_at(it, nn, kk);
    Bs[kk][nn] = gemm_input_from_raw<PREC>(rb[it], b_img);
  }
}

// The step counter of the dropout mask (read once per tile: the graph path keeps it on the device).
template <Kind KIND>
__device__ __forceinline__ uint64_t epilogue_step(const GemmParams& p) {
  if constexpr (KIND == Kind::Forward)
    if (p.dropout) return p.counters ? uint64_t(p.counters->step) : p.step;
  return 0;
}

// Writes C(m, n) = v (in range) through KIND's epilogue, or, for a split-K block (p.partial), the raw
// partial sum of split z.
template <Kind KIND>
__device__ __forceinline__ void store_result(const GemmParams& p, int z, int m, int n, float v, float x, uint64_t step);

// The value KIND's epilogue reads from global memory for output (m, n) (in range): Forward the bias
// b[n], Data the mask at (m, n) (0 without one), Weight nothing. (A split-K piece, p.partial, stores
// its raw sum and reads none: the tiles pass 0 there, the pass that adds the pieces reads it.)
// The tiles read every one of a thread's inputs before its first store, then store: a load after
// a store waits for it (the compiler cannot tell that the store leaves the next input alone), so
// reading each input just before its own output's store made a thread's epilogue one global round
// trip per output, in sequence -- 32 to 64 of them in the 128 x 128 tiles (profiling/sass.py's
// "serial global loads"; NOTES "Epilogue loads in sequence").
template <Kind KIND>
__device__ __forceinline__ float epilogue_input(const GemmParams& p, int m, int n) {
  if constexpr (KIND == Kind::Forward)
    return p.bias[n];
  else if constexpr (KIND == Kind::Data)
    return p.mask ? p.mask[std::size_t(m) * p.ldo + n] : 0.0f;
  else
    return 0.0f;
}

// Writes C(m, n) = v (in range) through KIND's epilogue: bias + ReLU + dropout (Forward), the
// ReLU/dropout mask of the previous layer (Data), dW or the db column (Weight).
// The value KIND's epilogue writes to p.out[o] (o = m·ldo + n) for the sum v and its input x =
// epilogue_input(p, m, n) (not a Weight GEMM's ones column, which goes to db).
template <Kind KIND>
__device__ __forceinline__ float output_value(const GemmParams& p, int m, int n, float v, float x, uint64_t step) {
  if constexpr (KIND == Kind::Forward)
    return dense_unit(v, x, p.relu, p.dropout ? p.threshold : 0u, p.scale, p.seed, step, p.layer,
                      uint64_t(m) * uint64_t(p.N) + uint64_t(n));
  else if constexpr (KIND == Kind::Data)
    return p.mask ? (x > 0.0f ? v * p.mask_scale : 0.0f) : v;
  else
    return v;
}

// output_value of the V outputs (m, n .. n+V-1) (V = 2 or 4; all in range, none a Weight GEMM's ones
// column): the same bits, with the forward's dropout drawn once per Philox block (dense_units).
template <Kind KIND, int V>
__device__ __forceinline__ void output_values(float (&w)[V], const GemmParams& p, int m, int n, const float (&v)[V],
                                              const float (&x)[V], uint64_t step) {
  if constexpr (KIND == Kind::Forward) {
    dense_units<V>(w, v, x, p.relu, p.dropout ? p.threshold : 0u, p.scale, p.seed, step, p.layer,
                   uint64_t(m) * uint64_t(p.N) + uint64_t(n));
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q) w[q] = output_value<KIND>(p, m, n + q, v[q], x[q], step);
  }
}

template <Kind KIND>
__device__ __forceinline__ void store_output(const GemmParams& p, int m, int n, float v, float x, uint64_t step) {
  if constexpr (KIND == Kind::Weight) {
    if (n == p.ones_col) {
      p.db[m] = v;
      return;
    }
  }
  p.out[std::size_t(m) * p.ldo + n] = output_value<KIND>(p, m, n, v, x, step);
}

template <Kind KIND>
__device__ __forceinline__ void store_result(const GemmParams& p, int z, int m, int n, float v, float x, uint64_t step) {
  if (p.partial)
    p.partial[(std::size_t(z) * p.M + m) * p.N + n] = v;
  else
    store_output<KIND>(p, m, n, v, x, step);
}

// store_result for the outputs (m, n .. n+V-1) that are in range (n < p.N; V = 2 or 4): where all
// V are, and their place is aligned to V floats, the same values as one 8- or 16-byte store, else
// one at a time. The tiles' threads hold consecutive columns (the FP32 tile 4, an mma fragment 2):
// a warp's scalar stores touched 4 rows x 8 groups of 16 bytes (FP32 tile) or 8 rows x 4 pairs
// (mma), 16 or 8 sectors for 128 bytes (the emulation's sector model, tests/gpu/emu/banks.cpp); one
// vector store covers V times the bytes in the same sectors.
template <int V>
struct StoreVec;
template <>
struct StoreVec<2> {
  __device__ __forceinline__ static void put(float* d, const float (&w)[2]) {
    *reinterpret_cast<float2*>(d) = make_float2(w[0], w[1]);
  }
};
template <>
struct StoreVec<4> {
  __device__ __forceinline__ static void put(float* d, const float (&w)[4]) {
    *reinterpret_cast<float4*>(d) = make_float4(w[0], w[1], w[2], w[3]);
  }
};
template <Kind KIND, int V>
__device__ __forceinline__ void store_results(const GemmParams& p, int z, int m, int n, const float (&v)[V],
                                              const float (&x)[V], uint64_t step) {
  const auto aligned = [](const float* q) { return (reinterpret_cast<std::uintptr_t>(q) & (4u * V - 1u)) == 0; };
  if (n + V <= p.N) {
    if (p.partial) {
      float* d = p.partial + (std::size_t(z) * p.M + m) * p.N + n;
      if (aligned(d)) {
        StoreVec<V>::put(d, v);
        return;
      }
    } else if (KIND != Kind::Weight || p.ones_col < n || p.ones_col >= n + V) {
      const std::size_t o = std::size_t(m) * p.ldo + n;
      if (aligned(p.out + o)) {
        float w[V];
        output_values<KIND, V>(w, p, m, n, v, x, step);
        StoreVec<V>::put(p.out + o, w);
        return;
      }
    }
  }
#pragma unroll
  for (int q = 0; q < V; ++q)
    if (n + q < p.N) store_result<KIND>(p, z, m, n + q, v[q], x[q], step);
}

// FP32 on the SIMT cores. One block computes the BM x BN tile of C at (m0, n0); each of its
// (BM/TM)*(BN/TN) threads a TM x TN micro-tile whose rows are tr + i*(BM/TM) and columns
// tc + j*(BN/TN) (strided, so that the shared-memory reads of B and the global stores of the
// epilogue are consecutive across a warp). K advances in BK slices (load_slice, one float of
// padding per row). Every thread of the block must call it (it synchronises the block).
template <int BM_, int BN_, int BK, int TM, int TN>
struct SimtTile {
  static constexpr int BM = BM_, BN = BN_, THREADS = (BM / TM) * (BN / TN);
  static constexpr bool kImages = true;  // X read in place from the images (GemmParams::images): load_slice reads them
  static constexpr bool kPipelined = false;
  struct Smem {
    float As[BK][BM + 1];
    float Bs[BK][BN + 1];
  };
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split into micro-tiles");

  template <Kind KIND>
  __device__ static void run(const GemmParams& p, int m0, int n0, int z, Smem& s) {
    constexpr int RM = BM / TM, RN = BN / TN;
    const int tid = int(threadIdx.x);
    const int tr = tid / RN, tc = tid % RN;

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    const int k_begin = z * p.split_k;
    const int k_end = p.split_k && k_begin + p.split_k < p.K ? k_begin + p.split_k : p.K;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
      load_slice<BM, BN, BK, THREADS, KIND, GemmPrecision::FP32>(p, m0, n0, k0, k_end, s.As, s.Bs);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float av[TM], bv[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) av[i] = s.As[kk][tr + i * RM];
#pragma unroll
        for (int j = 0; j < TN; ++j) bv[j] = s.Bs[kk][tc + j * RN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }

    const uint64_t step = epilogue_step<KIND>(p);
    float x[TM][TN];  // the epilogue's inputs, all read before the first store (epilogue_input)
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int m = m0 + tr + i * RM, n = n0 + tc + j * RN;
        x[i][j] = !p.partial && m < p.M && n < p.N ? epilogue_input<KIND>(p, m, n) : 0.0f;
      }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + tr + i * RM;
      if (m >= p.M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int n = n0 + tc + j * RN;
        if (n < p.N) store_result<KIND>(p, z, m, n, acc[i][j], x[i][j], step);
      }
    }
  }
};

// A chunk of 4 elements that is not one whole vector load or copy (an x or k tail, the ones
// column), loaded element by element: along k from (xc, kc) when KFAST, else along x; 0 outside the
// GEMM (k >= k_end, x >= x_end), `one` in the ones column, element (x, k) of the source (get) below
// x_valid. Floats for SimtVecTile and PipeTile's copier; the images' bytes (tail_bytes) for the
// copiers that expand them on chip.
template <bool KFAST, class T, class Get>
__device__ __forceinline__ void tail_elements(T (&v)[4], int xc, int kc, int k_end, int x_valid, int x_end, int ones,
                                              T one, const Get& get) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int xj = KFAST ? xc : xc + j, kj = KFAST ? kc + j : kc;
    v[j] = T(0);
    if (kj < k_end && xj < x_end) {
      if (xj == ones)
        v[j] = one;
      else if (xj < x_valid)
        v[j] = get(xj, kj);
    }
  }
}
template <bool KFAST, class Get>
__device__ __forceinline__ float4 tail_chunk(int xc, int kc, int k_end, int x_valid, int x_end, int ones, const Get& get) {
  float v[4];
  tail_elements<KFAST>(v, xc, kc, k_end, x_valid, x_end, ones, 1.0f, get);
  return make_float4(v[0], v[1], v[2], v[3]);
}
// The images' bytes of such a chunk, stored at d (the first 4 bytes of its slot): q points at the
// chunk's first pixel (KFAST: pixel kc of row xc; otherwise pixel xc of row kc), read only inside;
// byte 1 marks the ones column (the expand writes 1.0f there).
template <bool KFAST>
__device__ __forceinline__ void tail_bytes(float* d, const uint8_t* q, int xc, int kc, int k_end, int x_valid,
                                           int x_end, int ones) {
  uint8_t v[4];
  tail_elements<KFAST>(v, xc, kc, k_end, x_valid, x_end, ones, uint8_t(1),
                       [&](int x, int k) { return q[KFAST ? k - kc : x - xc]; });
  uchar4 u;
  u.x = v[0], u.y = v[1], u.z = v[2], u.w = v[3];
  *reinterpret_cast<uchar4*>(d) = u;
}

// ... of a float operand: element (x, k) at src[x·ld + k] (KFAST) or src[k·ld + x].
template <bool KFAST>
__device__ __forceinline__ float4 load_tail_chunk(const float* src, int ld, int xc, int kc, int k_end, int x_valid,
                                                  int x_end, int ones) {
  return tail_chunk<KFAST>(xc, kc, k_end, x_valid, x_end, ones, [&](int x, int k) {
    return src[KFAST ? std::size_t(x) * ld + k : std::size_t(k) * ld + x];
  });
}

// ... of an operand read from the images (GemmParams::images): element (x, k) is row x (KFAST: the
// Forward GEMM's A) or row k (otherwise: the Weight GEMM's B) of X, pixel k resp. x; base:
// image_base(p).
template <bool KFAST>
__device__ __forceinline__ float4 load_tail_chunk_images(const GemmParams& p, int64_t base, int ld, int xc, int kc,
                                                         int k_end, int x_valid, int x_end, int ones) {
  return tail_chunk<KFAST>(xc, kc, k_end, x_valid, x_end, ones, [&](int x, int k) {
    return KFAST ? pixel_value(image_row(p, base, x, ld)[k]) : pixel_value(image_row(p, base, k, ld)[x]);
  });
}

// Whether SimtVecTile may load its chunks of 4 floats as one float4: both operands' bases and row
// strides, and so every chunk start (split pieces start at multiples of 4 as well), 16-byte aligned;
// with X from the images (GemmParams::images) its chunks of 4 pixels as one 4-byte load: the images'
// base 4-byte aligned (its row stride, K = lda or ldb, is a multiple of 4 above).
__host__ __device__ inline bool vec_loads_ok(const GemmParams& p) {
  return reinterpret_cast<std::uintptr_t>(p.a) % 16 == 0 && reinterpret_cast<std::uintptr_t>(p.b) % 16 == 0 &&
         reinterpret_cast<std::uintptr_t>(p.images) % 4 == 0 && p.lda % 4 == 0 && p.ldb % 4 == 0 &&
         p.split_k % 4 == 0;
}

// The 4 pixels of one 4-byte load (the first at the lowest address: the low byte) as the GEMMs see
// them (pixel_value: gather_batch's floats).
__device__ __forceinline__ float4 pixel_values(const uint32_t u) {
  return make_float4(pixel_value(uint8_t(u)), pixel_value(uint8_t(u >> 8)), pixel_value(uint8_t(u >> 16)),
                     pixel_value(uint8_t(u >> 24)));
}

// FP32 on the SIMT cores, the tile of the large GEMMs (the classic register-blocked SGEMM). One
// block computes the BM x BN tile of C at (m0, n0); each of its (BM/TM)*(BN/TN) threads a TM x TN
// micro-tile of TM/4 x TN/4 groups of 4 x 4: rows g·(BM/TM·4) + 4·tr + i, columns h·(BN/TN·4) +
// 4·tc + j (i, j < 4). Shared tiles are k-major, As[k][m] and Bs[k][n], so a thread reads its TM
// values of A and TN of B at one k as TM/4 + TN/4 float4 loads: TM·TN FMAs per TM/4 + TN/4 shared
// loads (4x4: 8 FMAs per LDS.128, 2 per float read; 8x8: 16 and 4; SimtTile: 2 per scalar load).
// A warp is 4 x 8 threads (tr, tc), so one float4 load of the warp
// touches 4 (A) or 8 (B) distinct consecutive float4s: one shared-memory wavefront each.
//
// Double-buffered: the global loads of slice s+1 go into registers before the FMAs of slice s, and
// are stored to the other shared buffer after them, one barrier per slice, so a slice's load latency
// hides behind a slice of FMAs. Global loads are float4 along the operand's contiguous dimension
// (k for X, dZ, W of Forward; m or n otherwise) when `vec` holds (16-byte aligned bases, row strides
// and split starts: vec_loads_ok); a chunk of 4 that crosses a tail (row, column, k, the ones column)
// and every chunk without `vec` is loaded element by element, 0 outside, 1 in the ones column, as
// load_slice does. A k-fast chunk is stored transposed (4 scalar stores down As[k..k+3][m]), lanes
// arranged so that those stores are free of bank conflicts (fetch_chunk).
//
// X read in place from the images (GemmParams::images; Forward's A, Weight's B): a chunk is 4 pixels
// of one image row (Forward: pixels k..k+3 of row x; Weight: pixels x..x+3 of row k), one 4-byte load
// under `vec` (vec_loads_ok: images base 4-byte aligned), kept packed in a register while the slice's
// FMAs run and converted by pixel_value when stashed, so the load is in flight as a float4's is;
// tails byte by byte (as load_tail_chunk_images). Forward: a thread's chunk rows are the same
// in every slice, their image rows looked up (idx) once before the walk. Weight: a chunk's row is the
// slice's k, its idx entry loaded one slice ahead (during the previous slice's FMAs), so the pixel
// load does not wait on it. The floats stashed are gather_batch's, so the bits are the float path's.
// That path is its own instantiation, SimtVecTile<..., true> (`Images`; the launchers take it for a
// GEMM with p.images): the float path's kernels keep their registers (the images path's extra row
// pointers and packed chunks would have cost them occupancy: 79 -> 125 registers for the 64x64
// forward, ptxas sm_90a).
//
// THE BITS: every output element is the sequential fmaf chain over k = k_begin, k_begin+1, ... from
// +0 (zeros past the piece's end add +0), as in SimtTile, so the two tiles give bitwise the same
// results, also with CPU references in that order. Split-K as in PipeTile: piece z of p.split_k
// into p.partial, or, for a Forward GEMM with p.split_k but no p.partial ("folded"), every piece in
// turn, its float32 sum added into the total in the order z = 0, 1, ... from 0: bitwise the
// cross-block split plus dense_split_reduce_kernel (p.split_k must then be a multiple of BK).
// Every thread of the block must call it.
template <int BM_, int BN_, int BK, int TM, int TN, bool IMAGES = false>
struct SimtVecTile {
  static constexpr int BM = BM_, BN = BN_, RM = BM / TM, RN = BN / TN, THREADS = RM * RN;
  // X read in place from the images (GemmParams::images): by the instantiation Images, which the
  // launchers (launch_simt_tiles, launch_backward_as) run for a GEMM with p.images.
  static constexpr bool kImages = true;
  using Images = SimtVecTile<BM_, BN_, BK, TM, TN, true>;
  static constexpr int K_TILE = BK;
  static constexpr bool kPipelined = false;
  static constexpr int SA = BM + 4, SB = BN + 4;  // row strides: multiples of 4 (float4 reads)
  static_assert(BM % TM == 0 && BN % TN == 0 && TM % 4 == 0 && TN % 4 == 0, "micro-tiles of 4 x 4 groups");
  static_assert(RM % 4 == 0 && RN % 8 == 0, "warps of 4 x 8 threads");
  static_assert(BK % 8 == 0 && (BM * BK / 4) % THREADS == 0 && (BN * BK / 4) % THREADS == 0,
                "a slice's chunks of 4 must split evenly over the threads");
  static constexpr int A_CHUNKS = BM * BK / 4 / THREADS, B_CHUNKS = BN * BK / 4 / THREADS;
  // The block's output tile in shared memory (TO_SMEM: the clustered split, dense_simt_cluster_kernel):
  // row r at r·TILE_LD floats, as PipeTile's; a thread's float4s of 4 consecutive columns, 8 lanes
  // of a row writing 128 contiguous bytes.
  static constexpr int TILE_LD = BN + 8;
  // 16-byte aligned: the tiles are read and written as float4 (a float struct alone is only 4-byte
  // aligned, and the H100 faulted with a misaligned address on it).
  struct alignas(16) Smem {
    float As[2][BK][SA];
    float Bs[2][BK][SB];
  };

  // Chunk c of one operand's slice [k0, k0 + BK) x [x0, x0 + X). KFAST: global (x, k) at src[x·ld + k],
  // chunk c at row x = (c/2) % X, k = 4·(2·(c / 2X) + c % 2): a warp reads 16 rows x 32 bytes (one
  // sector each) and its transposed stores S[k + j][x] hit 32 distinct banks (16 rows, 2 k's whose
  // rows lie 4·SA ≡ 16 words apart). Otherwise (x, k) at src[k·ld + x], chunk c at k = c / (X/4),
  // x = 4·(c % (X/4)): consecutive float4s of a row, stored as they are. x_valid: how many x exist in
  // src; x_end: in the GEMM (x_valid, or one more with the ones column `ones`).
  template <bool KFAST, int X>
  __device__ static int chunk_x(int c) {
    return KFAST ? (c / 2) % X : 4 * (c % (X / 4));
  }
  template <bool KFAST, int X>
  __device__ static int chunk_k(int c) {
    return KFAST ? 4 * (2 * (c / (2 * X)) + c % 2) : c / (X / 4);
  }
  template <bool KFAST, int X>
  __device__ static float4 fetch_chunk(int c, bool vec, const float* src, int ld, int x0, int x_valid, int x_end,
                                       int ones, int k0, int k_end) {
    const int x = x0 + chunk_x<KFAST, X>(c), k = k0 + chunk_k<KFAST, X>(c);
    const bool inside = KFAST ? (x < x_valid && k + 3 < k_end) : (k < k_end && x + 3 < x_valid);
    if (vec && inside)
      return *reinterpret_cast<const float4*>(src + (KFAST ? std::size_t(x) * ld + k : std::size_t(k) * ld + x));
    return load_tail_chunk<KFAST>(src, ld, x, k, k_end, x_valid, x_end, ones);
  }

  // Stores chunk c (as fetch_chunk numbers it) into the k-major shared tile S[k][x] (row stride STRIDE).
  template <bool KFAST, int X, int STRIDE>
  __device__ static void stash_chunk(float (&S)[BK][STRIDE], int c, const float4& v) {
    const int x = chunk_x<KFAST, X>(c), k = chunk_k<KFAST, X>(c);
    if constexpr (KFAST) {
      S[k][x] = v.x;
      S[k + 1][x] = v.y;
      S[k + 2][x] = v.z;
      S[k + 3][x] = v.w;
    } else {
      *reinterpret_cast<float4*>(&S[k][x]) = v;
    }
  }

  // TO_SMEM (piece z of a clustered split, Forward or Weight): the raw sums go to `tile` (TILE_LD;
  // it may overlap s: the loop's last barrier has passed) instead of memory.
  template <Kind KIND, bool TO_SMEM = false>
  __device__ static void run(const GemmParams& p, int m0, int n0, int z, Smem& s, float* tile = nullptr) {
    constexpr bool A_KFAST = KIND != Kind::Weight, B_KFAST = KIND == Kind::Forward;
    const int tid = int(threadIdx.x), lane = tid % 32, warp = tid / 32;
    const int tr = (warp / (RN / 8)) * 4 + lane / 8, tc = (warp % (RN / 8)) * 8 + lane % 8;

    // The slices this block walks (as PipeTile): one piece [k_begin, k_last) of BK-deep slices, or
    // (folded) all pieces of p.split_k one after another, slice s of piece s / piece_slices.
    const bool fold = KIND == Kind::Forward && p.split_k > 0 && !p.partial;
    const int piece_slices = fold ? p.split_k / BK : 1;
    const int k_begin = fold ? 0 : z * p.split_k;
    const int k_last = p.split_k && !fold && k_begin + p.split_k < p.K ? k_begin + p.split_k : p.K;
    const int slices = fold ? (split_count(p) - 1) * piece_slices +
                                  (p.K - (split_count(p) - 1) * p.split_k + BK - 1) / BK
                            : (k_last - k_begin + BK - 1) / BK;
    auto slice_k0 = [&](int t) { return fold ? (t / piece_slices) * p.split_k + (t % piece_slices) * BK : k_begin + t * BK; };
    auto slice_end = [&](int t) {
      if (!fold) return k_last;
      const int e = (t / piece_slices + 1) * p.split_k;
      return e < p.K ? e : p.K;
    };
    const bool vec = vec_loads_ok(p);
    const int b_valid = p.ones_col >= 0 ? p.ones_col : p.N;
    float4 ra[A_CHUNKS], rb[B_CHUNKS];

    // X from the images (see above; IMAGES: p.images is set): the operand's chunks as 4 pixels packed
    // in ia / ib (the first in the low byte), converted when stashed. Outside the GEMM (past the
    // slice's end, the last row or column) a pixel of 0 (pixel_value: +0, the float path's zero); in
    // the ones column of the Weight GEMM one of 255 (pixel_value(255) = 1.0f exactly: 255 · fl(1/255)
    // rounds to 1; the db outputs of test_dense_images check it).
    constexpr bool a_img = IMAGES && KIND == Kind::Forward, b_img = IMAGES && KIND == Kind::Weight;
    const int64_t base = a_img || b_img ? image_base(p) : 0;
    uint32_t ia[A_CHUNKS], ib[B_CHUNKS];
    // Forward: the image row of chunk it (null past the last row). A thread's chunks all lie in one
    // row when THREADS / 2 is a multiple of BM (every tile of TilesFor): then one pointer.
    constexpr int A_ROWS = (THREADS / 2) % BM == 0 ? 1 : A_CHUNKS;
    const uint8_t* a_row[A_ROWS];
    int32_t b_src[B_CHUNKS];  // Weight with idx: idx entry of chunk it's row in the next slice fetched
    if constexpr (a_img) {
#pragma unroll
      for (int r = 0; r < A_ROWS; ++r) {
        const int x = m0 + chunk_x<A_KFAST, BM>(tid + r * THREADS);
        a_row[r] = x < p.M ? image_row(p, base, x, p.lda) : nullptr;
      }
    }
    auto load_b_src = [&](int t) {  // the idx entries of slice t's rows (Weight's B from the images)
      const int k0 = slice_k0(t), ke = slice_end(t);
#pragma unroll
      for (int it = 0; it < B_CHUNKS; ++it) {
        const int k = k0 + chunk_k<B_KFAST, BN>(tid + it * THREADS);
        b_src[it] = k < ke ? p.rows.idx[base + k] : 0;
      }
    };
    if constexpr (b_img)
      if (p.rows.idx) load_b_src(0);

    auto fetch = [&](int t) {
      const int k0 = slice_k0(t), ke = slice_end(t);
#pragma unroll
      for (int it = 0; it < A_CHUNKS; ++it) {
        const int c = tid + it * THREADS;
        if constexpr (a_img) {  // Forward, k-fast: pixels k..k+3 of the chunk's row
          const uint8_t* row = a_row[A_ROWS == 1 ? 0 : it];
          const int k = k0 + chunk_k<A_KFAST, BM>(c);
          if (vec && row && k + 3 < ke) {
            ia[it] = *reinterpret_cast<const uint32_t*>(row + k);
          } else {  // a tail (as load_tail_chunk_images, from the cached row)
            uint32_t u = 0;
#pragma unroll
            for (int j = 0; j < 4; ++j)
              if (row && k + j < ke) u |= uint32_t(row[k + j]) << (8 * j);
            ia[it] = u;
          }
        } else {
          ra[it] = fetch_chunk<A_KFAST, BM>(c, vec, p.a, p.lda, m0, p.M, p.M, -1, k0, ke);
        }
      }
#pragma unroll
      for (int it = 0; it < B_CHUNKS; ++it) {
        const int c = tid + it * THREADS;
        if constexpr (b_img) {  // Weight, n-fast: pixels x..x+3 of row k
          const int x = n0 + chunk_x<B_KFAST, BN>(c), k = k0 + chunk_k<B_KFAST, BN>(c);
          uint32_t u = 0;
          if (k < ke) {
            const uint8_t* row = p.images + (p.rows.idx ? int64_t(b_src[it]) : base + k) * p.ldb;
            if (vec && x + 3 < b_valid) {
              u = *reinterpret_cast<const uint32_t*>(row + x);
            } else {  // a tail (as load_tail_chunk_images)
#pragma unroll
              for (int j = 0; j < 4; ++j) {
                const int xj = x + j;
                if (xj == p.ones_col)
                  u |= 255u << (8 * j);
                else if (xj < b_valid)
                  u |= uint32_t(row[xj]) << (8 * j);
              }
            }
          }
          ib[it] = u;
        } else {
          rb[it] = fetch_chunk<B_KFAST, BN>(c, vec, p.b, p.ldb, n0, b_valid, p.N, p.ones_col, k0, ke);
        }
      }
      if constexpr (b_img)
        if (p.rows.idx && t + 1 < slices) load_b_src(t + 1);  // needed by fetch(t + 1), a slice later
    };
    auto stash = [&](int buf) {
#pragma unroll
      for (int it = 0; it < A_CHUNKS; ++it)
        stash_chunk<A_KFAST, BM>(s.As[buf], tid + it * THREADS, a_img ? pixel_values(ia[it]) : ra[it]);
#pragma unroll
      for (int it = 0; it < B_CHUNKS; ++it)
        stash_chunk<B_KFAST, BN>(s.Bs[buf], tid + it * THREADS, b_img ? pixel_values(ib[it]) : rb[it]);
    };

    float acc[TM][TN], sum[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = sum[i][j] = 0.0f;

    fetch(0);
    stash(0);
    __syncthreads();
    for (int t = 0; t < slices; ++t) {
      const int buf = t & 1;
      if (t + 1 < slices) fetch(t + 1);  // in flight during the FMAs below
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float av[TM], bv[TN];
#pragma unroll
        for (int g = 0; g < TM / 4; ++g) {
          const float4 v = *reinterpret_cast<const float4*>(&s.As[buf][kk][g * RM * 4 + tr * 4]);
          av[4 * g] = v.x, av[4 * g + 1] = v.y, av[4 * g + 2] = v.z, av[4 * g + 3] = v.w;
        }
#pragma unroll
        for (int h = 0; h < TN / 4; ++h) {
          const float4 v = *reinterpret_cast<const float4*>(&s.Bs[buf][kk][h * RN * 4 + tc * 4]);
          bv[4 * h] = v.x, bv[4 * h + 1] = v.y, bv[4 * h + 2] = v.z, bv[4 * h + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      if constexpr (KIND == Kind::Forward) {
        if (fold && ((t + 1) % piece_slices == 0 || t + 1 == slices)) {  // piece done: total += piece
#pragma unroll
          for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) sum[i][j] += acc[i][j], acc[i][j] = 0.0f;
        }
      }
      // Buffer buf^1 was last read in slice t-1, before the barrier that ended it.
      if (t + 1 < slices) stash(buf ^ 1);
      __syncthreads();
    }

    if constexpr (TO_SMEM) {
      static_assert(KIND != Kind::Data, "clustered splits: the Forward GEMM's and the Weight GEMM's (Adam's)");
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int g = 0; g < TN / 4; ++g)
          *reinterpret_cast<float4*>(tile + ((i / 4) * RM * 4 + tr * 4 + i % 4) * TILE_LD + g * RN * 4 + tc * 4) =
              make_float4(acc[i][4 * g], acc[i][4 * g + 1], acc[i][4 * g + 2], acc[i][4 * g + 3]);
      return;
    }
    const uint64_t step = epilogue_step<KIND>(p);
    float x[TM][TN];  // the epilogue's inputs, all read before the first store (epilogue_input)
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int m = m0 + (i / 4) * RM * 4 + tr * 4 + i % 4, n = n0 + (j / 4) * RN * 4 + tc * 4 + j % 4;
        x[i][j] = !p.partial && m < p.M && n < p.N ? epilogue_input<KIND>(p, m, n) : 0.0f;
      }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + (i / 4) * RM * 4 + tr * 4 + i % 4;
      if (m >= p.M) continue;
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {  // the thread's 4 consecutive columns of group g
        const int n = n0 + g * RN * 4 + tc * 4;
        float v[4], xs[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          v[q] = fold ? sum[i][4 * g + q] : acc[i][4 * g + q];
          xs[q] = x[i][4 * g + q];
        }
        if (n < p.N) store_results<KIND, 4>(p, z, m, n, v, xs, step);
      }
    }
  }
};

// ---- The warp-level pieces both tensor-core tiles (MmaTile, PipeTile) share ----

// The mma of every one of a warp's MI x NI tiles of 16 x 8 from its fragments (i outer, j inner).
template <GemmPrecision PREC, int MI, int NI>
__device__ __forceinline__ void mma_tiles(float (&acc)[MI][NI][4], const uint32_t (&a)[MI][4],
                                          const uint32_t (&b)[NI][2]) {
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j) {
      if constexpr (PREC == GemmPrecision::TF32)
        mma_tf32_m16n8k8(acc[i][j], a[i], b[j]);
      else
        mma_bf16_m16n8k16(acc[i][j], a[i], b[j]);
    }
}

// The fragments of one mma step at depth ks (mma.cuh's fragment layout, lane = 4g + t) of a
// warp's MI row tiles (A, rows wm0 + i·16 + ...) or NI column tiles (B, columns wn0 + j·8 + ...).
// fa(r, k) / fb(c, k) read the warp's operand A (row r) / B (column c): for TF32 element k as the
// mma register, for BF16 the pair (k, k+1) packed.
template <GemmPrecision PREC, int MI, class FA>
__device__ __forceinline__ void frags_a(uint32_t (&a)[MI][4], int wm0, int g, int t, int ks, const FA& fa) {
  constexpr int KH = PREC == GemmPrecision::TF32 ? 4 : 8;  // the second half of the step's k
  const int k = ks + (PREC == GemmPrecision::TF32 ? t : 2 * t);
#pragma unroll
  for (int i = 0; i < MI; ++i) {
    const int r = wm0 + i * 16 + g;
    a[i][0] = fa(r, k);
    a[i][1] = fa(r + 8, k);
    a[i][2] = fa(r, k + KH);
    a[i][3] = fa(r + 8, k + KH);
  }
}
template <GemmPrecision PREC, int NI, class FB>
__device__ __forceinline__ void frags_b(uint32_t (&b)[NI][2], int wn0, int g, int t, int ks, const FB& fb) {
  constexpr int KH = PREC == GemmPrecision::TF32 ? 4 : 8;
  const int k = ks + (PREC == GemmPrecision::TF32 ? t : 2 * t);
#pragma unroll
  for (int j = 0; j < NI; ++j) {
    const int c = wn0 + j * 8 + g;
    b[j][0] = fb(c, k);
    b[j][1] = fb(c, k + KH);
  }
}

// One mma step of a warp's MI x NI tiles of 16 x 8 at depth ks: the fragments, then the mma of
// every tile.
template <GemmPrecision PREC, int MI, int NI, class FA, class FB>
__device__ __forceinline__ void mma_step(float (&acc)[MI][NI][4], int wm0, int wn0, int g, int t, int ks, const FA& fa,
                                         const FB& fb) {
  uint32_t a[MI][4], b[NI][2];
  frags_a<PREC>(a, wm0, g, t, ks, fa);
  frags_b<PREC>(b, wn0, g, t, ks, fb);
  mma_tiles<PREC>(acc, a, b);
}

// Stores a warp's accumulators (d[0..3] of each 16 x 8 tile at rows g, g+8, columns 2t, 2t+1)
// through store_results (a pair a store): the tile's outputs at (m0 + wm0 + ..., n0 + wn0 + ...),
// in range only.
template <Kind KIND, int MI, int NI>
__device__ __forceinline__ void store_warp_tiles(const GemmParams& p, int z, int m0, int n0, int g, int t,
                                                 const float (&acc)[MI][NI][4], uint64_t step) {
  float x[MI][NI][4];  // the epilogue's inputs, all read before the first store (epilogue_input)
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int m = m0 + i * 16 + g + 8 * (q >> 1), n = n0 + j * 8 + 2 * t + (q & 1);
        x[i][j][q] = !p.partial && m < p.M && n < p.N ? epilogue_input<KIND>(p, m, n) : 0.0f;
      }
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // rows g and g + 8: columns 2t, 2t+1 (d[2h], d[2h+1])
        const int m = m0 + i * 16 + g + 8 * h, n = n0 + j * 8 + 2 * t;
        if (m >= p.M) continue;
        const float v[2] = {acc[i][j][2 * h], acc[i][j][2 * h + 1]};
        const float xs[2] = {x[i][j][2 * h], x[i][j][2 * h + 1]};
        if (n < p.N) store_results<KIND, 2>(p, z, m, n, v, xs, step);
      }
}

// TF32 / BF16 on the tensor cores (kernels/mma.cuh). WM x WN warps; warp (wm, wn) computes the
// (BM/WM) x (BN/WN) sub-tile at rows wm*BM/WM, columns wn*BN/WN as MI x NI mma tiles of 16 x 8,
// float32 accumulators in registers. Slices are staged as floats already rounded to PREC
// (load_slice), so a fragment register is a plain copy (TF32) or an exact pack of two (BF16).
// Row padding makes every fragment read conflict-free: lanes read As[k0 + f(t)][g] with f(t) = t
// (TF32) or 2t (BF16), so a stride of 8 (resp. 4) modulo 32 banks spreads the 32 lanes over 32
// banks. Every thread of the block must call it.
template <int BM_, int BN_, int BK, int WM, int WN, GemmPrecision PREC>
struct MmaTile {
  static constexpr int BM = BM_, BN = BN_, THREADS = 32 * WM * WN;
  static constexpr bool kImages = true;  // X read in place from the images (GemmParams::images): load_slice reads them
  static constexpr bool kPipelined = false;
  static constexpr int KSTEP = PREC == GemmPrecision::BF16 ? 16 : 8;
  static constexpr int PAD = PREC == GemmPrecision::BF16 ? 4 : 8;
  static constexpr int WTM = BM / WM, WTN = BN / WN, MI = WTM / 16, NI = WTN / 8;
  static_assert(PREC != GemmPrecision::FP32, "MmaTile runs TF32 or BF16");
  static_assert(WTM % 16 == 0 && WTN % 8 == 0 && BK % KSTEP == 0, "warp tiles must split into mma tiles");
  static_assert((BM + PAD) % 32 == PAD && (BN + PAD) % 32 == PAD, "padding assumes tiles of 32·n");
  struct Smem {
    float As[BK][BM + PAD];
    float Bs[BK][BN + PAD];
  };

  template <Kind KIND>
  __device__ static void run(const GemmParams& p, int m0, int n0, int z, Smem& s) {
    const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
    const int g = lane / 4, t = lane % 4;
    const int wm0 = (warp / WN) * WTM, wn0 = (warp % WN) * WTN;

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    const int k_begin = z * p.split_k;
    const int k_end = p.split_k && k_begin + p.split_k < p.K ? k_begin + p.split_k : p.K;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
      load_slice<BM, BN, BK, THREADS, KIND, PREC>(p, m0, n0, k0, k_end, s.As, s.Bs);
      __syncthreads();
#pragma unroll
      for (int ks = 0; ks < BK; ks += KSTEP) {
        if constexpr (PREC == GemmPrecision::TF32)
          mma_step<PREC>(acc, wm0, wn0, g, t, ks, [&](int r, int k) { return float_bits(s.As[k][r]); },
                         [&](int c, int k) { return float_bits(s.Bs[k][c]); });
        else
          mma_step<PREC>(acc, wm0, wn0, g, t, ks, [&](int r, int k) { return pack_bf16x2(s.As[k][r], s.As[k + 1][r]); },
                         [&](int c, int k) { return pack_bf16x2(s.Bs[k][c], s.Bs[k + 1][c]); });
      }
      __syncthreads();
    }

    store_warp_tiles<KIND>(p, z, m0 + wm0, n0 + wn0, g, t, acc, epilogue_step<KIND>(p));
  }
};

// TF32 / BF16 on the tensor cores, pipelined: the tile of the large GEMMs. WM x WN warps, warp
// (wm, wn) computes the (BM/WM) x (BN/WN) sub-tile as MI x NI mma tiles of 16 x 8 (as MmaTile).
// K advances in BK = 32 slices through a ring of STAGES shared-memory stages filled by cp.async
// (kernels/cp_async.cuh): while the warps multiply slice s, the copies of slices s+1 .. s+STAGES-1
// are in flight, so a slice's global-load latency is paid once per block, not once per slice.
// cp.async lands RAW float32 (it cannot convert): in TF32 each thread rounds the chunks it copied
// in place once they have landed (before the barrier that publishes the slice), in BF16 a fragment
// pair is rounded and packed when it is read, with the same instructions as MmaTile's loads
// (cvt.rna.tf32.f32, cvt.rn.bf16x2.f32), so every mma sees bitwise MmaTile's operands, in the
// same order per output element (BK = 32 slices from the piece's first k, KSTEP-deep mma steps,
// zeros past the end): the two tiles give bitwise the same results wherever the split points are
// the same.
//
// Layouts follow global memory, so that one cp.async moves 16 contiguous bytes of a row:
//   k fastest (Forward's and Data's A = X or dZ [M,K]; Forward's B = W [N,K]): S[m][k], row stride
//     BK + KPAD floats; mn fastest (Weight's A = dZ [K,M]; Data's and Weight's B [K,N]): S[k][m],
//     row stride BM (BN) + MPAD floats.
// TF32 fragments of a k-fast operand come by ldmatrix.x4 (mma.cuh: four 8-row x 4-float blocks,
// one instruction instead of four loads), rounded after the load; the others by element reads.
// Padding makes the fragment reads conflict-free (lane = 4g + t reads row f(g), column h(t)):
//   TF32, k fastest: word 36g + t (+ks): banks 4g + t, all 32 distinct (KPAD = 4); ldmatrix's
//     phase of 8 rows x 16 bytes: rows 36 words apart start on banks 4i (+c), 8 distinct groups;
//   BF16, k fastest: a float2 at 40g + 2t; a 64-bit load is served per half warp (g < 4 or g >= 4),
//     words 8g + 2t, +1: 16 lanes x 2 words on 32 distinct banks (KPAD = 8);
//   TF32, mn fastest: word t·(BM+8) + g: banks 8t + g (MPAD = 8, BM a multiple of 32);
//   BF16, mn fastest: words 2t·(BM+4) + g and (2t+1)·(BM+4) + g: banks 8t + g and 8t + 4 + g (MPAD = 4).
// Row strides stay multiples of 4 floats, so every 16-byte chunk of a stage is 16-byte aligned.
//
// A chunk (4 consecutive floats of a row of A or B) that is wholly inside the matrix, wholly inside
// the slice's K range and not the Weight GEMM's ones column goes by cp.async; any other chunk (row,
// column or K tail, the ones column) is written by the thread with ordinary loads and a shared store
// (0 outside, 1 in the ones column): the launcher only picks this tile when a, b and lda, ldb are
// 16-byte aligned (pipelined_ok), and tails are rare, so those few chunks wait for their loads.
// X read in place from the uint8 images (GemmParams::images: the Forward GEMM's A, the Weight
// GEMM's B) goes as 4-byte copies of 4 pixels, expanded to floats by the copying thread before the
// barrier (Copier, IMG): the stage holds the gathered batch's floats bit for bit.
//
// Split-K: a block computes piece z of p.split_k (p.partial set: its raw partial, as MmaTile), or,
// for a Forward GEMM with p.split_k but no p.partial ("folded"), every piece in turn, adding each
// piece's float32 sum into the total in the fixed order z = 0, 1, ... starting from 0: bitwise what
// the cross-block split plus dense_split_reduce_kernel computes (same pieces, same order, same
// float additions), without the partial arrays and the second pass. Every thread of the block must
// call it; the launch gives it Smem bytes of dynamic shared memory.
// The K slices a pipelined block walks (PipeTile, WgmmaTile), all contiguous in k: one piece
// [k_begin, k_last) of split z, or (folded: a Forward GEMM with p.split_k but no p.partial) every
// piece of p.split_k in turn. Pieces are whole slices but the GEMM's last one (split_k a multiple of
// bk: pipelined_ok), so a slice is cut short only at the very end (or at k_last).
struct SlicePlan {
  bool fold;
  int piece, k_begin, k_last, pieces, piece_slices, slices;
  __device__ __forceinline__ SlicePlan(const GemmParams& p, int z, int bk, bool forward)
      : fold(forward && p.split_k > 0 && !p.partial),
        piece(p.split_k > 0 ? p.split_k : p.K),
        k_begin(fold ? 0 : z * p.split_k),
        k_last(p.split_k && !fold && k_begin + p.split_k < p.K ? k_begin + p.split_k : p.K),
        pieces(fold ? split_count(p) : 1),
        piece_slices(piece / bk),
        slices(fold ? (pieces - 1) * piece_slices + (p.K - (pieces - 1) * piece + bk - 1) / bk
                    : (k_last - k_begin + bk - 1) / bk) {}
};

template <int BM_, int BN_, int WM, int WN, GemmPrecision PREC, int STAGES = 3>
struct PipeTile {
  static constexpr int BM = BM_, BN = BN_, BK = 32, THREADS = 32 * WM * WN;
  static constexpr bool kImages = true;  // X read in place from the images (GemmParams::images): Copier's IMG
  static constexpr bool kPipelined = true;
  static constexpr int KSTEP = PREC == GemmPrecision::BF16 ? 16 : 8;
  static constexpr int KPAD = PREC == GemmPrecision::BF16 ? 8 : 4;
  static constexpr int MPAD = PREC == GemmPrecision::BF16 ? 4 : 8;
  static constexpr int WTM = BM / WM, WTN = BN / WN, MI = WTM / 16, NI = WTN / 8;
  static_assert(PREC != GemmPrecision::FP32, "PipeTile runs TF32 or BF16");
  static_assert(WTM % 16 == 0 && WTN % 8 == 0 && BM % 32 == 0 && BN % 32 == 0, "tiles must split into mma tiles");
  static_assert(STAGES >= 2, "a pipeline needs two stages");

  // Floats of one operand's stage: X rows of BK (+KPAD) floats (k fastest) or BK rows of X (+MPAD).
  template <bool KFAST, int X>
  static constexpr int stage_floats() {
    return KFAST ? X * (BK + KPAD) : BK * (X + MPAD);
  }
  template <Kind KIND>
  static constexpr int stage_a() {
    return stage_floats<KIND != Kind::Weight, BM>();
  }
  template <Kind KIND>
  static constexpr int stage_b() {
    return stage_floats<KIND == Kind::Forward, BN>();
  }
  // Dynamic shared memory of one block running KIND (the launcher passes the largest over the
  // kinds of one launch).
  template <Kind KIND>
  static constexpr int smem_bytes() {
    return STAGES * (stage_a<KIND>() + stage_b<KIND>()) * int(sizeof(float));
  }

  // One operand's copies of a slice, seen from one thread. A slice of X rows/columns x BK is
  // X·BK/4 chunks of 4 elements (16 bytes of stage); chunk c = tid + it·THREADS (it < PER_THREAD)
  // sits at shared row c / PER_ROW, column (c % PER_ROW)·4. THREADS is a multiple of PER_ROW, so a
  // thread's chunks share one column and lie ROWS shared rows apart, and the next slice of a chunk
  // is BK (k fast) or BK·ld elements further on. Everything is set up once (init): per slice, a
  // thread whose chunks all lie inside the matrix (every thread but those at a tile's row or column
  // tail) issues PER_THREAD cp.async from its own source pointers to fixed shared offsets and
  // advances each pointer by one constant (no division, no index arithmetic); the rest take `generic`.
  // KFAST: global element (x, k) at src[x·ld + k], stage S[x][k]; otherwise (k, x) at src[k·ld + x],
  // S[k][x]. x_valid: how many x exist (elements at or past it are 0); ones: the x holding the ones
  // column (or -1; it lies at or past x_valid); x_end: the x range including the ones column.
  //
  // IMG (the Forward GEMM's A, the Weight GEMM's B): the operand may be X read in place from the
  // uint8 images (init_images; GemmParams::images), row r of X = image row src(r) (image_row). A
  // chunk is then 4 pixels, 4 bytes: one 4-byte cp.async (cp_async4) into the first 4 bytes of its
  // 16-byte slot, or, at a tail (and when the images or their rows are not 4-byte aligned), the 4
  // bytes stored by the thread (0 outside; the ones column as byte 1). The thread expands its own
  // slots to floats after its cp_async_wait (prepare_own: pixel_value, the ones column, then TF32's
  // rounding), before the barrier that publishes the stage: the stage then holds bit for bit the
  // floats of the gathered batch (gather_batch, the same pixel_value). Source rows: KFAST (A: x is
  // the row, fixed for the whole K walk) looked up once in init, then advanced BK bytes a slice;
  // otherwise (B: k is the row, new every slice) looked up a slice ahead (the index read by one
  // issue is used by the next, so its latency hides behind a slice of mma).
  template <bool KFAST, int X, bool IMG = false>
  struct Copier {
    static constexpr int STRIDE = KFAST ? BK + KPAD : X + MPAD;
    static constexpr int PER_ROW = (KFAST ? BK : X) / 4, ROWS = THREADS / PER_ROW;
    static constexpr int PER_THREAD = X * BK / 4 / THREADS;
    static_assert(THREADS % PER_ROW == 0 && (X * BK / 4) % THREADS == 0, "a slice's chunks must split evenly");

    const uint8_t* ptr[PER_THREAD];  // chunk it's first byte at the next slice to issue
    long long slice_step;            // its advance a slice, in bytes: BK or BK·ld elements
    const float* src;
    int ld, x, k;                  // chunk 0's x and k at the next slice
    int dst;                       // chunk 0's float offset in the stage
    bool x_inside;                 // every chunk of the thread lies wholly inside in x (no ones column)
    int x_valid, x_end, ones;
    // IMG only: whether the operand is the images this launch, whether its chunks may be 4-byte
    // copies, the images, index and image_base; rows (!KFAST: X's rows, the GEMM's K) and the
    // image rows of the next slice's chunks (-1: past the rows).
    bool img = false, img_cp = false;
    const uint8_t* images;
    const int32_t* idx;
    int64_t base;
    int rows;
    int64_t next_src[KFAST ? 1 : PER_THREAD];

    __device__ __forceinline__ void init(const float* s, int ld_, int x0, int x_valid_, int x_end_, int ones_, int k0) {
      const int tid = int(threadIdx.x), row = tid / PER_ROW, col = (tid % PER_ROW) * 4;
      src = s, ld = ld_, x_valid = x_valid_, x_end = x_end_, ones = ones_;
      x = x0 + (KFAST ? row : col);
      k = k0 + (KFAST ? col : row);
      const long long off = KFAST ? (long long)x * ld + k : (long long)k * ld + x;
#pragma unroll
      for (int it = 0; it < PER_THREAD; ++it)
        ptr[it] = reinterpret_cast<const uint8_t*>(s + (off + (long long)it * ROWS * ld));
      slice_step = (KFAST ? BK : (long long)BK * ld) * (long long)sizeof(float);
      dst = row * STRIDE + col;
      // KFAST: chunk it covers x + it·ROWS; otherwise every chunk covers x .. x+3
      x_inside = KFAST ? x + (PER_THREAD - 1) * ROWS < x_valid : x + 3 < x_valid;
    }

    // The image row of X's row r (r < rows of X).
    __device__ __forceinline__ int64_t image_src(int r) const { return idx ? int64_t(idx[base + r]) : base + r; }

    // init for X read from the images (IMG): p's images, index and row base (image_base(p)); rows_:
    // X's rows (KFAST: x_valid; otherwise the GEMM's K).
    __device__ __forceinline__ void init_images(const GemmParams& p, int64_t base_, int ld_, int x0, int x_valid_,
                                                int x_end_, int ones_, int k0, int rows_) {
      static_assert(IMG, "only an operand that may be X reads the images");
      init(nullptr, ld_, x0, x_valid_, x_end_, ones_, k0);
      img = true;
      img_cp = reinterpret_cast<std::uintptr_t>(p.images) % 4 == 0 && ld_ % 4 == 0;
      images = p.images, idx = p.rows.idx, base = base_, rows = rows_;
      if constexpr (KFAST) {
#pragma unroll
        for (int it = 0; it < PER_THREAD; ++it) {
          const int r = x + it * ROWS;  // rows past x_valid are never read (load_bytes: 0)
          ptr[it] = images + (r < x_valid ? image_src(r) * ld + k : 0);
        }
        slice_step = BK;
      } else {
        look_ahead();
      }
    }

    // !KFAST images: the image rows of the slice at k (the next to issue), read ahead of its issue.
    __device__ __forceinline__ void look_ahead() {
      if constexpr (!KFAST) {
#pragma unroll
        for (int it = 0; it < PER_THREAD; ++it) {
          const int r = k + it * ROWS;
          next_src[it] = r < rows ? image_src(r) : -1;
        }
      }
    }

    // A chunk that is not one whole cp.async (an x or k tail, the ones column): ordinary loads,
    // 0 outside, 1 in the ones column, and one 16-byte shared store. (xc, kc): its first element.
    __device__ __forceinline__ void load_chunk(float* d, int xc, int kc, int k_end) const {
      *reinterpret_cast<float4*>(d) = load_tail_chunk<KFAST>(src, ld, xc, kc, k_end, x_valid, x_end, ones);
    }

    // load_chunk for the images: the chunk's 4 bytes (0 outside, byte 1 in the ones column: see
    // prepare_own) in the first 4 bytes of its slot. Element j of the chunk is byte j from q
    // (KFAST: pixel kc + j of row xc; otherwise pixel xc + j of row kc), read only inside.
    __device__ __forceinline__ void load_bytes(float* d, const uint8_t* q, int xc, int kc, int k_end) const {
      tail_bytes<KFAST>(d, q, xc, kc, k_end, x_valid, x_end, ones);
    }

    // Every chunk by its own test: a cp.async when it lies wholly inside (x and k < k_end), else
    // load_chunk (load_bytes).
    __device__ __forceinline__ void generic(float* S, int k_end) const {
#pragma unroll
      for (int it = 0; it < PER_THREAD; ++it) {
        float* d = S + dst + it * ROWS * STRIDE;
        const int xc = KFAST ? x + it * ROWS : x, kc = KFAST ? k : k + it * ROWS;
        const bool inside = KFAST ? xc < x_valid && kc + 3 < k_end : xc + 3 < x_valid && kc < k_end;
        if (IMG && img) {
          if (inside && img_cp)
            cp_async4(d, ptr[it]);
          else
            load_bytes(d, ptr[it], xc, kc, k_end);
        } else if (inside) {
          cp_async16(d, reinterpret_cast<const float*>(ptr[it]));
        } else {
          load_chunk(d, xc, kc, k_end);
        }
      }
    }

    // Makes this thread's own chunks of the stage S what the mma steps read, once they have landed
    // (after its cp_async_wait; the others see them after the __syncthreads that follows).
    // TF32: rounds them in place (cvt.rna.tf32.f32, MmaTile's rounding), once per element instead of
    // once per fragment use. Images (IMG, img): first expands each slot's 4 bytes to 4 floats,
    // pixel_value (the ones column's byte to 1 or 0), at BF16 too (rounded when a fragment is read).
    __device__ __forceinline__ void prepare_own(float* S) const {
      if constexpr (IMG) {
        if (img) {
          // The ones column's place in the thread's chunks (only !KFAST has one: every chunk spans
          // x .. x+3), or -1: the threads of the last column tile only. Its element is rewritten
          // after the expand (1.0f or 0.0f: exact in TF32), so the other threads pay no select.
          const int ones_j = !KFAST && ones >= x && ones < x + 4 ? ones - x : -1;
#pragma unroll
          for (int it = 0; it < PER_THREAD; ++it) {
            float* d = S + dst + it * ROWS * STRIDE;
            const uchar4 u = *reinterpret_cast<const uchar4*>(d);
            const bool one = ones_j >= 0 && reinterpret_cast<const uint8_t*>(d)[ones_j] != 0;
            float v[4] = {pixel_value(u.x), pixel_value(u.y), pixel_value(u.z), pixel_value(u.w)};
            if constexpr (PREC == GemmPrecision::TF32) {
#pragma unroll
              for (int j = 0; j < 4; ++j) v[j] = bits_float(to_tf32(v[j]));
            }
            *reinterpret_cast<float4*>(d) = make_float4(v[0], v[1], v[2], v[3]);
            if (ones_j >= 0) d[ones_j] = one ? 1.0f : 0.0f;
          }
          return;
        }
      }
      if constexpr (PREC == GemmPrecision::TF32) {
#pragma unroll
        for (int it = 0; it < PER_THREAD; ++it) {
          float4* d = reinterpret_cast<float4*>(S + dst + it * ROWS * STRIDE);
          const float4 v = *d;
          *d = make_float4(bits_float(to_tf32(v.x)), bits_float(to_tf32(v.y)), bits_float(to_tf32(v.z)),
                           bits_float(to_tf32(v.w)));
        }
      }
    }

    // Issues this thread's chunks of the next slice (k from k up, cut at k_end) into the operand's
    // stage S, then moves on to the slice after it. k_full: the slice lies wholly before k_end
    // (every slice but a piece's or the GEMM's last).
    __device__ __forceinline__ void issue(float* S, bool k_full, int k_end) {
      if constexpr (IMG && !KFAST) {
        if (img) {  // this slice's rows, read a slice ago (past the rows: never read, load_bytes)
#pragma unroll
          for (int it = 0; it < PER_THREAD; ++it) ptr[it] = images + (next_src[it] >= 0 ? next_src[it] * ld + x : 0);
        }
      }
      if (k_full && x_inside && (!IMG || !img || img_cp)) {
#pragma unroll
        for (int it = 0; it < PER_THREAD; ++it) {
          float* d = S + dst + it * ROWS * STRIDE;
          if (IMG && img)
            cp_async4(d, ptr[it]);
          else
            cp_async16(d, reinterpret_cast<const float*>(ptr[it]));
        }
      } else {
        generic(S, k_end);
      }
      k += BK;
      if constexpr (IMG && !KFAST) {
        if (img) {
          look_ahead();
          return;
        }
      }
#pragma unroll
      for (int it = 0; it < PER_THREAD; ++it) ptr[it] += slice_step;
    }
  };

  // The A fragments of one mma step at depth ks from stage As (row stride SA): k fast in TF32, one
  // ldmatrix.x4 per 16-row tile (mma.cuh: lane l gives row l%8 + 8·((l/8)%2), column 4·(l/16) of
  // the tile, a_lm below), else element reads by the fragment table (frags_a). TF32 stages are
  // already rounded (Copier::prepare_own); BF16 pairs are rounded and packed here with MmaTile's
  // instruction: the same operand bits either way.
  template <bool KFAST, int SA>
  __device__ __forceinline__ static void load_a(uint32_t (&a)[MI][4], const float* As, int a_lm, int wm0, int g, int t,
                                                int ks) {
    if constexpr (PREC == GemmPrecision::TF32) {
      if constexpr (KFAST) {
#pragma unroll
        for (int i = 0; i < MI; ++i) {
          ldmatrix_x4(a[i], As + a_lm + i * 16 * SA + ks);
        }
      } else {
        frags_a<PREC>(a, wm0, g, t, ks, [&](int r, int k) { return float_bits(As[k * SA + r]); });
      }
    } else {
      frags_a<PREC>(a, wm0, g, t, ks, [&](int r, int k) {
        if constexpr (KFAST) {  // the pair (k, k+1) of row r: one float2
          const float2 v = *reinterpret_cast<const float2*>(As + r * SA + k);
          return pack_bf16x2(v.x, v.y);
        } else {
          return pack_bf16x2(As[k * SA + r], As[(k + 1) * SA + r]);
        }
      });
    }
  }
  // The B fragments likewise: k fast in TF32, one ldmatrix.x4 per two 8-column tiles (lane l gives
  // column l%8 + 8·(l/16), k 4·((l/8)%2): b_lm), registers {b_j[0], b_j[1], b_j+1[0], b_j+1[1]}.
  template <bool KFAST, int SB>
  __device__ __forceinline__ static void load_b(uint32_t (&b)[NI][2], const float* Bs, int b_lm, int wn0, int g, int t,
                                                int ks) {
    if constexpr (PREC == GemmPrecision::TF32) {
      if constexpr (KFAST) {
        static_assert(NI % 2 == 0, "ldmatrix.x4 loads two 8-column tiles");
#pragma unroll
        for (int j = 0; j < NI; j += 2) {
          uint32_t q[4];
          ldmatrix_x4(q, Bs + b_lm + j * 8 * SB + ks);
          b[j][0] = q[0], b[j][1] = q[1], b[j + 1][0] = q[2], b[j + 1][1] = q[3];
        }
      } else {
        frags_b<PREC>(b, wn0, g, t, ks, [&](int c, int k) { return float_bits(Bs[k * SB + c]); });
      }
    } else {
      frags_b<PREC>(b, wn0, g, t, ks, [&](int c, int k) {
        if constexpr (KFAST) {
          const float2 v = *reinterpret_cast<const float2*>(Bs + c * SB + k);
          return pack_bf16x2(v.x, v.y);
        } else {
          return pack_bf16x2(Bs[k * SB + c], Bs[(k + 1) * SB + c]);
        }
      });
    }
  }

  // The block's output tile in shared memory (TO_SMEM: the clustered split, dense_pipe_cluster_kernel):
  // row r at r·TILE_LD floats. TILE_LD ≡ 8 (mod 32): a warp's float2 stores of its fragments (rows g,
  // columns 2t: a half-warp's 16 lanes at 8g + 2t) fall in 32 distinct banks; a row's float4 quads
  // are contiguous. It reuses the stages (smem_bytes), free once the loop is done.
  static constexpr int TILE_LD = BN + 8;
  static_assert(TILE_LD % 32 == 8, "tile rows 8 banks apart");

  // ABLATE (0 in every GEMM the product runs): the parts of the loop a benchmark's ablation row
  // removes (kAblate*, dense_force_ablation); the results are then meaningless.
  // TO_SMEM (piece z of a clustered split: the Forward GEMM's, or the Weight GEMM's with Adam): the raw
  // sums, the values a split stores as its partial, go to the block's tile in shared memory (TILE_LD) instead of memory.
  template <Kind KIND, unsigned ABLATE = 0, bool TO_SMEM = false>
  __device__ static void run(const GemmParams& p, int m0, int n0, int z, float* smem) {
    constexpr bool A_KFAST = KIND != Kind::Weight, B_KFAST = KIND == Kind::Forward;
    constexpr int SA = A_KFAST ? BK + KPAD : BM + MPAD, SB = B_KFAST ? BK + KPAD : BN + MPAD;
    constexpr int STAGE = stage_a<KIND>() + stage_b<KIND>();
    constexpr bool COPY = !(ABLATE & kAblateCopies), PREPARE = !(ABLATE & kAblatePrepare),
                   MATH = !(ABLATE & kAblateMath);
    const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
    const int g = lane / 4, t = lane % 4;
    const int wm0 = (warp / WN) * WTM, wn0 = (warp % WN) * WTN;
    // ldmatrix row addresses (used where the operand is k fast, TF32): see load_a / load_b
    const int a_lm = (wm0 + lane % 8 + 8 * ((lane / 8) % 2)) * SA + 4 * (lane / 16);
    const int b_lm = (wn0 + lane % 8 + 8 * (lane / 16)) * SB + 4 * ((lane / 8) % 2);

    const SlicePlan plan(p, z, BK, KIND == Kind::Forward);
    const bool fold = plan.fold;
    const int piece = plan.piece, k_begin = plan.k_begin, k_last = plan.k_last;
    const int piece_slices = plan.piece_slices, slices = plan.slices;

    // X may be read from the images: the Forward GEMM's A, the Weight GEMM's B (Copier, IMG)
    Copier<A_KFAST, BM, KIND == Kind::Forward> ca;
    Copier<B_KFAST, BN, KIND == Kind::Weight> cb;
    const int b_valid = p.ones_col >= 0 ? p.ones_col : p.N;
    if (images_a<KIND>(p)) {
      if constexpr (KIND == Kind::Forward) ca.init_images(p, image_base(p), p.lda, m0, p.M, p.M, -1, k_begin, p.M);
    } else {
      ca.init(p.a, p.lda, m0, p.M, p.M, -1, k_begin);
    }
    if (images_b<KIND>(p)) {
      if constexpr (KIND == Kind::Weight)
        cb.init_images(p, image_base(p), p.ldb, n0, b_valid, p.N, p.ones_col, k_begin, p.K);
    } else {
      cb.init(p.b, p.ldb, n0, b_valid, p.N, p.ones_col, k_begin);
    }
    // (GemmParams::rounded: an operand written rounded needs no pass; the images always do)
    const bool prepare_a = !(p.rounded & kRoundedA) || images_a<KIND>(p);
    const bool prepare_b = !(p.rounded & kRoundedB) || images_b<KIND>(p);
    int ik0 = k_begin;                                                     // next slice to issue
    int ike = fold ? (piece < p.K ? piece : p.K) : k_last;                 // and its piece's end
    auto issue_next = [&](float* st) {
      const bool full = ik0 + BK <= ike;
      ca.issue(st, full, ike);
      cb.issue(st + stage_a<KIND>(), full, ike);
      ik0 += BK;
      if (fold && ik0 >= ike) ike = ike + piece < p.K ? ike + piece : p.K;  // the next piece
    };

    float acc[MI][NI][4], sum[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = sum[i][j][r] = 0.0f;
    auto add_piece = [&] {  // total += piece (folded split), in piece order
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) sum[i][j][r] += acc[i][j][r], acc[i][j][r] = 0.0f;
    };

    // The pipeline's first slices, in a loop (not unrolled): one copy of issue_next's code in the
    // binary besides the loop's own, where unrolling made STAGES - 1 more (≈ 1,400 instructions at
    // STAGES 4) that a block runs once (profiling/NOTES.md, "The GEMM tiles' pipeline prologue").
#pragma unroll 1
    for (int s = 0; s < STAGES - 1; ++s) {
      if (COPY && s < slices) issue_next(smem + s * STAGE);
      cp_async_commit();
    }
    float* const ring_end = smem + STAGES * STAGE;
    float* rd = smem;                             // stage of slice s
    float* wr = smem + (STAGES - 1) * STAGE;      // stage of slice s + STAGES - 1
    int left = piece_slices;                      // slices left in the current piece (fold)
    for (int s = 0; s < slices; ++s) {
      // This thread's copies of slice s have landed (the STAGES-2 younger groups may still fly)
      // and are made mma operands in place (TF32: rounded; images: expanded); then everyone's
      // have, and every warp is done with slice s-1, whose stage is refilled next.
      cp_async_wait<STAGES - 2>();
      if constexpr (PREPARE) {
        if (prepare_a) ca.prepare_own(rd);
        if (prepare_b) cb.prepare_own(rd + stage_a<KIND>());
      }
      __syncthreads();
      if (COPY && s + STAGES - 1 < slices) issue_next(wr);
      cp_async_commit();  // possibly empty: keeps one group per slice for the wait count
      wr = wr + STAGE == ring_end ? smem : wr + STAGE;

      const float* As = rd;
      const float* Bs = rd + stage_a<KIND>();
      if constexpr (MATH) {
#pragma unroll
        for (int ks = 0; ks < BK; ks += KSTEP) {
          uint32_t a[MI][4], b[NI][2];
          load_a<A_KFAST, SA>(a, As, a_lm, wm0, g, t, ks);
          load_b<B_KFAST, SB>(b, Bs, b_lm, wn0, g, t, ks);
          mma_tiles<PREC>(acc, a, b);
        }
      }
      rd = rd + STAGE == ring_end ? smem : rd + STAGE;
      if constexpr (KIND == Kind::Forward)
        if (fold && --left == 0) add_piece(), left = piece_slices;  // piece done: total += piece
    }
    if constexpr (KIND == Kind::Forward)
      if (fold && left != piece_slices) add_piece();  // the last piece, when shorter
    cp_async_wait<0>();  // only empty groups remain; leaves nothing in flight at the block's end

    // The folded total is the result. Copied element by element: selecting the array by pointer
    // (`fold ? sum : acc`) made both arrays addressable, so ptxas kept them in local memory and
    // stored every accumulator there after each slice's mmas (stack frame = 2 x the accumulators).
    if constexpr (KIND == Kind::Forward)
      if (fold)
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
          for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = sum[i][j][r];
    if constexpr (TO_SMEM) {
      static_assert(KIND != Kind::Data, "clustered splits: the Forward GEMM's and the Weight GEMM's (Adam's)");
      __syncthreads();  // every warp is done reading the stages: they hold the tile now
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h)  // rows g and g + 8: columns 2t, 2t+1 (d[2h], d[2h+1])
            *reinterpret_cast<float2*>(smem + (wm0 + i * 16 + g + 8 * h) * TILE_LD + wn0 + j * 8 + 2 * t) =
                make_float2(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
      return;
    }
    store_warp_tiles<KIND>(p, z, m0 + wm0, n0 + wn0, g, t, acc, epilogue_step<KIND>(p));
  }
};

// TF32 / BF16 on Hopper's warpgroup MMA (wgmma, kernels/wgmma.cuh; sm_90a): the Forward GEMM
// Y = X·Wᵀ only, where both operands are K-major as wgmma's TF32 form requires (A = X [M,K],
// B = W [N,K]). WG warpgroups (4 warps, 128 threads each) compute a 64·WG x BN output tile (BN = 64
// or 128), warpgroup q rows 64q..64q+63, each with one m64nBNk8 (TF32) or m64nBNk16 (BF16)
// instruction per K step: the tensor cores read both operands straight from shared memory, no
// fragment loads, BN/2 float accumulators a thread. WG = 2 (GemmTile::WgmmaWide, 128 x 128): the
// warpgroups share every B slice, so a slice's copies, rounding pass and barrier serve twice the
// tensor work (measured on the H200 at a018989: the one-warpgroup tiles' 4 warps an SM left them
// slower than PipeTile's 8, 36.8 vs 23.2 µs at 4096 x 784 -> 128 folded).
// Why 64 x 64: at 4096 rows layer 1's 4096 x 784 -> 128 is 128 such tiles, one wave on the
// H100's 132 SMs (64 x 128 would leave 68 SMs idle with 64 tiles; 128 x 128 fewer still), and
// the per-SM shared-memory traffic (cp.async writes, the rounding pass, the wgmma reads: about
// 16 KB a TF32 K step, 128 B a clock) is then the lowest per SM for the whole GEMM. 64 x 128
// (GemmTile::Wgmma128) halves the L2 traffic of re-reading W and X, for 16384 rows (512 tiles).
//
// K advances in BK = 32 slices through a ring of STAGES stages filled by cp.async (16-byte chunks,
// as PipeTile; chunks at a row or K tail are loaded element by element, 0 outside). A stage keeps
// each operand in wgmma's no-swizzle K-major canonical layout (kernels/wgmma_desc.hpp): core
// matrices of 8 rows x 16 bytes, contiguous; along k 128 bytes apart (LBO), 8-row groups a slice's
// worth apart (SBO). Chunk c of an operand's slice (x = 8·(c/64) + c%8, k = 4·((c%64)/8)) lands at
// float 4c, so a warp's 32 copies fill 512 contiguous bytes (no bank conflicts) and a thread's
// chunks (4 of A, BN·8/THREADS of B) lie ROW_STEP = THREADS/8 rows apart at one k
// (16 for one warpgroup, 32 for two).
// Each element is rounded ONCE, by the thread that copied it, after its copy landed: TF32 in place
// (cvt.rna.tf32.f32, MmaTile's rounding: the tensor cores then read exact TF32 values), BF16 into
// the stage's bf16 copy of the slice (cvt.rn.bf16x2.f32; same layout, 2-byte elements: SBO 512).
// Then fence.proxy.async (the wgmma reads through the async proxy) and the barrier that publishes
// the slice. The rounded operands are MmaTile's bit for bit; the products are exact and summed in
// float32 by the tensor core in its own order per instruction, so results match the CPU twin
// within the GEMM tolerance (tests/gpu/test_dense_tc.cu) but are not claimed bitwise MmaTile's.
//
// Pipeline, slice s: wait for this thread's copies of s; round them; fence; barrier; issue the
// copies of slice s + STAGES - 2 into the stage of slice s - 2; the wgmmas of slice s (one group);
// wgmma_wait<1>: the group of slice s - 1 is done. The stage refilled at s was last read by the
// wgmmas of s - 2, which every thread's wait at s - 1 completed before the barrier at s: so
// STAGES - 2 slices of copies and one slice of wgmmas are in flight, the tensor cores working
// through slice s while the warpgroup rounds s + 1.
//
// Split-K as PipeTile: with p.partial the block computes piece z (its raw partial; tickets or the
// reduction kernel finish it); with p.split_k but no p.partial ("folded") every piece in turn,
// each piece's float32 sum added into the total in the order z = 0, 1, ... from 0 (the first wgmma
// of a piece overwrites the accumulators: scale-d 0), so a row's result depends on K's split
// points only, never on the batch. Every thread must call it; the launch gives it smem_bytes() of
// dynamic shared memory (16-byte aligned is enough without swizzle).
template <GemmPrecision PREC, int BN_, int STAGES, int WG = 1>
struct WgmmaTile {
  static_assert(WG == 1 || WG == 2, "one or two warpgroups");
  static constexpr int BM = 64 * WG, BN = BN_, BK = 32, THREADS = 128 * WG;
  static constexpr int ROW_STEP = THREADS / 8;  // rows between a thread's chunks (8 rows per 64 chunks)
  static constexpr bool kImages = true;  // X read in place from the images (GemmParams::images): Copier's IMG
  static constexpr bool BF16 = PREC == GemmPrecision::BF16;
  static_assert(BN == 64 || BN == 128, "kernels/wgmma.cuh wraps m64n64 and m64n128");
  static constexpr int KSTEP = BF16 ? 16 : 8;
  static_assert(PREC != GemmPrecision::FP32, "WgmmaTile runs TF32 or BF16");
  static_assert(STAGES >= 3, "one slice of copies and one of wgmmas in flight need three stages");
  // Floats of a stage: A's raw slice, B's, then (BF16) A's and B's bf16 copies (2 bf16 a float).
  static constexpr int RAW_A = BM * BK, RAW = (BM + BN) * BK;
  static constexpr int STAGE = BF16 ? RAW + RAW / 2 : RAW;
  static constexpr uint32_t LBO = 128;                         // bytes between core matrices along k
  static constexpr uint32_t SBO = BF16 ? BK * 2 * 8 : BK * 4 * 8;  // bytes between 8-row groups
  static constexpr int CHUNKS_A = BM * BK / 4 / THREADS, CHUNKS_B = BN * BK / 4 / THREADS;  // a thread's chunks

  template <Kind KIND>
  static constexpr int smem_bytes() {
    return STAGES * STAGE * int(sizeof(float));
  }

  // One operand's copies, seen from one thread: chunks it = 0..CHUNKS-1 at rows x + ROW_STEP·it, k + kq.
  // IMG (A, the Forward GEMM's X): the operand may be X read in place from the uint8 images
  // (init_images; GemmParams::images), as PipeTile's Copier: a chunk is 4 pixels, one 4-byte
  // cp.async (cp_async4) into the first 4 bytes of its 16-byte slot, or, at a row or K tail (and when
  // the images or their rows are not 4-byte aligned), the 4 bytes stored by the thread (0 outside);
  // round_own expands them (pixel_value) before it rounds. A chunk's image row is fixed for the
  // whole K walk (x is the row): looked up once in init_images, then advanced BK bytes a slice.
  template <int CHUNKS, bool IMG = false>
  struct Copier {
    const float* ptr[CHUNKS];
    const float* src;
    int ld, x, kq, x_valid;
    bool img = false, img_cp = false;     // IMG only: X is the images; its chunks may be 4-byte copies
    const uint8_t* iptr[IMG ? CHUNKS : 1];  // IMG only: chunk it's first pixel at the next slice
    __device__ __forceinline__ void init(const float* s, int ld_, int x0, int x_valid_, int k0) {
      const int tid = int(threadIdx.x);
      src = s, ld = ld_, x_valid = x_valid_;
      x = x0 + 8 * (tid / 64) + tid % 8;
      kq = 4 * ((tid % 64) / 8);
#pragma unroll
      for (int it = 0; it < CHUNKS; ++it) ptr[it] = s + ((long long)(x + ROW_STEP * it) * ld + k0 + kq);
    }
    // init for X read from the images: p's images and index, base = image_base(p) (read once per
    // block), ld = K pixels a row. Rows at or past x_valid are never read (load_bytes: 0).
    __device__ __forceinline__ void init_images(const GemmParams& p, int64_t base, int ld_, int x0, int x_valid_,
                                                int k0) {
      static_assert(IMG, "only the operand that may be X reads the images");
      init(nullptr, ld_, x0, x_valid_, k0);
      img = true;
      img_cp = reinterpret_cast<std::uintptr_t>(p.images) % 4 == 0 && ld_ % 4 == 0;
#pragma unroll
      for (int it = 0; it < CHUNKS; ++it) {
        const int r = x + ROW_STEP * it;
        iptr[it] = r < x_valid ? image_row(p, base, r, ld_) + k0 + kq : p.images;
      }
    }
    // Issues this thread's chunks of the slice starting at k0 (cut at k_end) into the operand's raw
    // stage S, then moves its pointers on by one slice.
    __device__ __forceinline__ void issue(float* S, int k0, int k_end) {
      const int k = k0 + kq;
#pragma unroll
      for (int it = 0; it < CHUNKS; ++it) {
        float* d = S + 4 * (int(threadIdx.x) + it * THREADS);
        const int xc = x + ROW_STEP * it;
        if constexpr (IMG) {
          if (img) {
            if (img_cp && xc < x_valid && k + 3 < k_end) {
              cp_async4(d, iptr[it]);
            } else {  // the chunk's 4 bytes by hand: pixel k + j of row xc, 0 outside
              tail_bytes<true>(d, iptr[it], xc, k, k_end, x_valid, x_valid, -1);
            }
            iptr[it] += BK;
            continue;
          }
        }
        if (xc < x_valid && k + 3 < k_end)
          cp_async16(d, ptr[it]);
        else
          *reinterpret_cast<float4*>(d) = load_tail_chunk<true>(src, ld, xc, k, k_end, x_valid, x_valid, -1);
        ptr[it] += BK;
      }
    }
  };

  // Rounds this thread's own chunks of one operand's slice (raw floats at S) once they have landed:
  // TF32 in place; BF16 into the operand's bf16 copy H (byte offset of chunk c: (c/64)·SBO +
  // (kc/2)·LBO + (c%8)·16 + (kc%2)·8, kc = (c%64)/8: k pairs (k, k+1) packed low-first).
  // img (X from the images): a slot holds 4 pixels in its first 4 bytes, expanded first to the
  // gathered batch's floats (pixel_value), so the rounded operand is the same bits.
  template <int CHUNKS>
  __device__ __forceinline__ static void round_own(float* S, float* H, bool img) {
#pragma unroll
    for (int it = 0; it < CHUNKS; ++it) {
      const int c = int(threadIdx.x) + it * THREADS;
      float4* d = reinterpret_cast<float4*>(S + 4 * c);
      float4 v;
      if (img) {
        const uchar4 u = *reinterpret_cast<const uchar4*>(d);
        v = make_float4(pixel_value(u.x), pixel_value(u.y), pixel_value(u.z), pixel_value(u.w));
      } else {
        v = *d;
      }
      if constexpr (BF16) {
        const int kc = (c % 64) / 8;
        const int byte = (c / 64) * int(SBO) + (kc / 2) * int(LBO) + (c % 8) * 16 + (kc % 2) * 8;
        *reinterpret_cast<uint2*>(reinterpret_cast<unsigned char*>(H) + byte) =
            make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
      } else {
        (void)H;
        *d = make_float4(bits_float(to_tf32(v.x)), bits_float(to_tf32(v.y)), bits_float(to_tf32(v.z)),
                         bits_float(to_tf32(v.w)));
      }
    }
  }

  // ABLATE: as PipeTile's (0 in every GEMM the product runs; dense_force_ablation).
  template <Kind KIND, unsigned ABLATE = 0>
  __device__ static void run(const GemmParams& p, int m0, int n0, int z, float* smem) {
    static_assert(KIND == Kind::Forward, "WgmmaTile runs the forward GEMM (both operands K-major)");
#if !MNIST_WGMMA
    __trap();  // only sm_90a code runs this tile (dense.cu's probe keeps the launchers off it
    return;    // elsewhere); the compute_90 PTX keeps no body of it to compile
#endif
    constexpr bool COPY = !(ABLATE & kAblateCopies), PREPARE = !(ABLATE & kAblatePrepare),
                   MATH = !(ABLATE & kAblateMath);
    const SlicePlan plan(p, z, BK, true);  // Forward only
    const bool fold = plan.fold;
    const int piece = plan.piece, k_begin = plan.k_begin, k_last = plan.k_last;
    const int piece_slices = plan.piece_slices, slices = plan.slices;

    Copier<CHUNKS_A, true> ca;  // A is X: it may be the images
    Copier<CHUNKS_B> cb;
    if (images_a<KIND>(p))
      ca.init_images(p, image_base(p), p.lda, m0, p.M, k_begin);
    else
      ca.init(p.a, p.lda, m0, p.M, k_begin);
    cb.init(p.b, p.ldb, n0, p.N, k_begin);
    // (GemmParams::rounded, as PipeTile's: a float operand written rounded needs no pass at TF32;
    // BF16's pass writes the bf16 copy the wgmma reads, and the images' pass is their expansion)
    const bool prepare_a = BF16 || !(p.rounded & kRoundedA) || images_a<KIND>(p);
    const bool prepare_b = BF16 || !(p.rounded & kRoundedB);
    int ik0 = k_begin;                                      // next slice to issue
    int ike = fold ? (piece < p.K ? piece : p.K) : k_last;  // and its piece's end
    auto issue_next = [&](float* st) {
      ca.issue(st, ik0, ike);
      cb.issue(st + RAW_A, ik0, ike);
      ik0 += BK;
      if (fold && ik0 >= ike) ike = ike + piece < p.K ? ike + piece : p.K;  // the next piece
    };

    constexpr int R = BN / 2;  // accumulators a thread (m64nBN)
    float acc[R], sum[R];
#pragma unroll
    for (int v = 0; v < R; ++v) acc[v] = sum[v] = 0.0f;

    constexpr int AHEAD = STAGES - 2;  // slices of copies in flight
#pragma unroll 1  // (one copy of issue_next's code for the prologue: as PipeTile's)
    for (int s = 0; s < AHEAD; ++s) {
      if (COPY && s < slices) issue_next(smem + s * STAGE);
      cp_async_commit();
    }
    int left = piece_slices;  // slices left in the current piece (fold)
    bool fresh = true;        // the next wgmma starts a piece: overwrite the accumulators
    const uint32_t wg_rows = uint32_t(threadIdx.x / 128) * 8u * SBO;  // this warpgroup's rows in A
    for (int s = 0; s < slices; ++s) {
      float* const st = smem + (s % STAGES) * STAGE;
      cp_async_wait<AHEAD - 1>();  // this thread's copies of slice s have landed
      if constexpr (PREPARE) {
        if (prepare_a) round_own<CHUNKS_A>(st, st + RAW, ca.img);  // images: expanded here, before the barrier
        if (prepare_b) round_own<CHUNKS_B>(st + RAW_A, st + RAW + RAW_A / 2, false);
      }
      fence_proxy_async();
      __syncthreads();  // everyone's slice s is rounded; every wgmma of slice s - 2 is done
      if (COPY && s + AHEAD < slices) issue_next(smem + ((s + AHEAD) % STAGES) * STAGE);
      cp_async_commit();  // possibly empty: one group per slice for the wait count

      if constexpr (MATH) {
        // (warpgroup q: rows 64q.. of the tile, 8 row groups of SBO bytes a group further on)
        const unsigned char* A = reinterpret_cast<const unsigned char*>(BF16 ? st + RAW : st) + wg_rows;
        const float* B = BF16 ? st + RAW + RAW_A / 2 : st + RAW_A;
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < BK; ks += KSTEP) {
          // KSTEP elements of 4 (TF32) or 2 (BF16) bytes: 32 bytes, two core matrices along k
          const uint32_t off = uint32_t(ks / KSTEP) * 2 * LBO;
          const uint64_t da = wgmma_desc(A + off, LBO, SBO);
          const uint64_t db = wgmma_desc(reinterpret_cast<const unsigned char*>(B) + off, LBO, SBO);
          if constexpr (BF16)
            wgmma_bf16<BN>(acc, da, db, !(fresh && ks == 0));
          else
            wgmma_tf32<BN>(acc, da, db, !(fresh && ks == 0));
        }
        wgmma_commit();
      }
      fresh = false;
      wgmma_wait<1>();  // slice s - 1's wgmmas are done (its stage may be refilled after the next barrier)
      if (fold && --left == 0) {  // piece done: total += piece, in piece order
        wgmma_wait<0>();
        wgmma_fence_operands(acc);
#pragma unroll
        for (int v = 0; v < R; ++v) sum[v] += acc[v];
        left = piece_slices, fresh = true;
      }
    }
    wgmma_wait<0>();
    wgmma_fence_operands(acc);
    if (fold && left != piece_slices) {  // the last piece, when shorter
#pragma unroll
      for (int v = 0; v < R; ++v) sum[v] += acc[v];
    }
    cp_async_wait<0>();  // only empty groups remain

    // acc[4j + r] is D[16w + g + 8·(r/2)][8j + 2t + r%2] (kernels/wgmma.cuh): store_warp_tiles'
    // layout of one 16-row x BN/8 tiles of 16 x 8.
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    float out[1][BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) out[0][j][r] = fold ? sum[4 * j + r] : acc[4 * j + r];
    store_warp_tiles<KIND>(p, z, m0 + 16 * warp, n0, lane / 4, lane % 4, out, epilogue_step<KIND>(p));
  }
};

// TF32 / BF16 wgmma for the WEIGHT GEMM dW = dZᵀ·[X | 1] (C [M = out, N = in+1] = Σ_k A(m,k)·B(n,k),
// A = dZ [K,M] m-fastest, B = X [K,N] n-fastest, the ones column n == p.ones_col: the db column).
// Both operands are MN-major in memory while wgmma's TF32 form reads only K-major operands, so the
// tile transposes them on chip: a slice's raw floats land by cp.async in chunks of 4 consecutive
// m (n) at one k (a warp copies 4 rows x 128 contiguous bytes; chunk_x/chunk_k), and the rounding
// pass that every tensor-core tile already has
// (each element read and written once, by the thread that copied it) writes the rounded element
// into a separate K-major canonical copy (kernels/wgmma_desc.hpp: (x, k) at (x/8)·SBO + (k/KE)·LBO +
// (x%8)·16 + (k%KE)·E, E = 4 bytes (TF32) or 2 (BF16), KE = 16/E). One code path for both
// precisions (the BF16 transpose bits would need a second layout and model): TF32 stores one word,
// BF16 one 16-bit half (cvt.rn.bf16x2.f32's low half), per element. Row, column and K tails and the
// ones column as every tile (load_tail_chunk: 0 outside, 1 in the ones column).
//
// Shape: BM = 128 rows = the whole output width of layer 0 (128 units), two warpgroups (256
// threads) of one m64nBNk* accumulator each, rows 64q..64q+63. So a block reads its rows of X once
// for all 128 outputs (the 64-row PipeTile tiles read X twice), and dZ (128 floats a row, 512 B)
// once per column tile: at 4096 x 784 -> 128 with BN = 64 (GemmTile::Wgmma), 13 column tiles x
// weight_split_rows' 16 pieces = 208 blocks read 13 x 2 MB of dZ + 12.5 MB of X (~39 MB, vs ~54 MB
// for 64 x 64); BN = 128 (GemmTile::Wgmma128) 7 x 16 = 112 blocks and ~27 MB. (Until the
// nineteenth session the split was 6 pieces: 78 and 42 blocks, which a018989 measured.)
//
// Pipeline: raw slices in a ring of RAW_STAGES = AHEAD + 1 stages (AHEAD slices of copies in
// flight), canonical copies in a ring of 3. Slice s: wait for this thread's copies of s; round and
// transpose them from raw[s % RAW_STAGES] into canon[s % 3]; fence.proxy.async; barrier; issue the
// copies of slice s + AHEAD into raw[(s + AHEAD) % RAW_STAGES] = raw[(s - 1) % RAW_STAGES], whose
// last reader (the transpose of s - 1) every thread finished before the barrier of s; the wgmmas
// of slice s (one group); wgmma_wait<1> (slice s - 1's group done). canon[s % 3] was last read by
// the wgmmas of s - 3, which every thread's wait at s - 2 completed before the barrier of s - 1,
// which precedes this thread's transpose at s: so one slice of wgmmas runs while the block
// transposes the next one. Split-K: piece z of p.split_k into p.partial (every Weight GEMM with a
// workspace, and dense_weight_partials), as every tile; no fold (the weight GEMM is never folded).
template <GemmPrecision PREC, int BN_, int AHEAD>
struct WgmmaWeightTile {
  static constexpr int BM = 128, BN = BN_, BK = 32, WG = BM / 64, THREADS = 128 * WG;
  static constexpr bool kImages = true;  // X read in place from the images (GemmParams::images): Copier's IMG
  static constexpr bool BF16 = PREC == GemmPrecision::BF16;
  static_assert(BN == 64 || BN == 128, "kernels/wgmma.cuh wraps m64n64 and m64n128");
  static_assert(PREC != GemmPrecision::FP32, "WgmmaWeightTile runs TF32 or BF16");
  static_assert(AHEAD >= 1, "at least one slice of copies in flight");
  static constexpr int KSTEP = BF16 ? 16 : 8, E = BF16 ? 2 : 4, KE = 16 / E;
  static constexpr int RAW_STAGES = AHEAD + 1, CANON_STAGES = 3;
  static constexpr int RAW_A = BK * BM, RAW = (BM + BN) * BK;       // floats of a raw stage
  static constexpr int CAN_A_BYTES = BM * BK * E, CAN = (BM + BN) * BK * E / 4;  // a canonical stage
  static constexpr uint32_t LBO = 128;                // bytes between core matrices along k
  static constexpr uint32_t SBO = BK / KE * 128;      // bytes between 8-row groups (a row's BK elements)
  static constexpr int CHUNKS_A = BM * BK / 4 / THREADS, CHUNKS_B = BN * BK / 4 / THREADS;

  template <Kind KIND>
  static constexpr int smem_bytes() {
    return (RAW_STAGES * RAW + CANON_STAGES * CAN) * int(sizeof(float));
  }

  // Chunk c of one MN-major operand's slice (X elements a row, BK rows; chunk = 4 consecutive x at
  // one k; stored raw at float 4c): warp group w = c / 32 covers 32 x by 4 k, lane l = c % 32 the
  // chunk at x = 32·(w % XG) + 4·(l % 8), k = 4·(w / XG) + l / 8 (XG = X/32 groups along x). A warp's
  // copies read 4 rows of 128 contiguous bytes; a thread's chunks (c = tid + it·THREADS) share one x
  // and lie KSTRIDE = 32/XG rows apart (THREADS/32 = 8 groups a step, XG of them along x).
  template <int X>
  __device__ __forceinline__ static int chunk_x(int c) {
    return 32 * ((c / 32) % (X / 32)) + 4 * (c % 8);
  }
  template <int X>
  __device__ __forceinline__ static int chunk_k(int c) {
    return 4 * ((c / 32) / (X / 32)) + (c % 32) / 8;
  }

  // One MN-major operand's copies, seen from one thread: chunks it = 0..CHUNKS-1 of a slice at
  // x, k + it·KSTRIDE (chunk_x/chunk_k of tid + it·THREADS); x_valid elements exist in src, x_end in
  // the GEMM (one more with the ones column `ones`).
  // IMG (B, the Weight GEMM's X): the operand may be X read in place from the uint8 images
  // (init_images; GemmParams::images), as PipeTile's Copier: a chunk is 4 pixels x .. x+3 of image
  // row k, one 4-byte cp.async (cp_async4) into the first 4 bytes of its 16-byte slot, or, at a
  // tail, in the ones column's chunk (and when the images or their rows are not 4-byte aligned), the
  // 4 bytes stored by the thread (0 outside, byte 1 in the ones column); transpose_own expands them.
  // k is X's row, new every slice: the image rows of a slice's chunks are read one issue ahead
  // (look_ahead), so the index's latency hides behind the slices in flight.
  template <int X, int CHUNKS, bool IMG = false>
  struct Copier {
    static_assert(X % 32 == 0 && (THREADS / 32) % (X / 32) == 0, "whole warp groups along x");
    static constexpr int KSTRIDE = 4 * (THREADS / 32) / (X / 32);
    const float* src;
    int ld, x, k, x_valid, x_end, ones;
    // IMG only: X is the images, its chunks may be 4-byte copies; the images, index, image_base and
    // X's rows (the GEMM's K); the image rows of the next issued slice's chunks (-1: past the rows).
    bool img = false, img_cp = false;
    const uint8_t* images;
    const int32_t* idx;
    int64_t base;
    int rows;
    int64_t next_src[IMG ? CHUNKS : 1];
    __device__ __forceinline__ void init(const float* s, int ld_, int x0, int x_valid_, int x_end_, int ones_) {
      const int tid = int(threadIdx.x);
      src = s, ld = ld_, x_valid = x_valid_, x_end = x_end_, ones = ones_;
      x = x0 + chunk_x<X>(tid);
      k = chunk_k<X>(tid);
    }
    // init for X read from the images: p's images and index, base_ = image_base(p) (read once per
    // block), ld_ = K pixels a row, rows_ = X's rows; k0: the first slice to issue.
    __device__ __forceinline__ void init_images(const GemmParams& p, int64_t base_, int ld_, int x0, int x_valid_,
                                                int x_end_, int ones_, int rows_, int k0) {
      static_assert(IMG, "only the operand that may be X reads the images");
      init(nullptr, ld_, x0, x_valid_, x_end_, ones_);
      img = true;
      img_cp = reinterpret_cast<std::uintptr_t>(p.images) % 4 == 0 && ld_ % 4 == 0;
      images = p.images, idx = p.rows.idx, base = base_, rows = rows_;
      look_ahead(k0);
    }
    // IMG: the image rows of the chunks of the slice at k0 (the next to issue).
    __device__ __forceinline__ void look_ahead(int k0) {
      if constexpr (IMG) {
#pragma unroll
        for (int it = 0; it < CHUNKS; ++it) {
          const int r = k0 + k + it * KSTRIDE;
          next_src[it] = r < rows ? (idx ? int64_t(idx[base + r]) : base + r) : -1;
        }
      }
    }
    // Issues this thread's chunks of the slice [k0, min(k0 + BK, k_end)) into the raw stage S. The
    // images: slices must be issued in order from init_images' k0 (run does: the rows of k0 were
    // looked up by the previous issue).
    __device__ __forceinline__ void issue(float* S, int k0, int k_end) {
      if constexpr (IMG) {
        if (img) {
          const uint8_t* q_[CHUNKS];  // this slice's rows, read by the previous issue (past the rows: never read)
#pragma unroll
          for (int it = 0; it < CHUNKS; ++it) q_[it] = images + (next_src[it] >= 0 ? next_src[it] * ld + x : 0);
          look_ahead(k0 + BK);
#pragma unroll
          for (int it = 0; it < CHUNKS; ++it) {
            float* d = S + 4 * (int(threadIdx.x) + it * THREADS);
            const int kc = k0 + k + it * KSTRIDE;
            const uint8_t* q = q_[it];
            if (img_cp && kc < k_end && x + 3 < x_valid) {
              cp_async4(d, q);
            } else {  // by hand: pixel x + j of row kc, 0 outside, byte 1 in the ones column
              tail_bytes<false>(d, q, x, kc, k_end, x_valid, x_end, ones);
            }
          }
          return;
        }
      }
#pragma unroll
      for (int it = 0; it < CHUNKS; ++it) {
        float* d = S + 4 * (int(threadIdx.x) + it * THREADS);
        const int kc = k0 + k + it * KSTRIDE;
        if (kc < k_end && x + 3 < x_valid)
          cp_async16(d, src + (std::size_t(kc) * ld + x));
        else
          *reinterpret_cast<float4*>(d) = load_tail_chunk<false>(src, ld, x, kc, k_end, x_valid, x_end, ones);
      }
    }
    // IMG: where this thread's chunks hold the ones column (its element index in each chunk: they
    // all share x), or -1 (every thread but the few of the last column tile).
    __device__ __forceinline__ int ones_j() const { return img && ones >= x && ones < x + 4 ? ones - x : -1; }
  };

  // Rounds this thread's chunks of one operand's raw slice S into its K-major canonical copy C:
  // element (x + j, k) of chunk c at byte ((x+j)/8)·SBO + (k/KE)·LBO + ((x+j)%8)·16 + (k%KE)·E. The
  // 4 elements of a chunk are stored in the order j = (i + (l%8)/2) % 4, i = 0..3 (l = c % 32), so
  // that one store of a warp hits 32 distinct banks: bank = 4·((x+j)%8) + k%4 (TF32; BF16: the
  // word of (x+j, k), two lanes per word), and the warp's lanes cover (x%8)/4 x j x k%4 once each.
  // img (X from the images): a slot holds 4 pixels in its first 4 bytes, expanded first to the
  // gathered batch's floats (pixel_value); ones_j >= 0: that element is the ones column, its byte
  // (1 inside the K range, else 0) made 1.0f or 0.0f, as load_tail_chunk gives it.
  template <int X, int CHUNKS>
  __device__ __forceinline__ static void transpose_own(const float* S, unsigned char* C, bool img, int ones_j) {
#pragma unroll
    for (int it = 0; it < CHUNKS; ++it) {
      const int c = int(threadIdx.x) + it * THREADS;
      const int x = chunk_x<X>(c), k = chunk_k<X>(c), rot = (c % 8) / 2;
      float4 v;
      if (img) {
        const uchar4 u = *reinterpret_cast<const uchar4*>(S + 4 * c);
        v = make_float4(pixel_value(u.x), pixel_value(u.y), pixel_value(u.z), pixel_value(u.w));
        if (ones_j >= 0) {
          const float one = reinterpret_cast<const uint8_t*>(S + 4 * c)[ones_j] != 0 ? 1.0f : 0.0f;
          if (ones_j == 0) v.x = one;
          else if (ones_j == 1) v.y = one;
          else if (ones_j == 2) v.z = one;
          else v.w = one;
        }
      } else {
        v = *reinterpret_cast<const float4*>(S + 4 * c);
      }
      unsigned char* base = C + (x / 8) * int(SBO) + (k / KE) * int(LBO) + (k % KE) * E;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = (i + rot) & 3;
        const float e = j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
        unsigned char* d = base + ((x + j) % 8) * 16;
        if constexpr (BF16)
          *reinterpret_cast<uint16_t*>(d) = uint16_t(pack_bf16x2(e, 0.0f) & 0xFFFFu);
        else
          *reinterpret_cast<uint32_t*>(d) = to_tf32(e);
      }
    }
  }

  template <Kind KIND>
  __device__ static void run(const GemmParams& p, int m0, int n0, int z, float* smem) {
    static_assert(KIND == Kind::Weight, "WgmmaWeightTile runs the weight GEMM (both operands MN-major)");
#if !MNIST_WGMMA
    __trap();  // (as WgmmaTile::run)
    return;
#endif
    const SlicePlan plan(p, z, BK, false);
    const int k_begin = plan.k_begin, k_last = plan.k_last, slices = plan.slices;

    Copier<BM, CHUNKS_A> ca;
    Copier<BN, CHUNKS_B, true> cb;  // B is X: it may be the images
    ca.init(p.a + m0, p.lda, 0, p.M - m0, p.M - m0, -1);
    const int b_valid = p.ones_col >= 0 ? p.ones_col : p.N;
    if (images_b<KIND>(p))
      cb.init_images(p, image_base(p), p.ldb, n0, b_valid, p.N, p.ones_col, p.K, k_begin);
    else
      cb.init(p.b, p.ldb, n0, b_valid, p.N, p.ones_col);
    const int b_ones_j = cb.ones_j();
    float* const raw = smem;
    unsigned char* const canon = reinterpret_cast<unsigned char*>(smem + RAW_STAGES * RAW);
    auto issue = [&](int s) {
      float* st = raw + (s % RAW_STAGES) * RAW;
      ca.issue(st, k_begin + s * BK, k_last);
      cb.issue(st + RAW_A, k_begin + s * BK, k_last);
    };

    constexpr int R = BN / 2;  // accumulators a thread (m64nBN)
    float acc[R];
#pragma unroll
    for (int v = 0; v < R; ++v) acc[v] = 0.0f;
    const int q = int(threadIdx.x) / 128;  // this thread's warpgroup: output rows 64q..64q+63

#pragma unroll 1  // (one copy of issue's code for the prologue: as PipeTile's)
    for (int s = 0; s < AHEAD; ++s) {
      if (s < slices) issue(s);
      cp_async_commit();
    }
    for (int s = 0; s < slices; ++s) {
      const float* st = raw + (s % RAW_STAGES) * RAW;
      unsigned char* const cn = canon + (s % CANON_STAGES) * CAN * 4;
      cp_async_wait<AHEAD - 1>();  // this thread's copies of slice s have landed
      transpose_own<BM, CHUNKS_A>(st, cn, false, -1);
      transpose_own<BN, CHUNKS_B>(st + RAW_A, cn + CAN_A_BYTES, cb.img, b_ones_j);  // images: expanded here
      fence_proxy_async();
      __syncthreads();  // slice s transposed by everyone; raw (s - 1) read; wgmmas of s - 3 done
      if (s + AHEAD < slices) issue(s + AHEAD);
      cp_async_commit();  // possibly empty: one group per slice for the wait count

      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < BK; ks += KSTEP) {
        const uint32_t off = uint32_t(ks / KSTEP) * 2 * LBO;  // KSTEP elements: two core matrices along k
        const uint64_t da = wgmma_desc(cn + q * 8 * int(SBO) + off, LBO, SBO);
        const uint64_t db = wgmma_desc(cn + CAN_A_BYTES + off, LBO, SBO);
        if constexpr (BF16)
          wgmma_bf16<BN>(acc, da, db, !(s == 0 && ks == 0));
        else
          wgmma_tf32<BN>(acc, da, db, !(s == 0 && ks == 0));
      }
      wgmma_commit();
      wgmma_wait<1>();  // slice s - 1's wgmmas are done
    }
    wgmma_wait<0>();
    wgmma_fence_operands(acc);
    cp_async_wait<0>();  // only empty groups remain

    // acc[4j + r] is D[16w + g + 8·(r/2)][8j + 2t + r%2] of warpgroup q (kernels/wgmma.cuh)
    const int warp = (int(threadIdx.x) % 128) / 32, lane = int(threadIdx.x) % 32;
    float out[1][BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) out[0][j][r] = acc[4 * j + r];
    store_warp_tiles<KIND>(p, z, m0 + 64 * q + 16 * warp, n0, lane / 4, lane % 4, out, epilogue_step<KIND>(p));
  }
};

// One GEMM with its epilogue fused into the store (block (x, y): the tile at rows
// (y % row tiles)*BM, columns x*BN, of split y / row tiles; one split without p.split_k).
// Pointers come in GemmParams, so none can be __restrict__; the launchers check that outputs do
// not alias inputs. Per KIND (see the table at the top):
//   Forward: fuses GEMM + bias + ReLU + dropout. Reads X [B,K], W [N,K], b [N], counters->step
//            (when dropout reads it on the device); writes Y [B,N], or partial [splits,B,N].
//   Data:    fuses GEMM + the previous layer's ReLU/dropout mask. Reads dZ [B,N], W [N,K],
//            mask [B,K] (optional); writes dX [B,K].
//   Weight:  fuses the weight GEMM and the bias reduction (db is the product with a ones column
//            appended to X). Reads dZ [B,N], X [B,K]; writes dW [N,K] and db [N], or
//            partial [splits,N,K+1].
// Split-K in one pass (p.partial and p.tickets set), after a block of split z stored its partial
// of the tile (m0, n0) (tile index `tile`, unique in the launch): every thread of the block calls
// it. The block takes a ticket of its tile (after a __threadfence: its partials are visible
// device-wide before the count); the LAST of the tile's split_count(p) blocks to arrive sums the
// tile's partials in the fixed order z = 0, 1, ... from 0.0f and applies KIND's epilogue, then
// resets the ticket to 0 for the next launch. The same float additions in the same order as
// dense_split_reduce_kernel, so bitwise its result, whatever order the blocks finish in; one
// launch less. Shared by every tile kind (SimtTile, MmaTile, PipeTile): it only needs the tile's
// extent and the partials in memory.
// A split's quad (4 consecutive outputs of a row at partial + i, `cols` = 1..4 of them in range)
// summed over its pieces z = 0 .. splits-1 (piece z at + z·stride): each output 0.0f + piece 0 +
// piece 1 + ... in that order, kFinishPieces pieces' loads in flight at a time, as float4 where
// `whole` (all 4 in range, 16-byte aligned), else element by element. From L2 (load_l2): other
// blocks, or the launch before, wrote them. 16 floats in flight: more (4 quads at a time) raised
// the register count of most tiles by 30-120, since finish_split_tile is inlined in every GEMM
// kernel, split or not, and cut the blocks an SM of the 64x64 tiles (ptxas -v).
constexpr int kFinishPieces = 4;
__device__ __forceinline__ void sum_quad_pieces(float (&v)[4], const float* quad, std::size_t stride, int splits,
                                                bool whole, int cols) {
  v[0] = v[1] = v[2] = v[3] = 0.0f;
  for (int z0 = 0; z0 < splits; z0 += kFinishPieces) {
    float4 t[kFinishPieces];
#pragma unroll
    for (int zz = 0; zz < kFinishPieces; ++zz) {
      t[zz] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (z0 + zz >= splits) continue;
      const float* src = quad + std::size_t(z0 + zz) * stride;
      if (whole) {
        t[zz] = load_l2(reinterpret_cast<const float4*>(src));
      } else {  // a quad cut by the row's end, or unaligned
        t[zz].x = load_l2(src);
        if (cols > 1) t[zz].y = load_l2(src + 1);
        if (cols > 2) t[zz].z = load_l2(src + 2);
        if (cols > 3) t[zz].w = load_l2(src + 3);
      }
    }
#pragma unroll
    for (int zz = 0; zz < kFinishPieces; ++zz) {
      if (z0 + zz >= splits) break;
      v[0] += t[zz].x, v[1] += t[zz].y, v[2] += t[zz].z, v[3] += t[zz].w;
    }
  }
}

// Stores the quad's sums v through KIND's epilogue (inputs x): one 16-byte store where the quad is
// whole, its place aligned and it holds no ones column (db), else output by output.
template <Kind KIND>
__device__ __forceinline__ void store_quad(const GemmParams& p, int m, int n, const float (&v)[4],
                                           const float (&x)[4], int cols, bool whole, uint64_t step) {
  const bool ones_inside = KIND == Kind::Weight && p.ones_col >= n && p.ones_col < n + 4;
  float* const d = p.out + std::size_t(m) * p.ldo + n;
  if (whole && !ones_inside && (reinterpret_cast<std::uintptr_t>(d) & 15u) == 0) {
    float w[4];
    output_values<KIND, 4>(w, p, m, n, v, x, step);
    StoreVec<4>::put(d, w);
    return;
  }
#pragma unroll
  for (int c = 0; c < 4; ++c)
    if (c < cols) store_output<KIND>(p, m, n + c, v[c], x[c], step);
}

// The shared memory a tile's block may reuse once its loop is done (finish_split_tile's staging):
// a PipeTile's or WgmmaTile's dynamic stages (smem_bytes). The other tiles' Smem structs (17-35 KB)
// would hold about one quad a thread, no fewer round trips: they finish quad by quad, and their
// kernels keep the code they had.
template <class Tile, Kind KIND, class S>
__device__ __forceinline__ int stage_floats_of(const S&) {
  if constexpr (std::is_same_v<S, float*>)
    return Tile::template smem_bytes<KIND>() / int(sizeof(float));
  else
    return 0;
}
template <class S>
__device__ __forceinline__ float* stage_of(S& smem) {
  if constexpr (std::is_same_v<S, float*>)
    return smem;
  else
    return nullptr;
}

// The largest number of quads a thread stages in one round of finish_split_tile.
constexpr int kFinishRoundQuads = 16;

template <int BM, int BN, Kind KIND, bool STAGED>
__device__ __forceinline__ void finish_split_tile(const GemmParams& p, int m0, int n0, int tile, float* stage,
                                                  int stage_floats) {
  if (!p.partial || !p.tickets) return;
  __shared__ bool s_last;
  __threadfence();  // this thread's partials before the block's ticket
  __syncthreads();
  const int splits = split_count(p);
  if (threadIdx.x == 0) s_last = atomicAdd(&p.tickets[tile], 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // every other block's partials of the tile are out (they took their tickets)
  const uint64_t step = epilogue_step<KIND>(p);
  const std::size_t mn = std::size_t(p.M) * p.N;
  // The tile in quads (consecutive threads, consecutive quads), one a thread at a time: its
  // epilogue inputs and pieces loaded before the first add, nothing stored until the last
  // (sum_quad_pieces). The element-at-a-time loop this replaces stored each output before loading
  // the next one's pieces: 64 L2 round trips in sequence per thread for a 128 x 128 tile of 4
  // pieces, 16 now, and a Philox block per output of a dropout layer where a quad draws one
  // (dense_units). The same additions in the same order: the same bits.
  constexpr int QR = BN / 4;  // quads in a tile row
  static_assert(BN % 4 == 0, "whole quads per tile row");
  const bool vec = p.N % 4 == 0 && (reinterpret_cast<std::uintptr_t>(p.partial) & 15u) == 0;  // 16-byte quads
  const int threads = int(blockDim.x), tid = int(threadIdx.x);
  // Staged through the block's shared memory (its loop is done: every warp passed the barrier
  // above): a round issues the pieces of R quads a thread as 16-byte cp.async, all in flight at
  // once, waits once, then sums each quad from shared memory in the order z = 0, 1, ... from 0.0f
  // (sum_quad_pieces' additions: the same bits) and stores it. ceil(quads a thread / R) L2 round
  // trips instead of one a quad (a 128x128 tile of 4 pieces: 2 instead of 16), with no registers
  // held across the round (the batch in registers cost 30-120 of them in every GEMM kernel). Slot
  // (r, z) of thread t is float4 (r·splits + z)·threads + t: a warp's slots are consecutive. For the
  // Forward GEMM's 16-byte quads (N % 4 == 0: the model's 128 and 64; a Weight GEMM's rows of K + 1
  // with K % 4 == 0, which its 16-byte copies need, never are); not for the Data GEMM (its mask, read
  // per output, would go back to one round trip a quad), nor where the block's shared memory holds
  // less than one quad a thread: there one quad at a time, as below.
  const bool stageable =
      STAGED && KIND == Kind::Forward && vec && stage && (reinterpret_cast<std::uintptr_t>(stage) & 15u) == 0;
  const int fit = stageable ? stage_floats / (4 * splits * threads) : 0;
  const int R = fit < kFinishRoundQuads ? fit : kFinishRoundQuads;
  if (STAGED && R > 0) {
    float4* const slots = reinterpret_cast<float4*>(stage);
    for (int q0 = 0; q0 < BM * QR; q0 += R * threads) {
      // quad r of this thread in the round: its place (m, n), or false past the tile or matrix
      // (N % 4 == 0 here, so a quad in range is whole)
      auto quad = [&](int r, int& m, int& n) {
        const int q = q0 + r * threads + tid;
        m = m0 + q / QR, n = n0 + 4 * (q % QR);
        return q < BM * QR && m < p.M && n < p.N;
      };
      for (int r = 0, m, n; r < R; ++r) {
        if (!quad(r, m, n)) continue;
        const float* src = p.partial + std::size_t(m) * p.N + n;
        for (int z = 0; z < splits; ++z)
          cp_async16(reinterpret_cast<float*>(slots + (r * splits + z) * threads + tid), src + std::size_t(z) * mn);
      }
      cp_async_commit();
      cp_async_wait<0>();  // this thread's slots (only it reads them)
      for (int r = 0, m, n; r < R; ++r) {
        if (!quad(r, m, n)) continue;
        float x[4], v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int c = 0; c < 4; ++c) x[c] = epilogue_input<KIND>(p, m, n + c);
        for (int z = 0; z < splits; ++z) {
          const float4 t = slots[(r * splits + z) * threads + tid];
          v[0] += t.x, v[1] += t.y, v[2] += t.z, v[3] += t.w;
        }
        store_quad<KIND>(p, m, n, v, x, 4, true, step);
      }
    }
    if (tid == 0) p.tickets[tile] = 0u;
    return;
  }
  for (int q = int(threadIdx.x); q < BM * QR; q += int(blockDim.x)) {
    const int m = m0 + q / QR, n = n0 + 4 * (q % QR);
    if (m >= p.M || n >= p.N) continue;
    const int cols = p.N - n < 4 ? p.N - n : 4;
    const bool whole = vec && cols == 4;
    float x[4], v[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) x[c] = c < cols ? epilogue_input<KIND>(p, m, n + c) : 0.0f;
    sum_quad_pieces(v, p.partial + std::size_t(m) * p.N + n, mn, splits, whole, cols);
    store_quad<KIND>(p, m, n, v, x, cols, whole, step);
  }
  if (threadIdx.x == 0) p.tickets[tile] = 0u;
}

// The block's tile of one GEMM (block (x, y): rows (y % row tiles)*BM, columns x*BN, split
// y / row tiles), smem being the tile's shared storage (a Smem struct, or PipeTile's dynamic floats).
// ABLATE: PipeTile's loop with parts removed (dense_pipe_ablation_kernel only).
template <class Tile, Kind KIND, unsigned ABLATE = 0, class S>
__device__ __forceinline__ void gemm_block(const GemmParams& p, S& smem) {
  const int row_tiles = (p.M + Tile::BM - 1) / Tile::BM;
  const int y = int(blockIdx.y), tr = y % row_tiles;
  if constexpr (ABLATE != 0)
    Tile::template run<KIND, ABLATE>(p, tr * Tile::BM, int(blockIdx.x) * Tile::BN, y / row_tiles, smem);
  else
    Tile::template run<KIND>(p, tr * Tile::BM, int(blockIdx.x) * Tile::BN, y / row_tiles, smem);
  constexpr bool staged = std::is_same_v<S, float*>;  // (a PipeTile's or WgmmaTile's dynamic stages)
  finish_split_tile<Tile::BM, Tile::BN, KIND, staged>(p, tr * Tile::BM, int(blockIdx.x) * Tile::BN,
                                                      tr * int(gridDim.x) + int(blockIdx.x), stage_of(smem),
                                                      stage_floats_of<Tile, KIND>(smem));
}

template <class Tile, Kind KIND>
__global__ void __launch_bounds__(Tile::THREADS) dense_gemm_kernel(const GemmParams p) {
  __shared__ typename Tile::Smem smem;
  pdl_start();  // (every read of the GEMM's operands may be the previous launch's output)
  gemm_block<Tile, KIND>(p, smem);
}

// dense_gemm_kernel for a PipeTile: its stages live in dynamic shared memory.
template <class Tile, Kind KIND>
__global__ void __launch_bounds__(Tile::THREADS) dense_pipe_kernel(const GemmParams p) {
  extern __shared__ float4 pipe_smem[];
  float* smem = reinterpret_cast<float*>(pipe_smem);
  pdl_start();
  gemm_block<Tile, KIND>(p, smem);
}

// ---- The Forward GEMM's split summed across a thread block cluster (sm_90, kernels/cluster.cuh) ----
// The splits pieces of one output tile run as the blocks of one cluster (clusters of `splits`
// consecutive blocks along y, 2 <= splits <= kMaxClusterSplits): block y = tile row · splits + z
// (its cluster rank z) computes piece z into its own shared memory (PipeTile::run<TO_SMEM>). After a
// cluster barrier each block takes 1/splits of the tile's quads (4 consecutive outputs of a row),
// sums each over the pieces read from the peers' shared memory in the order z = 0, 1, ... from 0.0f
// and applies the epilogue (store_quad): the additions of finish_split_tile and
// dense_split_reduce_kernel, so bitwise their result. No partials go to memory (the ticketed finish
// writes splits · B · N floats and reads them back: 8 MB at layer 0's 4096 rows), no tickets, no
// second launch, and the finish is spread over the tile's blocks instead of one last block.
constexpr int kMaxClusterSplits = 8;   // the portable cluster size
constexpr int kClusterRoundQuads = 4;  // quads a thread sums (their loads all in flight) before it stores

template <class Tile>
__device__ __forceinline__ void cluster_finish_tile(const GemmParams& p, int m0, int n0, int z, int splits,
                                                    const float* tile) {
  constexpr int QR = Tile::BN / 4, QUADS = Tile::BM * QR, LD = Tile::TILE_LD, R = kClusterRoundQuads;
  const uint64_t step = epilogue_step<Kind::Forward>(p);
  const int q_end = (z + 1) * QUADS / splits, threads = int(blockDim.x);
  const bool vec = p.N % 4 == 0;
  for (int q0 = z * QUADS / splits + int(threadIdx.x); q0 < q_end; q0 += R * threads) {
    float v[R][4], x[R][4];
    int m[R], n[R], cols[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int q = q0 + r * threads, row = q / QR, c = 4 * (q % QR);
      m[r] = m0 + row, n[r] = n0 + c;
      cols[r] = q < q_end && m[r] < p.M && n[r] < p.N ? (p.N - n[r] < 4 ? p.N - n[r] : 4) : 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        v[r][k] = 0.0f;
        x[r][k] = k < cols[r] ? epilogue_input<Kind::Forward>(p, m[r], n[r] + k) : 0.0f;
      }
      if (!cols[r]) continue;
      const float* own = tile + row * LD + c;
      for (int piece = 0; piece < splits; ++piece) {
        const float4 t = *reinterpret_cast<const float4*>(cluster_peer(own, unsigned(piece)));
        v[r][0] += t.x, v[r][1] += t.y, v[r][2] += t.z, v[r][3] += t.w;
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (cols[r]) store_quad<Kind::Forward>(p, m[r], n[r], v[r], x[r], cols[r], vec && cols[r] == 4, step);
  }
}

template <class Tile, Kind KIND>
__global__ void __launch_bounds__(Tile::THREADS) dense_pipe_cluster_kernel(const GemmParams p) {
  static_assert(KIND == Kind::Forward, "the clustered split is the Forward GEMM's");
  static_assert(Tile::BM * Tile::TILE_LD * int(sizeof(float)) <= Tile::template smem_bytes<KIND>(),
                "the output tile fits in the stages");
  extern __shared__ float4 pipe_smem[];
  float* smem = reinterpret_cast<float*>(pipe_smem);
  pdl_start();
  const int splits = split_count(p), z = int(cluster_rank());  // (rank z = blockIdx.y % splits)
  const int m0 = int(blockIdx.y) / splits * Tile::BM, n0 = int(blockIdx.x) * Tile::BN;
  Tile::template run<KIND, 0, true>(p, m0, n0, z, smem);
  cluster_sync();  // every piece of the tile is in its block's shared memory
  cluster_finish_tile<Tile>(p, m0, n0, z, splits, smem);
  cluster_sync();  // no block leaves while a peer may still read its piece
}

// The same for the FP32 SimtVecTile (its own static stages replaced by dynamic shared memory that
// also holds the output tile: simt_cluster_smem_bytes).
template <class Tile>
constexpr int simt_cluster_smem_bytes() {
  constexpr int stages = int(sizeof(typename Tile::Smem)), out = Tile::BM * Tile::TILE_LD * int(sizeof(float));
  return stages > out ? stages : out;
}
template <class Tile, Kind KIND>
__global__ void __launch_bounds__(Tile::THREADS) dense_simt_cluster_kernel(const GemmParams p) {
  static_assert(KIND == Kind::Forward, "the clustered split is the Forward GEMM's");
  extern __shared__ float4 simt_cluster_smem[];
  float* const tile = reinterpret_cast<float*>(simt_cluster_smem);
  auto& stages = *reinterpret_cast<typename Tile::Smem*>(simt_cluster_smem);
  pdl_start();
  const int splits = split_count(p), z = int(cluster_rank());  // (rank z = blockIdx.y % splits)
  const int m0 = int(blockIdx.y) / splits * Tile::BM, n0 = int(blockIdx.x) * Tile::BN;
  Tile::template run<KIND, true>(p, m0, n0, z, stages, tile);
  cluster_sync();  // every piece of the tile is in its block's shared memory
  cluster_finish_tile<Tile>(p, m0, n0, z, splits, tile);
  cluster_sync();  // no block leaves while a peer may still read its piece
}

// The clustered kernel of Tile (PipeTile or SimtVecTile) and its dynamic shared memory.
template <class Tile>
constexpr int cluster_smem_bytes() {
  if constexpr (Tile::kPipelined)
    return Tile::template smem_bytes<Kind::Forward>();
  else
    return simt_cluster_smem_bytes<Tile>();
}
template <class Tile>
constexpr auto cluster_kernel() {
  if constexpr (Tile::kPipelined)
    return dense_pipe_cluster_kernel<Tile, Kind::Forward>;
  else
    return dense_simt_cluster_kernel<Tile, Kind::Forward>;
}

// ---- The Weight GEMM's split summed across a cluster, with Adam (dense_weight_adam, kernels/dense.cuh) ----
// The pieces of one [dW | db] tile (M = out rows, N = in + 1 columns, the last db: p.ones_col = in)
// are the blocks of one cluster, block y = tile row · splits + z (rank z), as the clustered forward.
// Each block computes piece z into its shared memory (run<Weight, TO_SMEM>); after the cluster
// barrier each takes 1/splits of the tile's quads, loads every piece of a quad from its peers
// (all splits loads in flight), sums them from 0.0f in the order z = 0, 1, ... (adam_reduce_kernel's
// order over dense_weight_partials' slices) and runs adam_element on each of its outputs' parameter,
// moments and rounded copy (adam_reduce_kernel's per-element code, same rate: the same bits).
// Rows of a quad: 4 consecutive columns of one output row, so W's 4 parameters are consecutive
// (db's column is alone in its quad where in % 4 == 0, as at 784).
template <class Tile>
__device__ __forceinline__ void cluster_adam_tile(const GemmParams& p, const WeightAdam& a, int m0, int n0, int z,
                                                  int splits, const float* tile, float alpha) {
  constexpr int QR = Tile::BN / 4, QUADS = Tile::BM * QR, LD = Tile::TILE_LD, P = kWeightAdamMaxPieces;
  const int q_end = (z + 1) * QUADS / splits, threads = int(blockDim.x), in = p.ones_col;
  for (int q = z * QUADS / splits + int(threadIdx.x); q < q_end; q += threads) {
    const int row = q / QR, c = 4 * (q % QR), m = m0 + row, n = n0 + c;
    if (m >= p.M || n >= p.N) continue;
    const int cols = p.N - n < 4 ? p.N - n : 4;
    const float* own = tile + row * LD + c;
    float4 t[P];
#pragma unroll
    for (int piece = 0; piece < P; ++piece)
      if (piece < splits) t[piece] = *reinterpret_cast<const float4*>(cluster_peer(own, unsigned(piece)));
    std::size_t idx[4];
    float g[4], pv[4], mv[4], vv[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      idx[k] = n + k < in ? a.w_offset + std::size_t(m) * in + std::size_t(n + k) : a.b_offset + std::size_t(m);
      if (k < cols) pv[k] = a.p[idx[k]], mv[k] = a.m[idx[k]], vv[k] = a.v[idx[k]];
      g[k] = 0.0f;  // 0 + P0 + P1 + ...: adam_reduce_kernel's order
    }
#pragma unroll
    for (int piece = 0; piece < P; ++piece)
      if (piece < splits) g[0] += t[piece].x, g[1] += t[piece].y, g[2] += t[piece].z, g[3] += t[piece].w;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (k >= cols) continue;
      adam_element(pv[k], mv[k], vv[k], g[k], alpha, a.b1, a.b2, a.eps);  // step_math.cuh: Adam's arithmetic
      a.p[idx[k]] = pv[k], a.m[idx[k]] = mv[k], a.v[idx[k]] = vv[k];
      if (a.g_out) a.g_out[idx[k]] = g[k];
      if (a.rounded.q) a.rounded.q[idx[k]] = round_gemm_input(a.rounded.prec, pv[k]);  // (RoundedParams)
    }
  }
}

// The dynamic shared memory of Tile's clustered weight kernel: its stages, which hold the output
// tile once the loop is done (SimtVecTile: the larger of the two, as its clustered forward).
template <class Tile>
constexpr int weight_adam_smem_bytes() {
  if constexpr (Tile::kPipelined) {
    static_assert(Tile::BM * Tile::TILE_LD <= Tile::template smem_bytes<Kind::Weight>() / int(sizeof(float)),
                  "the output tile fits in the stages");
    return Tile::template smem_bytes<Kind::Weight>();
  } else {
    return simt_cluster_smem_bytes<Tile>();
  }
}

template <class Tile>
__global__ void __launch_bounds__(Tile::THREADS) dense_weight_adam_kernel(const GemmParams p, const WeightAdam a) {
  extern __shared__ float4 pipe_smem[];
  float* smem = reinterpret_cast<float*>(pipe_smem);
  __shared__ float s_alpha;
  pdl_start();  // (dZ is the launch before's; the counters and layer 0's parameters are read after it)
  const int splits = split_count(p), z = int(cluster_rank());  // (rank z = blockIdx.y % splits)
  const int m0 = int(blockIdx.y) / splits * Tile::BM, n0 = int(blockIdx.x) * Tile::BN;
  if constexpr (Tile::kPipelined)
    Tile::template run<Kind::Weight, 0, true>(p, m0, n0, z, smem);
  else
    Tile::template run<Kind::Weight, true>(p, m0, n0, z, *reinterpret_cast<typename Tile::Smem*>(smem), smem);
  if (threadIdx.x == 0) s_alpha = adam_step_size(a.counters->lr, a.b1, a.b2, a.counters->step);
  cluster_sync();  // every piece of the tile is in its block's shared memory (and s_alpha is set)
  cluster_adam_tile<Tile>(p, a, m0, n0, z, splits, smem, s_alpha);
  cluster_sync();  // no block leaves while a peer may still read its piece
}

// dense_pipe_kernel with parts of the tile's loop removed (ABLATE: kAblate* bits), for
// bench_kernels' ablation rows only (dense_force_ablation): its results are meaningless.
template <class Tile, Kind KIND, unsigned ABLATE>
__global__ void __launch_bounds__(Tile::THREADS) dense_pipe_ablation_kernel(const GemmParams p) {
  extern __shared__ float4 pipe_smem[];
  float* smem = reinterpret_cast<float*>(pipe_smem);
  pdl_start();
  gemm_block<Tile, KIND, ABLATE>(p, smem);
}

// Pieces a thread of the second pass loads before it adds them (below).
constexpr int kReducePieces = 16;

// Split-K's second pass, fusing the sum of the pieces with KIND's epilogue: C(m, n) =
// Σ_z partial[z][m][n] summed in the fixed order z = 0, 1, ... (so the result depends only on the
// split points, never on the grid or on timing), then the epilogue. Reads partial [splits,M,N]
// and the epilogue's inputs (Forward: b [N], counters->step; Weight: none); writes Forward: Y
// [B,N]; Weight: dW [N,K] and db [N] (column K). Grid-stride over the M x N outputs.
template <Kind KIND>
__global__ void dense_split_reduce_kernel(const GemmParams p) {
  pdl_start();
  const uint64_t step = epilogue_step<KIND>(p);
  const int splits = split_count(p);
  const std::size_t mn = std::size_t(p.M) * p.N;
  if constexpr (KIND == Kind::Forward) {
    // A forward's outputs in quads where rows are whole 16-byte quads (N % 4 == 0, aligned arrays):
    // a quad's pieces as float4 loads, and a dropout layer's mask from one Philox block per quad
    // (dense_units) instead of one per output. The same additions in the same order: the same bits.
    const auto a16 = [](const void* q) { return (reinterpret_cast<std::uintptr_t>(q) & 15u) == 0; };
    if (p.N % 4 == 0 && p.ldo == p.N && a16(p.partial) && a16(p.out)) {
      const std::size_t quads = mn / 4;
      for (std::size_t q = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; q < quads;
           q += std::size_t(gridDim.x) * blockDim.x) {
        const std::size_t i = 4 * q;
        const int m = int(i / std::size_t(p.N)), n = int(i % std::size_t(p.N));
        float x[4], v[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) x[c] = epilogue_input<KIND>(p, m, n + c);
        sum_quad_pieces(v, p.partial + i, mn, splits, true, 4);
        store_quad<KIND>(p, m, n, v, x, 4, true, step);
      }
      return;
    }
  }
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < mn;
       i += std::size_t(gridDim.x) * blockDim.x) {
    // The pieces kReducePieces at a time, all loaded before the first add (a weight GEMM of few
    // outputs has up to 64 pieces and few threads: one L2 round trip per batch, not per piece);
    // the same additions in the same order, from 0.0f.
    const float v = sum_strided_in_order<kReducePieces>(p.partial + i, mn, splits);
    const int m = int(i / std::size_t(p.N)), n = int(i % std::size_t(p.N));
    store_output<KIND>(p, m, n, v, epilogue_input<KIND>(p, m, n), step);
  }
}

// Fuses a layer's two backward GEMMs into one launch (they are independent: both only read dZ):
// blocks [0, weight tiles x splits) compute the weight GEMM w (row-major over its tile grid), the
// rest the data GEMM d. The branch is uniform per block. One launch instead of two, and one less
// link in the step's chain of dependent kernels. Reads dZ [B,N], X [B,K], W [N,K], mask [B,K]
// (optional); writes dW [N,K], db [N] (or w's partial [splits,N,K+1]) and dX [B,K], with the
// epilogues of dense_gemm_kernel's Weight and Data.
template <class Tile, class S>
__device__ __forceinline__ void backward_block(const GemmParams& w, const GemmParams& d, S& smem) {
  constexpr int BM = Tile::BM, BN = Tile::BN;
  const int w_cols = (w.N + BN - 1) / BN, w_tiles = w_cols * ((w.M + BM - 1) / BM);
  int t = int(blockIdx.x);
  if (t < w_tiles * split_count(w)) {
    const int z = t / w_tiles;
    t %= w_tiles;
    Tile::template run<Kind::Weight>(w, (t / w_cols) * BM, (t % w_cols) * BN, z, smem);
    finish_split_tile<BM, BN, Kind::Weight, false>(w, (t / w_cols) * BM, (t % w_cols) * BN, t, nullptr, 0);
  } else {
    t -= w_tiles * split_count(w);
    const int d_cols = (d.N + BN - 1) / BN;
    Tile::template run<Kind::Data>(d, (t / d_cols) * BM, (t % d_cols) * BN, 0, smem);
  }
}

template <class Tile>
__global__ void __launch_bounds__(Tile::THREADS) dense_backward_kernel(const GemmParams w, const GemmParams d) {
  __shared__ typename Tile::Smem smem;
  pdl_start();
  backward_block<Tile>(w, d, smem);
}

template <class Tile>
__global__ void __launch_bounds__(Tile::THREADS) dense_pipe_backward_kernel(const GemmParams w, const GemmParams d) {
  extern __shared__ float4 pipe_smem[];
  float* smem = reinterpret_cast<float*>(pipe_smem);
  pdl_start();
  backward_block<Tile>(w, d, smem);
}

template <int BM, int BN>
long long tiles(const GemmParams& p) {
  return (long long)((p.M + BM - 1) / BM) * ((p.N + BN - 1) / BN);
}

template <class Tile, Kind KIND>
void launch_tiles(const GemmParams& p, cudaStream_t stream) {
  constexpr int BM = Tile::BM, BN = Tile::BN;
  const unsigned gx = unsigned((p.N + BN - 1) / BN), gy = unsigned((p.M + BM - 1) / BM * split_count(p));
  MNIST_CHECK(gy <= 65535u, "dense GEMM: ", p.M, " rows exceed the grid limit");
  launch_kernel(dense_gemm_kernel<Tile, KIND>, dim3(gx, gy), dim3(Tile::THREADS), 0, stream, p);
  MNIST_LAUNCH_CHECK(stream);
}

// Lets kernel use `bytes` of dynamic shared memory (above the default 48 KB). The callers keep its
// result in a static of the launcher instantiation that launches that kernel, so it runs once per
// kernel (a static here would be shared by every kernel of the same signature).
template <class F>
bool allow_smem(F* kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  return true;
}

// A PipeTile launch: one block per tile and split (a folded Forward split, no p.partial, is one).
// dense_force_ablation: the kAblate* bits of the next pipelined launches (0: none). The tiles and
// kinds it applies to (Ablatable): TF32's 8-warp PipeTiles of 4 stages, as the engine runs layer
// 0 at 4096-16384 rows: 128x128 and 64x64 on the Forward GEMM, 64x64 on the Weight GEMM; and the
// two-warpgroup wgmma forward tile (WgmmaWide), whose loop the rounding pass was read to bound.
inline unsigned g_ablation = 0;
constexpr unsigned kAblateAll = kAblateCopies | kAblatePrepare | kAblateMath;
inline bool ablation_supported(unsigned bits) {
  return bits == 0 || bits == kAblateCopies || bits == kAblatePrepare || bits == kAblateMath || bits == kAblateAll;
}
template <class Tile, Kind KIND>
struct Ablatable : std::false_type {};
template <int BM, int BN, Kind KIND>
struct Ablatable<PipeTile<BM, BN, 2, 4, GemmPrecision::TF32, 4>, KIND>
    : std::bool_constant<KIND == Kind::Forward || (KIND == Kind::Weight && BM == BN)> {};
template <>
struct Ablatable<WgmmaTile<GemmPrecision::TF32, 128, 6, 2>, Kind::Forward> : std::true_type {};

template <class Tile, Kind KIND, unsigned ABLATE>
void launch_pipe_ablation(const GemmParams& p, dim3 grid, cudaStream_t stream) {
  constexpr int SMEM = Tile::template smem_bytes<KIND>();
  static const bool smem_allowed = allow_smem(dense_pipe_ablation_kernel<Tile, KIND, ABLATE>, SMEM);
  (void)smem_allowed;
  launch_kernel(dense_pipe_ablation_kernel<Tile, KIND, ABLATE>, grid, dim3(Tile::THREADS), SMEM, stream, p);
}
// An Ablatable tile's ablation launches, reached through this pointer: dense_force_ablation sets it.
// It and the 16 kernels live in dense_tf32_ablation.cu, a library of their own (mnist_dense_ablation)
// that only the benchmarks and the emulation link, so the product's launchers name none of them and
// its binary carries none (2.8 MB of machine code, 49 CPU-s of its build).
using AblationLaunch = void (*)(unsigned bits, const GemmParams& p, dim3 grid, cudaStream_t stream);
template <class Tile, Kind KIND>
inline AblationLaunch g_ablation_launch = nullptr;

template <class Tile, Kind KIND>
void launch_pipe_tiles(const GemmParams& p, cudaStream_t stream) {
  constexpr int BM = Tile::BM, BN = Tile::BN, SMEM = Tile::template smem_bytes<KIND>();
  const int splits = p.partial ? split_count(p) : 1;
  const unsigned gx = unsigned((p.N + BN - 1) / BN), gy = unsigned((p.M + BM - 1) / BM * splits);
  MNIST_CHECK(gy <= 65535u, "dense GEMM: ", p.M, " rows exceed the grid limit");
  if constexpr (Ablatable<Tile, KIND>::value) {
    if (g_ablation) {
      const AblationLaunch ablated = g_ablation_launch<Tile, KIND>;
      MNIST_CHECK(ablated, "dense GEMM: ablation bits set without the ablation kernels");
      ablated(g_ablation, p, dim3(gx, gy), stream);
      MNIST_LAUNCH_CHECK(stream);
      return;
    }
  }
  static const bool smem_allowed = allow_smem(dense_pipe_kernel<Tile, KIND>, SMEM);
  (void)smem_allowed;
  launch_kernel(dense_pipe_kernel<Tile, KIND>, dim3(gx, gy), dim3(Tile::THREADS), SMEM, stream, p);
  MNIST_LAUNCH_CHECK(stream);
}

// How many clusters of `splits` blocks of Tile's clustered forward (dense_pipe_cluster_kernel) the
// device holds at once (cluster_capacity; asked once per size), 0 where none fits or the size is
// outside 2 .. kMaxClusterSplits.
template <class Tile>
int cluster_split_capacity(int splits) {
  if (splits < 2 || splits > kMaxClusterSplits) return 0;
  constexpr int SMEM = cluster_smem_bytes<Tile>();
  static const bool smem_allowed = allow_smem(cluster_kernel<Tile>(), SMEM);
  static int held[kMaxClusterSplits + 1];
  static bool asked[kMaxClusterSplits + 1] = {};
  if (!asked[splits]) {
    held[splits] = smem_allowed ? cluster_capacity(cluster_kernel<Tile>(), unsigned(Tile::THREADS), unsigned(splits),
                                                   std::size_t(SMEM))
                                : 0;
    asked[splits] = true;
  }
  return held[splits];
}

// Whether the Forward GEMM p (split across blocks: p.partial) can run its split as clusters on Tile:
// 2 to kMaxClusterSplits pieces, and the device holds at least one such cluster.
template <class Tile>
bool cluster_split_ok(const GemmParams& p) {
  return p.partial && p.split_k > 0 && cluster_split_capacity<Tile>(split_count(p)) > 0;
}

// The Forward GEMM p (cluster_split_ok) with its pieces summed across each tile's cluster: no
// partials written, p.partial only marks the split.
template <class Tile>
void launch_cluster_split(const GemmParams& p, cudaStream_t stream) {
  constexpr int BM = Tile::BM, BN = Tile::BN, SMEM = cluster_smem_bytes<Tile>();
  const int splits = split_count(p);
  const unsigned gx = unsigned((p.N + BN - 1) / BN), gy = unsigned((p.M + BM - 1) / BM * splits);
  MNIST_CHECK(gy <= 65535u, "dense GEMM: ", p.M, " rows exceed the grid limit");
  launch_kernel_in_clusters(cluster_kernel<Tile>(), dim3(gx, gy), dim3(Tile::THREADS), unsigned(splits),
                            std::size_t(SMEM), stream, p);
  MNIST_LAUNCH_CHECK(stream);
}

// The FP32 Forward GEMM p on SimtVecTile Tile with its split summed across clusters (its Images
// instantiation where X is read from the images), if it can run so: whether it did.
template <class Tile>
bool launch_simt_cluster_split(const GemmParams& p, cudaStream_t stream) {
  if (p.images) {
    if (!cluster_split_ok<typename Tile::Images>(p)) return false;
    launch_cluster_split<typename Tile::Images>(p, stream);
    return true;
  }
  if (!cluster_split_ok<Tile>(p)) return false;
  launch_cluster_split<Tile>(p, stream);
  return true;
}

// How many clusters of `splits` blocks of Tile's dense_weight_adam_kernel the device holds at once
// (asked once per size; the kernel is allowed the non-portable sizes past 8): 0 where none fits or
// splits is outside 1 .. kWeightAdamMaxPieces.
template <class Tile>
int weight_adam_capacity(int splits) {
  if (splits < 1 || splits > kWeightAdamMaxPieces) return 0;
  constexpr int SMEM = weight_adam_smem_bytes<Tile>();
  static const bool allowed =
      allow_smem(dense_weight_adam_kernel<Tile>, SMEM) && allow_nonportable_clusters(dense_weight_adam_kernel<Tile>);
  static int held[kWeightAdamMaxPieces + 1];
  static bool asked[kWeightAdamMaxPieces + 1] = {};
  if (!asked[splits]) {
    held[splits] = allowed ? cluster_capacity(dense_weight_adam_kernel<Tile>, unsigned(Tile::THREADS), unsigned(splits),
                                              std::size_t(SMEM))
                           : 0;
    asked[splits] = true;
  }
  return held[splits];
}

// The Weight GEMM p (split as dense_weight_partials splits it; weight_adam_capacity > 0) with Adam in
// its clustered finish: one cluster of split_count(p) blocks per output tile.
template <class Tile>
void launch_weight_adam(const GemmParams& p, const WeightAdam& a, cudaStream_t stream) {
  constexpr int BM = Tile::BM, BN = Tile::BN, SMEM = weight_adam_smem_bytes<Tile>();
  const int splits = split_count(p);
  MNIST_CHECK(weight_adam_capacity<Tile>(splits) > 0, "dense_weight_adam: the device holds no cluster of ", splits,
              " blocks of this tile");
  const unsigned gx = unsigned((p.N + BN - 1) / BN), gy = unsigned((p.M + BM - 1) / BM * splits);
  MNIST_CHECK(gy <= 65535u, "dense_weight_adam: ", p.M, " outputs exceed the grid limit");
  launch_kernel_in_clusters(dense_weight_adam_kernel<Tile>, dim3(gx, gy), dim3(Tile::THREADS), unsigned(splits),
                            std::size_t(SMEM), stream, p, a);
  MNIST_LAUNCH_CHECK(stream);
}

// PREC's two tiles for dense_weight_adam (large: 128x128, else 64x64; FP32's SimtVecTile in its
// images instantiation where X is read from the images): the capacity for `splits` pieces, and
// the launch.
template <GemmPrecision PREC>
int weight_adam_capacity_as(bool large, bool images, int splits);
template <GemmPrecision PREC>
void launch_weight_adam_as(bool large, const GemmParams& p, const WeightAdam& a, cudaStream_t stream);

template <class Tile>
void launch_backward_tiles(const GemmParams& w, const GemmParams& d, cudaStream_t stream) {
  const long long blocks = tiles<Tile::BM, Tile::BN>(w) * split_count(w) + tiles<Tile::BM, Tile::BN>(d);
  MNIST_CHECK(blocks < (1ll << 31), "dense backward: ", blocks, " tiles exceed the grid limit");
  if constexpr (Tile::kPipelined) {
    constexpr int SMEM = std::max(Tile::template smem_bytes<Kind::Weight>(), Tile::template smem_bytes<Kind::Data>());
    static const bool smem_allowed = allow_smem(dense_pipe_backward_kernel<Tile>, SMEM);
    (void)smem_allowed;
    launch_kernel(dense_pipe_backward_kernel<Tile>, dim3(unsigned(blocks)), dim3(Tile::THREADS), SMEM, stream, w, d);
  } else {
    launch_kernel(dense_backward_kernel<Tile>, dim3(unsigned(blocks)), dim3(Tile::THREADS), 0, stream, w, d);
  }
  MNIST_LAUNCH_CHECK(stream);
}

// Tile choice: 64x64 tiles when they alone fill the GPU (>= ~120 blocks, the H100 has 132 SMs),
// 32x32 tiles otherwise, for more blocks on the model's small GEMMs. In FP32 both give bitwise the
// same results (see dense.cuh): 4x4 or 2x2 outputs per thread. K slices are deep (BK = 64 for the
// small FP32 tiles, 32 for the large; 17 KB of shared memory either way) because at batch 128 the
// first layer's forward GEMM runs as only 16 blocks, one per SM, over K = 784: each slice costs a
// global-load latency that nothing else on the SM hides, so the number of slices (49 at BK = 16,
// 13 at BK = 64) sets its time. TF32/BF16: 2x2 warps per block (32x32 or 16x16 outputs per warp),
// BK = 32 (18 KB).
//
// TF32/BF16 GEMMs that fill the GPU take the pipelined PipeTile instead (pick_pipe), where its
// 16-byte copies are legal (pipelined_ok): 128x128 tiles of 8 warps (64x32 outputs each, 4 stages,
// 136-160 KB: one block per SM, every A and B fragment used by 4 resp. 2 warps) when those alone
// give >= kBigTileBlocks blocks, else 64x64 tiles of 8 warps (32x16 each, 4 stages, 74-82 KB: two
// blocks still fit an SM, for the weight GEMM's 156; TilesFor::Pipe64x8) when those do (the 4-warp
// 64x64 tile, Pipe64, stays for dense_force_tile and the benchmarks). The forward GEMM's K split
// is folded into the block (PipeTile: bitwise the cross-block split plus its reduction) when the
// unsplit tiles already fill the GPU, which saves the partial arrays (4 x B x N floats written and
// read again at K = 784) and the second launch; otherwise the split stays across blocks (the
// weight GEMM always: its few tiles need the split's blocks).
// Not splitting at all where the tiles fill the GPU (29.4 µs unsplit vs 33.5 folded, H100 74abd8f)
// would break the documented contract that a forward row's bits do not depend on its batch
// (dense.cuh; the engine evaluates in 4096-row chunks and predicts single rows; test_dense_tc's
// "a forward row alone equals the row in the batch" with the engine workspace): the split points,
// a function of K only, are what make the sums the same at every batch. So the fold stays, and
// its extra cost, a runtime division and modulo by the piece length in every slice, is gone from
// PipeTile's loop (pieces tracked by counters).
constexpr long long kBigTileBlocks = 120;
// ... and a split GEMM's 128x128 blocks when they fill 7/8 of a 132-SM GPU: weight_split_rows
// (dense.cu) cuts layer 0's 4096-row weight GEMM into 16 pieces of whole slices, 7 x 16 = 112
// blocks, which read half the bytes of the 64x64 tiles' 416 (NOTES "Layer 0's weight GEMM in
// pieces for the 128x128 tile").
constexpr long long kSplitBigTileBlocks = 112;

template <GemmPrecision PREC>
struct TilesFor {
  using Big = MmaTile<64, 64, 32, 2, 2, PREC>;
  using Small = MmaTile<32, 32, 32, 2, 2, PREC>;
  // Stages: measured on the H200 (31770b8) with 3, the 64x64 forward at 4096 rows took 28 µs for
  // 25 slices of ~130 mma a block, ~1.1 µs a slice: the loads of the 2 slices in flight (32 KB a
  // block) do not cover a DRAM round trip. So more slices in flight: 4 (5 stages) for 64x64, 3 (4)
  // for 128x128, within an SM's 227 KB (two 64x64 blocks still fit).
  using Pipe128 = PipeTile<128, 128, 2, 4, PREC, 4>;
  using Pipe64 = PipeTile<64, 64, 2, 2, PREC, 5>;
  // The same 64x64 tile by 8 warps of 32x16 (2 x 4): at 4096 rows the 64x64 GEMMs are 128-156
  // blocks, one per SM, and ncu (H100, 74abd8f) showed their 4 warps issue-latency bound (one warp
  // per scheduler, an instruction every 5.6 cycles). Two warps per scheduler hide each other's
  // dependency stalls for ~1.35x the fragment instructions per mma (3 ldmatrix + 12 cvt per 4 mma
  // instead of 4 + 16 per 8). 4 stages (3 slices in flight; more stages were refuted): 74-82 KB,
  // two blocks still fit an SM (the weight GEMM's 156 blocks).
  using Pipe64x8 = PipeTile<64, 64, 2, 4, PREC, 4>;
  static_assert(Pipe128::template smem_bytes<Kind::Forward>() <= 227 * 1024, "one 128x128 block per SM");
  static_assert(2 * (Pipe64::template smem_bytes<Kind::Forward>() + 1024) <= 228 * 1024, "two 64x64 blocks per SM");
  static_assert(2 * (Pipe64x8::template smem_bytes<Kind::Forward>() + 1024) <= 228 * 1024, "two 64x64 blocks per SM");
  // The wgmma forward tiles (dense_force_tile only, unmeasured). 64x64: 6 stages of 16 KB (TF32: 4
  // slices of copies in flight, 96 KB, two blocks fit an SM) or 5 of 24 KB (BF16: raw + bf16 copy;
  // 3 in flight, 120 KB). 64x128 (half the L2 traffic for W and X at 16384 rows, half the CTAs):
  // 6 stages of 24 KB (TF32, 144 KB) or 5 of 36 KB (BF16, 180 KB).
  using Wgmma = WgmmaTile<PREC, 64, PREC == GemmPrecision::BF16 ? 5 : 6>;
  using Wgmma128 = WgmmaTile<PREC, 128, PREC == GemmPrecision::BF16 ? 5 : 6>;
  static_assert(Wgmma128::template smem_bytes<Kind::Forward>() <= 227 * 1024, "one wgmma block per SM");
  // 128x128 by two warpgroups sharing each B slice: 6 stages of 32 KB (TF32, 4 slices of copies in
  // flight) or 4 of 48 KB (BF16, 2 in flight): 192 KB, one block an SM, 8 warps.
  using WgmmaWide = WgmmaTile<PREC, 128, PREC == GemmPrecision::BF16 ? 4 : 6, 2>;
  static_assert(WgmmaWide::template smem_bytes<Kind::Forward>() <= 227 * 1024, "one wide wgmma block per SM");
  // The wgmma weight tiles (dense_force_tile's Wgmma / Wgmma128 on a Weight GEMM; unmeasured):
  // 128 x 64 with 3 slices of copies in flight (TF32: 4 raw stages of 24 KB + 3 canonical of 24 KB,
  // 168 KB; BF16 132 KB) and 128 x 128 with 2 (TF32: 3 x 32 + 3 x 32 = 192 KB; BF16 144 KB).
  using WgmmaW64 = WgmmaWeightTile<PREC, 64, 3>;
  using WgmmaW128 = WgmmaWeightTile<PREC, 128, 2>;
  static_assert(WgmmaW64::template smem_bytes<Kind::Weight>() <= 227 * 1024 - 1024, "one weight block per SM");
  static_assert(WgmmaW128::template smem_bytes<Kind::Weight>() <= 227 * 1024 - 1024, "one weight block per SM");
  // X from the images (takes_input): the fallback tiles read every input; one rule per tile family.
  static_assert(Big::kImages && Small::kImages, "the fallback tiles read the images");
  static_assert(Pipe128::kImages == Pipe64::kImages && Wgmma::kImages == Wgmma128::kImages &&
                    Wgmma::kImages == WgmmaWide::kImages &&
                    WgmmaW64::kImages == WgmmaW128::kImages,
                "one images rule per tile family");
};
template <>
struct TilesFor<GemmPrecision::FP32> {
  using Big = SimtTile<64, 64, 32, 4, 4>;
  using Small = SimtTile<32, 32, 64, 2, 2>;
  // The large GEMMs (pick_simt): 8x8 outputs a thread (16 FMAs per LDS.128) in 128x128 tiles;
  // 4x4 in 64x64 tiles of 8 warps and 32x32 tiles of 2 warps, for shapes that need more blocks.
  // Static shared memory 34 / 35 / 18 KB (two buffers), under the 48 KB static limit.
  using Vec128 = SimtVecTile<128, 128, 16, 8, 8>;
  using Vec64 = SimtVecTile<64, 64, 32, 4, 4>;
  using Vec32 = SimtVecTile<32, 32, 32, 4, 4>;
  static_assert(sizeof(Vec128::Smem) <= 48 * 1024 && sizeof(Vec64::Smem) <= 48 * 1024, "static shared memory");
  static_assert(Big::kImages && Small::kImages, "the fallback tiles read the images");
  static_assert(Vec128::kImages == Vec32::kImages, "one images rule per tile family");
  static_assert(Vec128::Images::kImages && Vec64::Images::kImages && Vec32::Images::kImages &&
                    Vec128::Images::K_TILE == Vec128::K_TILE && Vec64::Images::K_TILE == Vec64::K_TILE &&
                    Vec32::Images::K_TILE == Vec32::K_TILE,
                "X from the images runs the same tiles (launch_simt_tiles)");
};

inline GemmTileChoice g_forced_tile;  // dense_force_tile (tests)
inline SimtTileChoice g_forced_simt;  // dense_force_simt_tile (tests)
// An autotuning candidate that sums a split GEMM's pieces in the second kernel although the caller
// passed tickets (TileOption::second_pass): both ways are tried where tickets are given.
inline bool g_forced_second_pass = false;

// p as launched: without its tickets when the candidate in force sums the pieces in a second pass.
inline GemmParams ticketed(GemmParams p) {
  if (g_forced_second_pass) p.tickets = nullptr;
  return p;
}

// ---- FP32 tile choice ----
//
// GEMMs of at least kSimtVecWork multiply-adds run on SimtVecTile, the smaller ones keep SimtTile's
// rule (Big/Small by tile count: measured at or below cuBLAS for the model's small layers). Among
// the three SimtVecTile sizes, and for a Forward GEMM with a K split between folding it into the
// block and splitting across blocks (+ the reduction pass), pick_simt takes the lowest predicted
// time of a simple model of a 132-SM H100/H200:
//   time ∝ ceil(blocks / SMs) · BM·BN·k / (128 · eff · occ),
// the busiest SM's multiply-adds (blocks resident together share the SM's FMA pipes) over the
// fraction of the FP32 peak the tile reaches, occ = min(1, warps on the SM / 8), plus, for a
// cross-block split, the partials' traffic at ~1750 bytes per SM clock and one more launch (~3000
// clocks). eff is fitted to the H100's bench_kernels at fc62aa1 (every tile forced on every FP32
// GEMM of 4096 and 16384 rows; profiling/simt_pick_check.py replays it on a bench JSON): 0.55 for the 8x8
// tile (one block an SM), and for the 4x4 tiles 0.29 (64x64) / 0.30 (32x32) at 8 warps an SM rising
// linearly to 0.45 / 0.37 at 16 warps and more. With it the model picks the measured fastest tile
// for 9 of the 10 large GEMMs (the first guess, 0.85 / 0.7 / 0.6 flat, picked 5: it took the 64x64
// fold for 4096x784->128, 48.5 µs, where the 128x128 split runs 42.2).
constexpr double kSimtVecWork = double(1 << 25);
constexpr int kSms = 132;

struct SimtPick {
  SimtTileKind tile = SimtTileKind::Scalar;
  bool fold = false;
};

template <class Tile>
struct SimtModel;
template <>
struct SimtModel<TilesFor<GemmPrecision::FP32>::Vec128> {
  static constexpr double eff8 = 0.55, eff16 = 0.55;  // at 8 / >= 16 warps an SM (only 8 fit)
  static constexpr int resident = 1;  // ~34 KB and up to ~180 registers x 256 threads
};
template <>
struct SimtModel<TilesFor<GemmPrecision::FP32>::Vec64> {
  static constexpr double eff8 = 0.29, eff16 = 0.45;
  static constexpr int resident = 3;
};
template <>
struct SimtModel<TilesFor<GemmPrecision::FP32>::Vec32> {
  static constexpr double eff8 = 0.30, eff16 = 0.37;
  static constexpr int resident = 8;
};

// Predicted SM clocks of `blocks` blocks of Tile, each a chain of k multiply-adds per output.
template <class Tile>
double simt_clocks(long long blocks, int k) {
  using Model = SimtModel<Tile>;
  const long long per_sm = (blocks + kSms - 1) / kSms;
  const double warps = double(std::min<long long>(per_sm, Model::resident) * (Tile::THREADS / 32));
  const double occ = std::min(1.0, warps / 8.0);
  const double eff = Model::eff8 + (Model::eff16 - Model::eff8) * std::clamp((warps - 8.0) / 8.0, 0.0, 1.0);
  return double(per_sm) * Tile::BM * Tile::BN * double(k) / (128.0 * eff * occ);
}

// The longest chain (k range) of one block of p: a split piece, or all of K.
inline int simt_chain(const GemmParams& p, bool folded) { return p.split_k > 0 && !folded ? std::min(p.split_k, p.K) : p.K; }

// Clocks of split-K's reduction pass of p (partials written and read, the output written, a launch).
inline double split_reduce_clocks(const GemmParams& p) {
  const double mn = double(p.M) * p.N;
  return (2.0 * split_count(p) + 1.0) * mn * 4.0 / 1750.0 + 3000.0;
}

// The FP32 tile of GEMM p (and, Forward with a split, whether to fold it: then p.partial is
// cleared). Weight and Data GEMMs (fold_allowed false) keep their split across blocks.
inline SimtPick pick_simt(GemmParams& p, bool fold_allowed) {
  using T = TilesFor<GemmPrecision::FP32>;
  const bool split = p.split_k > 0 && p.partial;
  SimtPick pick;
  auto fold_ok = [&](int bk) { return split && fold_allowed && p.split_k % bk == 0; };
  if (g_forced_simt.tile != SimtTileKind::Auto) {
    pick.tile = g_forced_simt.tile;
    const int bk = pick.tile == SimtTileKind::Vec128 ? T::Vec128::K_TILE
                   : pick.tile == SimtTileKind::Vec64 ? T::Vec64::K_TILE
                                                      : T::Vec32::K_TILE;
    pick.fold = pick.tile != SimtTileKind::Scalar && g_forced_simt.fold_forward_split && fold_ok(bk);
  } else if (double(p.M) * p.N * p.K >= kSimtVecWork) {
    double best = 0.0;
    auto consider = [&](SimtTileKind kind, double clocks, bool fold) {
      if (pick.tile == SimtTileKind::Scalar || clocks < best) pick = {kind, fold}, best = clocks;
    };
    auto both = [&](auto tile, SimtTileKind kind) {
      using Tile = decltype(tile);
      const long long n = tiles<Tile::BM, Tile::BN>(p);
      consider(kind, simt_clocks<Tile>(n * split_count(p), simt_chain(p, false)) + (split ? split_reduce_clocks(p) : 0.0),
               false);
      if (fold_ok(Tile::K_TILE)) consider(kind, simt_clocks<Tile>(n, simt_chain(p, true)), true);
    };
    both(T::Vec128{}, SimtTileKind::Vec128);
    both(T::Vec64{}, SimtTileKind::Vec64);
    both(T::Vec32{}, SimtTileKind::Vec32);
  }
  if (pick.fold) p.partial = nullptr;
  return pick;
}

// The FP32 tile of the fused backward launch of weight GEMM w (split across blocks, if at all) and
// data GEMM d: one tile for both, by the model above over both GEMMs' blocks together, each block
// costed at their mean chain length. Scalar: SimtTile by launch_backward_as's tile-count rule.
inline SimtTileKind pick_simt_backward(const GemmParams& w, const GemmParams& d) {
  using T = TilesFor<GemmPrecision::FP32>;
  if (g_forced_simt.tile != SimtTileKind::Auto) return g_forced_simt.tile;
  if (double(w.M) * w.N * w.K + double(d.M) * d.N * d.K < kSimtVecWork) return SimtTileKind::Scalar;
  SimtTileKind pick = SimtTileKind::Scalar;
  double best = 0.0;
  auto consider = [&](auto tile, SimtTileKind kind) {
    using Tile = decltype(tile);
    const long long nw = tiles<Tile::BM, Tile::BN>(w) * split_count(w), nd = tiles<Tile::BM, Tile::BN>(d);
    const double k = (double(nw) * simt_chain(w, false) + double(nd) * simt_chain(d, false)) / double(nw + nd);
    const double clocks = simt_clocks<Tile>(nw + nd, int(k + 0.5));
    if (pick == SimtTileKind::Scalar || clocks < best) pick = kind, best = clocks;
  };
  consider(T::Vec128{}, SimtTileKind::Vec128);
  consider(T::Vec64{}, SimtTileKind::Vec64);
  consider(T::Vec32{}, SimtTileKind::Vec32);
  return pick;
}

// A SimtVecTile launch: one block per tile and split (a folded Forward split, no p.partial, is one);
// X from the images on the tile's Images instantiation.
template <class Tile, Kind KIND>
void launch_simt_tiles(const GemmParams& p, cudaStream_t stream) {
  constexpr int BM = Tile::BM, BN = Tile::BN;
  const int splits = p.partial ? split_count(p) : 1;
  const unsigned gx = unsigned((p.N + BN - 1) / BN), gy = unsigned((p.M + BM - 1) / BM * splits);
  MNIST_CHECK(gy <= 65535u, "dense GEMM: ", p.M, " rows exceed the grid limit");
  if constexpr (KIND != Kind::Data) {  // (the data GEMM never reads X)
    if (p.images) {
      launch_kernel(dense_gemm_kernel<typename Tile::Images, KIND>, dim3(gx, gy), dim3(Tile::THREADS), 0, stream, p);
      MNIST_LAUNCH_CHECK(stream);
      return;
    }
  }
  launch_kernel(dense_gemm_kernel<Tile, KIND>, dim3(gx, gy), dim3(Tile::THREADS), 0, stream, p);
  MNIST_LAUNCH_CHECK(stream);
}

// launch_backward_tiles for a SimtVecTile: w reading X from the images on its Images instantiation.
template <class Tile>
void launch_simt_backward(const GemmParams& w, const GemmParams& d, cudaStream_t stream) {
  if (w.images)
    launch_backward_tiles<typename Tile::Images>(w, d, stream);
  else
    launch_backward_tiles<Tile>(w, d, stream);
}

// Whether this process runs dense.cu's sm_90a code (the wgmma wrappers: MNIST_WGMMA, kernels/wgmma.cuh):
// built for it (kernels/CMakeLists.txt compiles this file as sm_90a where the architectures include
// 90) and on a device that loads it (compute capability 9.0). Asked once, of the device itself: a
// probe kernel compiled like the tile reports the macro of the code that actually runs, so any
// other device or build (a Blackwell JIT-compiling the compute_90 PTX, an sm_80 build) falls back
// to PipeTile. The first forced Wgmma launch pays one synchronous round trip (not in a capture).
bool wgmma_available();  // (dense.cu)

// PipeTile's preconditions: 16-byte aligned operands and rows (every full chunk a legal 16-byte
// cp.async), and split pieces of whole 32-deep slices (weight_split_rows and forward_split_cols
// make them multiples of 32). An operand read from the images (a or b null: aligned) needs its
// rows of K pixels a multiple of 4 (lda / ldb = K, checked here) and the images 4-byte aligned for
// its 4-byte copies; the Copier checks the latter itself and loads every chunk by hand otherwise.
inline bool pipelined_ok(const GemmParams& p) {
  auto aligned = [](const float* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; };
  return aligned(p.a) && aligned(p.b) && p.lda % 4 == 0 && p.ldb % 4 == 0 && p.split_k % 32 == 0;
}

enum class Pick { Mma, Pipe64, Pipe64x8, Pipe128 };

// The tile of one TF32/BF16 GEMM p, and (Forward with a split) whether the split is folded (then
// p.partial is cleared: no partial arrays, no reduction pass). Measured on the H100 (63006a1,
// bench_kernels at 4096 rows): the folded forward is fastest on the 4-warp 64x64 tile at TF32 (25.6
// vs 27.4 µs on 8 warps) and on the 8-warp one at BF16 (22.9 vs 27.2); the split weight GEMM on 8
// warps (43.9 vs 56.7 in one launch). Narrow GEMMs stay off the pipelined tiles: a tile at least as
// wide as the output in both dimensions, or MmaTile (measured: 16384x128->64 forward 29.7 µs on the
// 128x128 tile vs 19.0 on the FP32 SIMT one; 16384x64->10 21.1 vs 9.3).
inline Pick pick_pipe(GemmParams& p, bool fold_allowed, bool tf32) {
  if (!pipelined_ok(p) || g_forced_tile.tile == GemmTile::Mma) return Pick::Mma;
  const bool split = p.split_k > 0 && p.partial;
  if (g_forced_tile.tile != GemmTile::Auto) {  // (Wgmma: the GEMMs it does not run, or no sm_90a)
    if (split && fold_allowed && g_forced_tile.fold_forward_split) p.partial = nullptr;
    return g_forced_tile.tile == GemmTile::Pipe128  ? Pick::Pipe128
           : g_forced_tile.tile == GemmTile::Pipe64 ? Pick::Pipe64
                                                    : Pick::Pipe64x8;
  }
  const bool fit128 = p.M >= 128 && p.N >= 128, fit64 = p.M >= 64 && p.N >= 64;
  if (split && fold_allowed) {
    const Pick fold = fit128 && tiles<128, 128>(p) >= kBigTileBlocks ? Pick::Pipe128
                      : fit64 && tiles<64, 64>(p) >= kBigTileBlocks  ? (tf32 ? Pick::Pipe64 : Pick::Pipe64x8)
                                                                     : Pick::Mma;
    if (fold != Pick::Mma) {
      p.partial = nullptr;
      return fold;
    }
  }
  const int splits = split ? split_count(p) : 1;
  if (fit128 && tiles<128, 128>(p) * splits >= (split ? kSplitBigTileBlocks : kBigTileBlocks)) return Pick::Pipe128;
  if (fit64 && tiles<64, 64>(p) * splits >= kBigTileBlocks) return Pick::Pipe64x8;
  return Pick::Mma;
}

inline long long g_images_fallbacks = 0;  // dense_images_fallbacks (tests)

// Whether Tile can run p: every tile reads float operands; only those with kImages read X from the
// images in place (a GEMM with p.images falls back to one that does; counted for
// dense_images_fallbacks).
template <class Tile>
bool takes_input(const GemmParams& p) {
  if (!p.images || Tile::kImages) return true;
  ++g_images_fallbacks;
  return false;
}

// The GEMM p at PREC; returns whether a split of p is left for dense_split_reduce_kernel (false
// when there is none or it was folded into the GEMM).
template <GemmPrecision PREC, Kind KIND>
bool launch_gemm_as(GemmParams p, cudaStream_t stream) {
  if constexpr (PREC != GemmPrecision::FP32) {
    using T = TilesFor<PREC>;
    if constexpr (KIND == Kind::Forward)
      if ((g_forced_tile.tile == GemmTile::Wgmma || g_forced_tile.tile == GemmTile::Wgmma128 ||
           g_forced_tile.tile == GemmTile::WgmmaWide) &&
          pipelined_ok(p) && takes_input<typename T::Wgmma>(p) && wgmma_available()) {
        if (p.split_k > 0 && p.partial && g_forced_tile.fold_forward_split) p.partial = nullptr;
        if (g_forced_tile.tile == GemmTile::Wgmma)
          launch_pipe_tiles<typename TilesFor<PREC>::Wgmma, KIND>(p, stream);
        else if (g_forced_tile.tile == GemmTile::Wgmma128)
          launch_pipe_tiles<typename TilesFor<PREC>::Wgmma128, KIND>(p, stream);
        else
          launch_pipe_tiles<typename TilesFor<PREC>::WgmmaWide, KIND>(p, stream);
        return p.partial;
      }
    if constexpr (KIND == Kind::Weight)
      if ((g_forced_tile.tile == GemmTile::Wgmma || g_forced_tile.tile == GemmTile::Wgmma128 ||
           g_forced_tile.tile == GemmTile::WgmmaWide) &&
          pipelined_ok(p) && takes_input<typename T::WgmmaW64>(p) && wgmma_available()) {
        // (WgmmaWide: the 128x128 weight tile, already two warpgroups; the split, if any, stays
        // across blocks: the weight GEMM's is never folded)
        if (g_forced_tile.tile == GemmTile::Wgmma)
          launch_pipe_tiles<typename TilesFor<PREC>::WgmmaW64, KIND>(p, stream);
        else
          launch_pipe_tiles<typename TilesFor<PREC>::WgmmaW128, KIND>(p, stream);
        return p.partial;
      }
    // (pick_pipe may fold the split into p: a copy, so that a fallback below keeps the caller's split)
    GemmParams q = p;
    const Pick pick = pick_pipe(q, KIND == Kind::Forward, PREC == GemmPrecision::TF32);
    if constexpr (KIND == Kind::Forward)
      if (g_forced_tile.cluster_split && q.partial) {  // (no split left, or none fits: the tile as it is)
        switch (pick) {
          case Pick::Pipe128:
            if (!cluster_split_ok<typename T::Pipe128>(q)) break;
            launch_cluster_split<typename T::Pipe128>(q, stream);
            return false;
          case Pick::Pipe64:
            if (!cluster_split_ok<typename T::Pipe64>(q)) break;
            launch_cluster_split<typename T::Pipe64>(q, stream);
            return false;
          case Pick::Pipe64x8:
            if (!cluster_split_ok<typename T::Pipe64x8>(q)) break;
            launch_cluster_split<typename T::Pipe64x8>(q, stream);
            return false;
          case Pick::Mma: break;
        }
      }
    switch (pick) {
      case Pick::Pipe128:
        if (!takes_input<typename T::Pipe128>(q)) break;
        launch_pipe_tiles<typename T::Pipe128, KIND>(q, stream);
        return q.partial;
      case Pick::Pipe64:
        if (!takes_input<typename T::Pipe64>(q)) break;
        launch_pipe_tiles<typename T::Pipe64, KIND>(q, stream);
        return q.partial;
      case Pick::Pipe64x8:
        if (!takes_input<typename T::Pipe64x8>(q)) break;
        launch_pipe_tiles<typename T::Pipe64x8, KIND>(q, stream);
        return q.partial;
      case Pick::Mma: break;
    }
  } else {
    using T = TilesFor<PREC>;
    GemmParams q = p;  // as above: pick_simt may fold the split into q
    const SimtTileKind tile = pick_simt(q, KIND == Kind::Forward).tile;
    if constexpr (KIND == Kind::Forward)
      if (g_forced_simt.cluster_split && q.partial) {  // (no split left, or none fits: the tile as it is)
        if (tile == SimtTileKind::Vec128 && launch_simt_cluster_split<typename T::Vec128>(q, stream)) return false;
        if (tile == SimtTileKind::Vec64 && launch_simt_cluster_split<typename T::Vec64>(q, stream)) return false;
        if (tile == SimtTileKind::Vec32 && launch_simt_cluster_split<typename T::Vec32>(q, stream)) return false;
      }
    if (tile == SimtTileKind::Vec128 && takes_input<typename T::Vec128>(q)) {
      launch_simt_tiles<typename T::Vec128, KIND>(q, stream);
      return q.partial;
    }
    if (tile == SimtTileKind::Vec64 && takes_input<typename T::Vec64>(q)) {
      launch_simt_tiles<typename T::Vec64, KIND>(q, stream);
      return q.partial;
    }
    if (tile == SimtTileKind::Vec32 && takes_input<typename T::Vec32>(q)) {
      launch_simt_tiles<typename T::Vec32, KIND>(q, stream);
      return q.partial;
    }
  }
  if (tiles<64, 64>(p) >= kBigTileBlocks)
    launch_tiles<typename TilesFor<PREC>::Big, KIND>(p, stream);
  else
    launch_tiles<typename TilesFor<PREC>::Small, KIND>(p, stream);
  return p.partial;
}


// Weight GEMM w and data GEMM d (both non-empty) in one launch, one tile size for both, chosen as
// for one GEMM from their combined tile count (w's split always across blocks).
template <GemmPrecision PREC>
void launch_backward_as(const GemmParams& w, const GemmParams& d, cudaStream_t stream) {
  if constexpr (PREC != GemmPrecision::FP32) {
    GemmParams w1 = w, d1 = d;
    const Pick pw = pick_pipe(w1, false, false), pd = pick_pipe(d1, false, false);
    if (pw != Pick::Mma && pd != Pick::Mma && takes_input<typename TilesFor<PREC>::Pipe64x8>(w)) {
      const int splits = split_count(w);
      const bool big = g_forced_tile.tile == GemmTile::Auto
                           ? pw == Pick::Pipe128 && pd == Pick::Pipe128 &&
                                 tiles<128, 128>(w) * splits + tiles<128, 128>(d) >= kBigTileBlocks
                           : pw == Pick::Pipe128;
      if (big) return launch_backward_tiles<typename TilesFor<PREC>::Pipe128>(w, d, stream);
      if (pw == Pick::Pipe64 && g_forced_tile.tile != GemmTile::Auto)
        return launch_backward_tiles<typename TilesFor<PREC>::Pipe64>(w, d, stream);
      if (g_forced_tile.tile != GemmTile::Auto || tiles<64, 64>(w) * splits + tiles<64, 64>(d) >= kBigTileBlocks)
        return launch_backward_tiles<typename TilesFor<PREC>::Pipe64x8>(w, d, stream);
    }
  } else {
    using T = TilesFor<PREC>;
    switch (pick_simt_backward(w, d)) {  // (w may read X from the images: SimtVecTile does)
      case SimtTileKind::Vec128:
        if (takes_input<typename T::Vec128>(w)) return launch_simt_backward<typename T::Vec128>(w, d, stream);
        break;
      case SimtTileKind::Vec64:
        if (takes_input<typename T::Vec64>(w)) return launch_simt_backward<typename T::Vec64>(w, d, stream);
        break;
      case SimtTileKind::Vec32:
        if (takes_input<typename T::Vec32>(w)) return launch_simt_backward<typename T::Vec32>(w, d, stream);
        break;
      default: break;
    }
  }
  if (tiles<64, 64>(w) + tiles<64, 64>(d) >= kBigTileBlocks)
    launch_backward_tiles<typename TilesFor<PREC>::Big>(w, d, stream);
  else
    launch_backward_tiles<typename TilesFor<PREC>::Small>(w, d, stream);
}

// The kernels of PREC's pipelined tiles that launch_gemm_as<PREC, Kind::Forward> (FORWARD) or the
// backward GEMMs (else) launch, at their shared-memory sizes: what launch_pipe_tiles and
// launch_backward_tiles set on first use (dense_prepare; FP32's tiles use static shared memory).
template <class Tile, bool FORWARD>
void prepare_pipe_tile() {
  if constexpr (FORWARD) {
    allow_smem(dense_pipe_kernel<Tile, Kind::Forward>, Tile::template smem_bytes<Kind::Forward>());
  } else {
    allow_smem(dense_pipe_kernel<Tile, Kind::Data>, Tile::template smem_bytes<Kind::Data>());
    allow_smem(dense_pipe_kernel<Tile, Kind::Weight>, Tile::template smem_bytes<Kind::Weight>());
    allow_smem(dense_pipe_backward_kernel<Tile>,
               std::max(Tile::template smem_bytes<Kind::Weight>(), Tile::template smem_bytes<Kind::Data>()));
  }
}
template <GemmPrecision PREC, bool FORWARD>
void prepare_tiles() {
  if constexpr (PREC != GemmPrecision::FP32) {
    prepare_pipe_tile<typename TilesFor<PREC>::Pipe128, FORWARD>();
    prepare_pipe_tile<typename TilesFor<PREC>::Pipe64, FORWARD>();
    prepare_pipe_tile<typename TilesFor<PREC>::Pipe64x8, FORWARD>();
  }
}

// cluster_split_capacity of PREC's pipelined tile `tile` (0 at FP32, and for a tile that is not one).
template <GemmPrecision PREC>
int cluster_capacity_as(GemmTile tile, int splits) {
  if constexpr (PREC == GemmPrecision::FP32) {
    return 0;
  } else {
    using T = TilesFor<PREC>;
    return tile == GemmTile::Pipe128    ? cluster_split_capacity<typename T::Pipe128>(splits)
           : tile == GemmTile::Pipe64x8 ? cluster_split_capacity<typename T::Pipe64x8>(splits)
           : tile == GemmTile::Pipe64   ? cluster_split_capacity<typename T::Pipe64>(splits)
                                        : 0;
  }
}

template <GemmPrecision PREC>
int weight_adam_capacity_as(bool large, bool images, int splits) {
  using T = TilesFor<PREC>;
  if constexpr (PREC == GemmPrecision::FP32) {
    if (images)
      return large ? weight_adam_capacity<typename T::Vec128::Images>(splits)
                   : weight_adam_capacity<typename T::Vec64::Images>(splits);
    return large ? weight_adam_capacity<typename T::Vec128>(splits) : weight_adam_capacity<typename T::Vec64>(splits);
  } else {
    (void)images;  // (one PipeTile reads both)
    return large ? weight_adam_capacity<typename T::Pipe128>(splits) : weight_adam_capacity<typename T::Pipe64x8>(splits);
  }
}
template <GemmPrecision PREC>
void launch_weight_adam_as(bool large, const GemmParams& p, const WeightAdam& a, cudaStream_t stream) {
  using T = TilesFor<PREC>;
  if constexpr (PREC == GemmPrecision::FP32) {
    if (p.images)
      return large ? launch_weight_adam<typename T::Vec128::Images>(p, a, stream)
                   : launch_weight_adam<typename T::Vec64::Images>(p, a, stream);
    return large ? launch_weight_adam<typename T::Vec128>(p, a, stream) : launch_weight_adam<typename T::Vec64>(p, a, stream);
  } else {
    return large ? launch_weight_adam<typename T::Pipe128>(p, a, stream)
                 : launch_weight_adam<typename T::Pipe64x8>(p, a, stream);
  }
}

// Each precision's forward and backward launchers are compiled once each, apart (the kernels they
// instantiate are disjoint): dense_<precision>_forward.cu and dense_<precision>_backward.cu.
#define MNIST_DENSE_FORWARD(EXTERN, PREC)                                                              \
  EXTERN template bool launch_gemm_as<PREC, Kind::Forward>(GemmParams, cudaStream_t);                  \
  EXTERN template int cluster_capacity_as<PREC>(GemmTile, int);                                       \
  EXTERN template void prepare_tiles<PREC, true>();
#define MNIST_DENSE_BACKWARD(EXTERN, PREC)                                                             \
  EXTERN template bool launch_gemm_as<PREC, Kind::Data>(GemmParams, cudaStream_t);                     \
  EXTERN template bool launch_gemm_as<PREC, Kind::Weight>(GemmParams, cudaStream_t);                   \
  EXTERN template void launch_backward_as<PREC>(const GemmParams&, const GemmParams&, cudaStream_t);   \
  EXTERN template void prepare_tiles<PREC, false>();
// The weight GEMM with Adam (dense_weight_adam), every precision's in dense_weight_adam.cu.
#define MNIST_DENSE_WEIGHT_ADAM(EXTERN, PREC)                                                          \
  EXTERN template int weight_adam_capacity_as<PREC>(bool, bool, int);                                  \
  EXTERN template void launch_weight_adam_as<PREC>(bool, const GemmParams&, const WeightAdam&, cudaStream_t);
// The tiles with ablation kernels (dense_force_ablation; benchmarks only): four each, 16 in all, in
// dense_tf32_ablation.cu. X(TILE, KIND) for each.
#define MNIST_DENSE_ABLATION_TILES(X)                                    \
  X(TilesFor<GemmPrecision::TF32>::Pipe128, Kind::Forward)               \
  X(TilesFor<GemmPrecision::TF32>::Pipe64x8, Kind::Forward)              \
  X(TilesFor<GemmPrecision::TF32>::Pipe64x8, Kind::Weight)               \
  X(TilesFor<GemmPrecision::TF32>::Pipe128, Kind::Weight)                \
  X(TilesFor<GemmPrecision::TF32>::WgmmaWide, Kind::Forward)
static_assert(Ablatable<TilesFor<GemmPrecision::TF32>::Pipe128, Kind::Forward>::value &&
                  Ablatable<TilesFor<GemmPrecision::TF32>::Pipe64x8, Kind::Forward>::value &&
                  Ablatable<TilesFor<GemmPrecision::TF32>::Pipe64x8, Kind::Weight>::value &&
                  Ablatable<TilesFor<GemmPrecision::TF32>::Pipe128, Kind::Weight>::value &&
                  Ablatable<TilesFor<GemmPrecision::TF32>::WgmmaWide, Kind::Forward>::value &&
                  !Ablatable<TilesFor<GemmPrecision::TF32>::Pipe64, Kind::Forward>::value &&
                  !Ablatable<TilesFor<GemmPrecision::TF32>::Pipe64, Kind::Weight>::value,
              "MNIST_DENSE_ABLATION_TILES names exactly the Ablatable tiles");

MNIST_DENSE_FORWARD(extern, GemmPrecision::FP32)
MNIST_DENSE_FORWARD(extern, GemmPrecision::TF32)
MNIST_DENSE_FORWARD(extern, GemmPrecision::BF16)
MNIST_DENSE_BACKWARD(extern, GemmPrecision::FP32)
MNIST_DENSE_BACKWARD(extern, GemmPrecision::TF32)
MNIST_DENSE_BACKWARD(extern, GemmPrecision::BF16)
MNIST_DENSE_WEIGHT_ADAM(extern, GemmPrecision::FP32)
MNIST_DENSE_WEIGHT_ADAM(extern, GemmPrecision::TF32)
MNIST_DENSE_WEIGHT_ADAM(extern, GemmPrecision::BF16)

}  // namespace mnist::cuda::dense_impl
