#include "kernels/dense.cuh"

#include <cstddef>
#include <cstdint>

#include "kernels/curand_draw.cuh"
#include "kernels/philox.hpp"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

// The three GEMMs of a dense layer, C [M,N] = Σ_k A(m,k) · B(n,k):
//   Forward  Y  = X · Wᵀ    M = batch, N = out, K = in;   A = X  [M,K] (k fastest), B = W [N,K] (k fastest)
//   Data     dX = dZ · W    M = batch, N = in,  K = out;  A = dZ [M,K] (k fastest), B = W [K,N] (n fastest)
//   Weight   dW = dZᵀ · X   M = out,   N = in+1, K = batch; A = dZ [K,M] (m fastest), B = X [K,N] (n fastest)
// Each has its own epilogue (bias + ReLU + dropout; ReLU/dropout mask; dW and the db column).
enum class Kind { Forward, Data, Weight };

struct GemmParams {
  int M = 0, N = 0, K = 0;
  const float* a = nullptr;
  int lda = 0;
  const float* amask = nullptr;  // when set, A(m,k) is replaced by 0 where amask (same layout) <= 0
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
};

// One block computes the BM x BN tile of C at (m0, n0); each of its (BM/TM)*(BN/TN) threads a
// TM x TN micro-tile whose rows are tr + i*(BM/TM) and columns tc + j*(BN/TN) (strided, so that the
// shared-memory reads of B and the global stores of the epilogue are consecutive across a warp).
// K advances in BK slices staged in shared memory as As[k][m], Bs[k][n] (one float of padding per
// row). Loads walk global memory along its contiguous dimension; out-of-range elements (row,
// column or k tails) load as 0 and are never stored. Every thread of the block must call it (it
// synchronises the block).
template <int BM, int BN, int BK, int TM, int TN, Kind KIND>
__device__ __forceinline__ void gemm_tile(const GemmParams& p, int m0, int n0, float (&As)[BK][BM + 1],
                                          float (&Bs)[BK][BN + 1]) {
  constexpr int RM = BM / TM, RN = BN / TN, THREADS = RM * RN;
  constexpr bool A_KFAST = KIND != Kind::Weight;
  constexpr bool B_KFAST = KIND == Kind::Forward;
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split into micro-tiles");
  static_assert((BM * BK) % THREADS == 0 && (BN * BK) % THREADS == 0, "tile loads must split evenly");

  const int tid = int(threadIdx.x);
  const int tr = tid / RN, tc = tid % RN;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < p.K; k0 += BK) {
#pragma unroll
    for (int it = 0; it < BM * BK / THREADS; ++it) {
      const int e = tid + it * THREADS;
      const int mm = A_KFAST ? e / BK : e % BM;
      const int kk = A_KFAST ? e % BK : e / BM;
      const int m = m0 + mm, k = k0 + kk;
      float v = 0.0f;
      if (m < p.M && k < p.K) {
        const std::size_t idx = A_KFAST ? std::size_t(m) * p.lda + k : std::size_t(k) * p.lda + m;
        v = p.a[idx];
        if (p.amask && !(p.amask[idx] > 0.0f)) v = 0.0f;
      }
      As[kk][mm] = v;
    }
#pragma unroll
    for (int it = 0; it < BN * BK / THREADS; ++it) {
      const int e = tid + it * THREADS;
      const int nn = B_KFAST ? e / BK : e % BN;
      const int kk = B_KFAST ? e % BK : e / BN;
      const int n = n0 + nn, k = k0 + kk;
      float v = 0.0f;
      if (n < p.N && k < p.K) {
        if (n == p.ones_col)
          v = 1.0f;
        else
          v = p.b[B_KFAST ? std::size_t(n) * p.ldb + k : std::size_t(k) * p.ldb + n];
      }
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = As[kk][tr + i * RM];
#pragma unroll
      for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tc + j * RN];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

  uint64_t step = 0;
  if constexpr (KIND == Kind::Forward)
    if (p.dropout) step = p.counters ? uint64_t(p.counters->step) : p.step;

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + tr + i * RM;
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + tc + j * RN;
      if (n >= p.N) continue;
      const float v = acc[i][j];
      const std::size_t o = std::size_t(m) * p.ldo + n;
      if constexpr (KIND == Kind::Forward) {
        float z = v + p.bias[n];
        if (p.relu) z = z > 0.0f ? z : 0.0f;
        if (p.dropout)
          z = dropout_keep_dev(p.seed, step, p.layer, uint64_t(m) * uint64_t(p.N) + uint64_t(n), p.threshold)
                  ? z * p.scale
                  : 0.0f;
        p.out[o] = z;
      } else if constexpr (KIND == Kind::Data) {
        p.out[o] = p.mask ? (p.mask[o] > 0.0f ? v * p.mask_scale : 0.0f) : v;
      } else {
        if (n == p.ones_col)
          p.db[m] = v;
        else
          p.out[o] = v;
      }
    }
  }
}

