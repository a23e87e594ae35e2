#include "layers/cpu_ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/philox.hpp"

#ifdef MNIST_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace mnist::cpu {

// ---------------------------------------------------------------------------------------------
// GEMMs. With OpenBLAS these are single cblas calls; without it, loops ordered so that the inner
// loop is a contiguous dot product or axpy that the compiler vectorises, parallel over rows of C.

#ifdef MNIST_HAVE_OPENBLAS
namespace {
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
               const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
               const double* A, int lda, const double* B, int ldb, double beta, double* C,
               int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
}  // namespace

template <class T>
void gemm_nt(T* C, const T* A, const T* B, int M, int N, int K, bool accumulate) {
  blas_gemm(CblasNoTrans, CblasTrans, M, N, K, T(1), A, K, B, K, accumulate ? T(1) : T(0), C, N);
}
template <class T>
void gemm_nn(T* C, const T* A, const T* B, int M, int N, int K) {
  blas_gemm(CblasNoTrans, CblasNoTrans, M, N, K, T(1), A, K, B, N, T(0), C, N);
}
template <class T>
void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K) {
  blas_gemm(CblasTrans, CblasNoTrans, M, N, K, T(1), A, M, B, N, T(0), C, N);
}
#else
template <class T>
void gemm_nt(T* C, const T* A, const T* B, int M, int N, int K, bool accumulate) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < M; ++i) {
    const T* a = A + std::size_t(i) * K;
    for (int j = 0; j < N; ++j) {
      const T* b = B + std::size_t(j) * K;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int k = 0; k < K; ++k) s += a[k] * b[k];
      C[std::size_t(i) * N + j] = accumulate ? C[std::size_t(i) * N + j] + s : s;
    }
  }
}
template <class T>
void gemm_nn(T* C, const T* A, const T* B, int M, int N, int K) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < M; ++i) {
    T* c = C + std::size_t(i) * N;
    std::fill(c, c + N, T(0));
    for (int k = 0; k < K; ++k) {
      const T a = A[std::size_t(i) * K + k];
      const T* b = B + std::size_t(k) * N;
#pragma omp simd
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}
template <class T>
void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < M; ++i) {
    T* c = C + std::size_t(i) * N;
    std::fill(c, c + N, T(0));
    for (int k = 0; k < K; ++k) {
      const T a = A[std::size_t(k) * M + i];
      if (a == T(0)) continue;  // ReLU/dropout zeros are common in dZ
      const T* b = B + std::size_t(k) * N;
#pragma omp simd
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}
#endif

// ---------------------------------------------------------------------------------------------
// Element-wise ops go parallel only above kParallelMin elements. A training step of the
// tutorial's model is ~100 µs of GEMMs in OpenBLAS's own threads; an OpenMP region per small
// op costs more than it saves, and its spinning workers compete with OpenBLAS for the cores
// (measured here: epochs of 0.8 s turned into 1-9 s on 2 loaded cores).
constexpr std::size_t kParallelMin = std::size_t(1) << 20;

template <class T>
void round_gemm_inputs(T* out, const T* in, std::size_t n, GemmPrecision prec) {
  if (prec == GemmPrecision::FP32) {
    std::copy(in, in + n, out);
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::size_t i = 0; i < n; ++i) out[i] = T(round_input(prec, float(in[i])));
}

namespace {
// Per-thread scratch for the rounded GEMM inputs: grows to the largest layer once, so that a
// training step allocates nothing after the first.
template <class T>
T* rounded(int slot, const T* in, std::size_t n, GemmPrecision prec) {
  thread_local std::vector<T> buffers[3];
  std::vector<T>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  round_gemm_inputs(b.data(), in, n, prec);
  return b.data();
}
}  // namespace

template <class T>
void dense_forward(T* Y, const T* X, const T* W, const T* b, int B, int K, int N, bool relu,
                   GemmPrecision prec) {
  if (prec != GemmPrecision::FP32) {
    X = rounded(0, X, std::size_t(B) * K, prec);
    W = rounded(1, W, std::size_t(N) * K, prec);
  }
  gemm_nt(Y, X, W, B, N, K, false);
#pragma omp parallel for schedule(static) if (std::size_t(B) * N > kParallelMin)
  for (int r = 0; r < B; ++r) {
    T* y = Y + std::size_t(r) * N;
#pragma omp simd
    for (int j = 0; j < N; ++j) {
      T z = y[j] + b[j];
      y[j] = relu ? (z > T(0) ? z : T(0)) : z;
    }
  }
}

template <class T>
void dense_backward(T* dX, T* dW, T* db, T* dZ, const T* dY, const T* X, const T* W, const T* Y,
                    int B, int K, int N, bool relu, GemmPrecision prec) {
  const std::size_t n = std::size_t(B) * N;
  if (relu) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dZ[i] = Y[i] > T(0) ? dY[i] : T(0);
  } else if (dZ != dY) {
    std::copy(dY, dY + n, dZ);
  }
  if (prec != GemmPrecision::FP32) {
    round_gemm_inputs(dZ, dZ, n, prec);  // dZ is this function's scratch
    X = rounded(0, X, std::size_t(B) * K, prec);
    if (dX) W = rounded(1, W, std::size_t(N) * K, prec);
  }
  gemm_tn(dW, dZ, X, N, K, B);  // [N,K] = dZᵀ[N,B] · X[B,K]
  std::fill(db, db + N, T(0));
  for (int r = 0; r < B; ++r) {
    const T* dz = dZ + std::size_t(r) * N;
#pragma omp simd
    for (int j = 0; j < N; ++j) db[j] += dz[j];
  }
  if (dX) gemm_nn(dX, dZ, W, B, K, N);  // [B,K] = dZ[B,N] · W[N,K]
}

template <class T>
void dropout_forward(T* out, const T* in, std::size_t n, float p, uint64_t seed, uint64_t step,
                     uint32_t layer) {
  const uint32_t thr = rng::dropout_threshold(p);
  const T scale = T(1) / (T(1) - T(p));
  // One Philox block gives the draws of 4 consecutive elements (rng::draw's layout: word i & 3 of
  // block i / 4), so each block is computed once, not once per element: the same mask, a quarter
  // of the work (dropout was a fifth of a CPU training step).
  const std::size_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::size_t q = 0; q < blocks; ++q) {
    const rng::U4 r = rng::draw_block(seed, rng::kDropout, layer, q, step);
    const uint32_t word[4] = {r.x, r.y, r.z, r.w};
    for (std::size_t i = 4 * q, e = std::min(n, 4 * q + 4); i < e; ++i)
      out[i] = word[i & 3] >= thr ? in[i] * scale : T(0);
  }
}

template <class T>
void dropout_backward(T* dIn, const T* dOut, std::size_t n, float p, uint64_t seed, uint64_t step,
                      uint32_t layer) {
  dropout_forward(dIn, dOut, n, p, seed, step, layer);  // the same mask and scale
}

template <class T>
double softmax_xent(T* dlogits, int* correct, const T* logits, const uint8_t* labels, int B, int C,
                    T grad_scale) {
  double loss = 0;
  int hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, hits) if (std::size_t(B) * C > kParallelMin)
  for (int r = 0; r < B; ++r) {
    const T* z = logits + std::size_t(r) * C;
    int arg = 0;
    for (int j = 1; j < C; ++j)
      if (z[j] > z[arg]) arg = j;
    const T zmax = z[arg];
    const int y = labels[r];
    // Without cancellation (as the kernel): lse = log1p(Σ_{j≠arg} e_j), and the label's gradient
    // -(Σ_{j≠y} e_j)/sum instead of p_y - 1, which loses a p_y near 1 to rounding.
    T others = 0, rest = 0;
    for (int j = 0; j < C; ++j) {
      const T e = j == arg ? T(1) : T(std::exp(z[j] - zmax));
      if (j != arg) others += e;
      if (j != y) rest += e;
    }
    const T lse = std::log1p(others);
    loss += double(lse - (z[y] - zmax));
    hits += (arg == y);
    if (dlogits) {
      const T sum = 1 + others;
      T* d = dlogits + std::size_t(r) * C;
      for (int j = 0; j < C; ++j) {
        const T e = j == arg ? T(1) : T(std::exp(z[j] - zmax));
        d[j] = (j == y ? -rest / sum : e / sum) * grad_scale;
      }
    }
  }
  if (correct) *correct = hits;
  return loss;
}