// One GEMM: block (x, y) computes the tile at rows y*BM, columns x*BN.
template <int BM, int BN, int BK, int TM, int TN, Kind KIND>
__global__ void __launch_bounds__((BM / TM) * (BN / TN)) dense_gemm_kernel(const GemmParams p) {
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  gemm_tile<BM, BN, BK, TM, TN, KIND>(p, int(blockIdx.y) * BM, int(blockIdx.x) * BN, As, Bs);
}

// A layer's two backward GEMMs in one launch (they are independent: both only read dZ): blocks
// [0, weight tiles) compute the weight GEMM w (row-major over its tile grid), the rest the data
// GEMM d. The branch is uniform per block. One launch instead of two, and one less link in the
// step's chain of dependent kernels.
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN)) dense_backward_kernel(const GemmParams w, const GemmParams d) {
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  const int w_cols = (w.N + BN - 1) / BN, w_tiles = w_cols * ((w.M + BM - 1) / BM);
  int t = int(blockIdx.x);
  if (t < w_tiles) {
    gemm_tile<BM, BN, BK, TM, TN, Kind::Weight>(w, (t / w_cols) * BM, (t % w_cols) * BN, As, Bs);
  } else {
    t -= w_tiles;
    const int d_cols = (d.N + BN - 1) / BN;
    gemm_tile<BM, BN, BK, TM, TN, Kind::Data>(d, (t / d_cols) * BM, (t % d_cols) * BN, As, Bs);
  }
}

template <int BM, int BN>
long long tiles(const GemmParams& p) {
  return (long long)((p.M + BM - 1) / BM) * ((p.N + BN - 1) / BN);
}

template <int BM, int BN, int BK, int TM, int TN, Kind KIND>
void launch_tiles(const GemmParams& p, cudaStream_t stream) {
  const unsigned gx = unsigned((p.N + BN - 1) / BN), gy = unsigned((p.M + BM - 1) / BM);
  MNIST_CHECK(gy <= 65535u, "dense GEMM: ", p.M, " rows exceed the grid limit");
  dense_gemm_kernel<BM, BN, BK, TM, TN, KIND><<<dim3(gx, gy), (BM / TM) * (BN / TN), 0, stream>>>(p);
  MNIST_LAUNCH_CHECK(stream);
}

// Tile choice: 64x64 tiles (4x4 per thread) when they alone fill the GPU (>= ~120 blocks, the
// H100 has 132 SMs), 32x32 tiles (2x2 per thread) otherwise, for more blocks on the model's small
// GEMMs. Both give bitwise the same results (see dense.cuh). K slices are deep (BK = 64 for the
// small tiles, 32 for the large; 17 KB of shared memory either way) because at batch 128 the
// first layer's forward GEMM runs as only 16 blocks, one per SM, over K = 784: each slice costs a
// global-load latency that nothing else on the SM hides, so the number of slices (49 at BK = 16,
// 13 at BK = 64) sets its time.
constexpr long long kBigTileBlocks = 120;

template <Kind KIND>
void launch_gemm(const GemmParams& p, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0) return;
  if (tiles<64, 64>(p) >= kBigTileBlocks)
    launch_tiles<64, 64, 32, 4, 4, KIND>(p, stream);
  else
    launch_tiles<32, 32, 64, 2, 2, KIND>(p, stream);
}

template <int BM, int BN, int BK, int TM, int TN>
void launch_backward_tiles(const GemmParams& w, const GemmParams& d, cudaStream_t stream) {
  const long long blocks = tiles<BM, BN>(w) + tiles<BM, BN>(d);
  MNIST_CHECK(blocks < (1ll << 31), "dense backward: ", blocks, " tiles exceed the grid limit");
  dense_backward_kernel<BM, BN, BK, TM, TN><<<unsigned(blocks), (BM / TM) * (BN / TN), 0, stream>>>(w, d);
  MNIST_LAUNCH_CHECK(stream);
}

// Weight GEMM w and data GEMM d (both non-empty) in one launch, one tile size for both, chosen as
// for one GEMM from their combined tile count.
void launch_backward(const GemmParams& w, const GemmParams& d, cudaStream_t stream) {
  if (tiles<64, 64>(w) + tiles<64, 64>(d) >= kBigTileBlocks)
    launch_backward_tiles<64, 64, 32, 4, 4>(w, d, stream);
  else
    launch_backward_tiles<32, 32, 64, 2, 2>(w, d, stream);
}

void check_sizes(const char* op, int B, int K, int N) {
  MNIST_CHECK(B >= 0 && K > 0 && N > 0, op, ": invalid sizes B=", B, " K=", K, " N=", N);
}

GemmParams forward_params(float* Y, const float* X, const float* W, const float* b, int B, int K, int N, bool relu) {
  GemmParams p;
  p.M = B;
  p.N = N;
  p.K = K;
  p.a = X;
  p.lda = K;
  p.b = W;
  p.ldb = K;
  p.out = Y;
  p.ldo = N;
  p.bias = b;
  p.relu = relu;
  return p;
}