template <class T>
void softmax(T* probs, const T* logits, int B, int C) {
  for (int r = 0; r < B; ++r) {
    const T* z = logits + std::size_t(r) * C;
    T* p = probs + std::size_t(r) * C;
    T zmax = *std::max_element(z, z + C);
    T sum = 0;
    for (int j = 0; j < C; ++j) sum += (p[j] = std::exp(z[j] - zmax));
    for (int j = 0; j < C; ++j) p[j] /= sum;
  }
}

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1,
                 float b2, float eps, int64_t t) {
  const double bc1 = 1.0 - std::pow(double(b1), double(t));
  const double bc2 = 1.0 - std::pow(double(b2), double(t));
  const float alpha = float(double(lr) * std::sqrt(bc2) / bc1);
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (std::size_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= alpha * mi / (std::sqrt(vi) + eps);
  }
}

void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels,
                  const int32_t* idx, int B, int D) {
  constexpr float kInv255 = 1.0f / 255.0f;
#pragma omp parallel for schedule(static) if (std::size_t(B) * D > kParallelMin)
  for (int r = 0; r < B; ++r) {
    const uint8_t* src = images + std::size_t(idx[r]) * D;
    float* dst = X + std::size_t(r) * D;
#pragma omp simd
    for (int k = 0; k < D; ++k) dst[k] = float(src[k]) * kInv255;
    if (y) y[r] = labels[idx[r]];
  }
}

void shuffle_order(int32_t* order, int n, uint64_t seed, uint64_t epoch) {
  std::vector<uint64_t> keyed(n);
  for (int i = 0; i < n; ++i) keyed[i] = (uint64_t(rng::shuffle_key(seed, epoch, i)) << 32) | uint32_t(i);
  std::sort(keyed.begin(), keyed.end());  // (key, index) pairs are unique: same as a stable sort
  for (int i = 0; i < n; ++i) order[i] = int32_t(keyed[i] & 0xFFFFFFFFu);
}

#define MNIST_INSTANTIATE(T)                                                                  \
  template void gemm_nt<T>(T*, const T*, const T*, int, int, int, bool);                      \
  template void gemm_nn<T>(T*, const T*, const T*, int, int, int);                            \
  template void gemm_tn<T>(T*, const T*, const T*, int, int, int);                            \
  template void dense_forward<T>(T*, const T*, const T*, const T*, int, int, int, bool,      \
                                 GemmPrecision);                                             \
  template void round_gemm_inputs<T>(T*, const T*, std::size_t, GemmPrecision);              \
  template void dense_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, int, \
                                  int, int, bool, GemmPrecision);                             \
  template void dropout_forward<T>(T*, const T*, std::size_t, float, uint64_t, uint64_t,      \
                                   uint32_t);                                                 \
  template void dropout_backward<T>(T*, const T*, std::size_t, float, uint64_t, uint64_t,     \
                                    uint32_t);                                                \
  template double softmax_xent<T>(T*, int*, const T*, const uint8_t*, int, int, T);           \
  template void softmax<T>(T*, const T*, int, int);
MNIST_INSTANTIATE(float)
MNIST_INSTANTIATE(double)
#undef MNIST_INSTANTIATE

}  // namespace mnist::cpu