GemmParams weight_params(float* dW, float* db, const float* dZ, const float* amask, const float* X, int B, int K,
                         int N) {
  GemmParams p;
  p.M = N;
  p.N = db ? K + 1 : K;
  p.K = B;
  p.a = dZ;
  p.lda = N;
  p.amask = amask;
  p.b = X;
  p.ldb = K;
  p.ones_col = db ? K : -1;
  p.out = dW;
  p.ldo = K;
  p.db = db;
  return p;
}

GemmParams data_params(float* dX, const float* dZ, const float* amask, const float* W, const float* mask,
                       float mask_scale, int B, int K, int N) {
  GemmParams p;
  p.M = B;
  p.N = K;
  p.K = N;
  p.a = dZ;
  p.lda = N;
  p.amask = amask;
  p.b = W;
  p.ldb = K;
  p.out = dX;
  p.ldo = K;
  p.mask = mask;
  p.mask_scale = mask_scale;
  return p;
}

// dW/db, and dX when requested and B > 0: one launch for both when there are both.
void launch_weights_and_data(const GemmParams& w, const GemmParams* d, cudaStream_t stream) {
  if (d && d->M > 0)
    launch_backward(w, *d, stream);
  else
    launch_gemm<Kind::Weight>(w, stream);
}

}  // namespace

void dense_forward(float* Y, const float* X, const float* W, const float* b, int B, int K, int N, bool relu,
                   cudaStream_t stream) {
  check_sizes("dense_forward", B, K, N);
  if (B == 0) return;
  MNIST_CHECK(Y && X && W && b, "dense_forward: null pointer");
  launch_gemm<Kind::Forward>(forward_params(Y, X, W, b, B, K, N, relu), stream);
}

void dense_relu_dropout_forward(float* D, const float* X, const float* W, const float* b, int B, int K, int N,
                                const DropoutSpec& drop, cudaStream_t stream) {
  check_sizes("dense_relu_dropout_forward", B, K, N);
  MNIST_CHECK(drop.p >= 0.0f && drop.p < 1.0f, "dropout probability must be in [0, 1), got ", drop.p);
  if (B == 0) return;
  MNIST_CHECK(D && X && W && b, "dense_relu_dropout_forward: null pointer");
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
  launch_gemm<Kind::Forward>(p, stream);
}

void dense_backward(float* dX, float* dW, float* db, float* dZ, const float* dY, const float* X, const float* W,
                    const float* Y, int B, int K, int N, bool relu, cudaStream_t stream) {
  (void)dZ;
  check_sizes("dense_backward", B, K, N);
  MNIST_CHECK(dW && db && (B == 0 || (dY && X)) && (!relu || B == 0 || Y) && (!dX || W),
              "dense_backward: null pointer");
  const float* amask = relu ? Y : nullptr;
  const GemmParams w = weight_params(dW, db, dY, amask, X, B, K, N);
  const GemmParams d = data_params(dX, dY, amask, W, nullptr, 1.0f, B, K, N);
  launch_weights_and_data(w, dX ? &d : nullptr, stream);
}

void dense_backward_weights(float* dW, float* db, const float* dZ, const float* X, int B, int K, int N,
                            cudaStream_t stream) {
  check_sizes("dense_backward_weights", B, K, N);
  MNIST_CHECK(dW && (B == 0 || (dZ && X)), "dense_backward_weights: null pointer");
  launch_gemm<Kind::Weight>(weight_params(dW, db, dZ, nullptr, X, B, K, N), stream);
}

void dense_backward_data(float* dX, const float* dZ, const float* W, const float* mask, float mask_scale, int B,
                         int K, int N, cudaStream_t stream) {
  check_sizes("dense_backward_data", B, K, N);
  if (B == 0) return;
  MNIST_CHECK(dX && dZ && W, "dense_backward_data: null pointer");
  MNIST_CHECK(dX != dZ && dX != W, "dense_backward_data: dX must not alias its inputs");
  launch_gemm<Kind::Data>(data_params(dX, dZ, nullptr, W, mask, mask_scale, B, K, N), stream);
}

void dense_backward_fused(float* dW, float* db, float* dX, const float* dZ, const float* X, const float* W,
                          const float* mask, float mask_scale, int B, int K, int N, cudaStream_t stream) {
  check_sizes("dense_backward_fused", B, K, N);
  MNIST_CHECK(dW && (B == 0 || (dZ && X)) && (!dX || W), "dense_backward_fused: null pointer");
  MNIST_CHECK(!dX || (dX != dZ && dX != W && dX != dW), "dense_backward_fused: dX must not alias its inputs");
  const GemmParams w = weight_params(dW, db, dZ, nullptr, X, B, K, N);
  const GemmParams d = data_params(dX, dZ, nullptr, W, mask, mask_scale, B, K, N);
  launch_weights_and_data(w, dX ? &d : nullptr, stream);
}

}  // namespace mnist::cuda
