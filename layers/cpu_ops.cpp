#include "layers/cpu_ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

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
void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K, int lda) {
  blas_gemm(CblasTrans, CblasNoTrans, M, N, K, T(1), A, lda, B, N, T(0), C, N);
}
void blas_one_thread() { openblas_set_num_threads(1); }
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
void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K, int lda) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < M; ++i) {
    T* c = C + std::size_t(i) * N;
    std::fill(c, c + N, T(0));
    for (int k = 0; k < K; ++k) {
      const T a = A[std::size_t(k) * lda + i];
      if (a == T(0)) continue;  // ReLU/dropout zeros are common in dZ
      const T* b = B + std::size_t(k) * N;
#pragma omp simd
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}
void blas_one_thread() {}
#endif

template <class T>
void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K) {
  gemm_tn(C, A, B, M, N, K, M);
}

// ---------------------------------------------------------------------------------------------
// Element-wise ops go parallel only above kParallelMin elements, and only where no team is running
// already: the CPU engine calls them from its own team (layers/cpu_engine.cpp), on its threads' rows.
// Below that, no region is opened at all, rather than one its `if` clause keeps serial: such a
// region still costs 1.5-3 µs (per-row loss calls in one were a fifth of a CPU step), and nested in
// the engine's team it is a team of its own. A step makes about 14 of these calls a thread; an A/B
// of whole epochs on 2 cores showed no difference within the host's noise. An element's result
// does not depend on the split.
constexpr std::size_t kParallelMin = std::size_t(1) << 20;

namespace {
// body(begin, end) over [0, n): split among OpenMP's threads where that pays (`elements`, the
// elements the n items hold, above kParallelMin), else one call.
template <class F>
void for_ranges(std::size_t n, const F& body, std::size_t elements = 0) {
#ifdef _OPENMP
  if ((elements ? elements : n) > kParallelMin && !omp_in_parallel()) {
#pragma omp parallel
    {
      const std::size_t t = std::size_t(omp_get_thread_num()), nt = std::size_t(omp_get_num_threads());
      body(n * t / nt, n * (t + 1) / nt);
    }
    return;
  }
#endif
  body(std::size_t(0), n);
}
}  // namespace

template <class T>
void round_gemm_inputs(T* out, const T* in, std::size_t n, GemmPrecision prec) {
  if (prec == GemmPrecision::FP32) {
    std::copy(in, in + n, out);
    return;
  }
  for_ranges(n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) out[i] = T(round_input(prec, float(in[i])));
  });
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
  bias_act(Y, b, B, N, relu);
}

template <class T>
void bias_act(T* Y, const T* b, int B, int N, bool relu) {
  for_ranges(std::size_t(B), [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      T* y = Y + r * N;
#pragma omp simd
      for (int j = 0; j < N; ++j) {
        T z = y[j] + b[j];
        y[j] = relu ? (z > T(0) ? z : T(0)) : z;
      }
    }
  }, std::size_t(B) * N);
}

template <class T>
void dense_backward(T* dX, T* dW, T* db, T* dZ, const T* dY, const T* X, const T* W, const T* Y,
                    int B, int K, int N, bool relu, GemmPrecision prec) {
  const std::size_t n = std::size_t(B) * N;
  if (relu) relu_backward(dZ, dY, Y, n);
  else if (dZ != dY) std::copy(dY, dY + n, dZ);
  if (prec != GemmPrecision::FP32) {
    round_gemm_inputs(dZ, dZ, n, prec);  // dZ is this function's scratch
    X = rounded(0, X, std::size_t(B) * K, prec);
    if (dX) W = rounded(1, W, std::size_t(N) * K, prec);
  }
  gemm_tn(dW, dZ, X, N, K, B);  // [N,K] = dZᵀ[N,B] · X[B,K]
  column_sums(db, dZ, B, N, N);
  if (dX) gemm_nn(dX, dZ, W, B, K, N);  // [B,K] = dZ[B,N] · W[N,K]
}

template <class T>
void relu_backward(T* dZ, const T* dY, const T* Y, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) dZ[i] = Y[i] > T(0) ? dY[i] : T(0);
}

template <class T>
void relu_dropout_backward(T* dZ, const T* dD, const T* D, std::size_t n, T scale) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) dZ[i] = D[i] > T(0) ? dD[i] * scale : T(0);
}

template <class T>
void column_sums(T* s, const T* A, int B, int N, int lda) {
  std::fill(s, s + N, T(0));
  for (int r = 0; r < B; ++r) {
    const T* a = A + std::size_t(r) * lda;
#pragma omp simd
    for (int j = 0; j < N; ++j) s[j] += a[j];
  }
}

namespace {
// Philox4x32-10 (kernels/philox.hpp) of the dropout blocks q0 .. q0 + kLanes - 1 at once, one block a
// lane of each array, so that the rounds' 32x32->64-bit products vectorise (vpmuludq): the same
// words as rng::draw_block, eight blocks in the time of about two. word[4 l + k] is word k of block
// q0 + l: element order.
constexpr int kLanes = 8;
void dropout_words(uint32_t (&word)[4 * kLanes], uint64_t seed, uint32_t layer, uint64_t q0, uint64_t step) {
  constexpr uint32_t M0 = rng::kPhiloxM0, M1 = rng::kPhiloxM1, W0 = rng::kPhiloxW0, W1 = rng::kPhiloxW1;
  uint32_t x[kLanes], y[kLanes], z[kLanes], w[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    const rng::U4 c = rng::block_counter(rng::kDropout, layer, q0 + uint64_t(l), step);
    x[l] = c.x;
    y[l] = c.y;
    z[l] = c.z;
    w[l] = c.w;
  }
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const uint64_t p0 = uint64_t(M0) * x[l], p1 = uint64_t(M1) * z[l];
      const uint32_t nx = uint32_t(p1 >> 32) ^ y[l] ^ k0, nz = uint32_t(p0 >> 32) ^ w[l] ^ k1;
      y[l] = uint32_t(p1);
      w[l] = uint32_t(p0);
      x[l] = nx;
      z[l] = nz;
    }
    k0 += W0;
    k1 += W1;
  }
  for (int l = 0; l < kLanes; ++l) {
    word[4 * l] = x[l];
    word[4 * l + 1] = y[l];
    word[4 * l + 2] = z[l];
    word[4 * l + 3] = w[l];
  }
}
}  // namespace

template <class T>
void dropout_forward(T* out, const T* in, std::size_t n, float p, uint64_t seed, uint64_t step,
                     uint32_t layer, std::size_t first) {
  const uint32_t thr = rng::dropout_threshold(p);
  const T scale = T(1) / (T(1) - T(p));
  // One Philox block gives the draws of 4 consecutive elements (rng::draw's layout: word i & 3 of
  // block i / 4), so each block is computed once, not once per element (dropout was a fifth of a
  // CPU training step), and kLanes blocks at a time where they are whole. i counts from the
  // layer's element 0; out and in point at element `first`.
  const std::size_t end = first + n;
  auto one_block = [&](std::size_t q) {  // the elements of block q in [first, end), alone
    const rng::U4 r = rng::draw_block(seed, rng::kDropout, layer, q, step);
    const uint32_t word[4] = {r.x, r.y, r.z, r.w};
    for (std::size_t i = std::max(first, 4 * q), e = std::min(end, 4 * q + 4); i < e; ++i)
      out[i - first] = word[i & 3] >= thr ? in[i - first] * scale : T(0);
  };
  const std::size_t q_first = first / 4, q_end = (end + 3) / 4;  // blocks touched
  const std::size_t g0 = (first + 3) / 4, groups = end / 4 > g0 ? (end / 4 - g0) / kLanes : 0;
  for (std::size_t q = q_first; q < g0; ++q) one_block(q);  // a partial block at the start
  for_ranges(groups, [&](std::size_t begin, std::size_t end) {
    for (std::size_t g = begin; g < end; ++g) {
      const std::size_t q0 = g0 + g * kLanes;
      uint32_t word[4 * kLanes];
      dropout_words(word, seed, layer, q0, step);
      T* o = out + (4 * q0 - first);
      const T* x = in + (4 * q0 - first);
#pragma omp simd
      for (int j = 0; j < 4 * kLanes; ++j) o[j] = word[j] >= thr ? x[j] * scale : T(0);
    }
  }, n);
  for (std::size_t q = g0 + groups * kLanes; q < q_end; ++q) one_block(q);  // the rest, block by block
}

template <class T>
void dropout_backward(T* dIn, const T* dOut, std::size_t n, float p, uint64_t seed, uint64_t step,
                      uint32_t layer, std::size_t first) {
  dropout_forward(dIn, dOut, n, p, seed, step, layer, first);  // the same mask and scale
}

namespace {
// One row of softmax_xent: returns its loss, sets *hit, writes its gradient when d is not null.
template <class T>
double xent_row(T* d, int* hit, const T* z, int y, int C, T grad_scale) {
  int arg = 0;
  for (int j = 1; j < C; ++j)
    if (z[j] > z[arg]) arg = j;
  const T zmax = z[arg];
  // Without cancellation (as the kernel): lse = log1p(Σ_{j≠arg} e_j), and the label's gradient
  // -(Σ_{j≠y} e_j)/sum instead of p_y - 1, which loses a p_y near 1 to rounding.
  T others = 0, rest = 0;
  for (int j = 0; j < C; ++j) {
    const T e = j == arg ? T(1) : T(std::exp(z[j] - zmax));
    if (j != arg) others += e;
    if (j != y) rest += e;
  }
  const T lse = std::log1p(others);
  *hit = arg == y;
  if (d) {
    const T sum = 1 + others;
    for (int j = 0; j < C; ++j) {
      const T e = j == arg ? T(1) : T(std::exp(z[j] - zmax));
      d[j] = (j == y ? -rest / sum : e / sum) * grad_scale;
    }
  }
  return double(lse - (z[y] - zmax));
}
}  // namespace

template <class T>
double softmax_xent(T* dlogits, int* correct, const T* logits, const uint8_t* labels, int B, int C,
                    T grad_scale) {
  double loss = 0;
  int hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, hits) if (std::size_t(B) * C > kParallelMin)
  for (int r = 0; r < B; ++r) {
    int hit = 0;
    loss += xent_row(dlogits ? dlogits + std::size_t(r) * C : nullptr, &hit, logits + std::size_t(r) * C,
                     int(labels[r]), C, grad_scale);
    hits += hit;
  }
  if (correct) *correct = hits;
  return loss;
}

template <class T>
void softmax_xent_rows(T* dlogits, double* row_loss, uint8_t* row_hit, const T* logits, const uint8_t* labels,
                       int B, int C, T grad_scale) {
  for (int r = 0; r < B; ++r) {
    int hit = 0;
    row_loss[r] = xent_row(dlogits ? dlogits + std::size_t(r) * C : nullptr, &hit, logits + std::size_t(r) * C,
                           int(labels[r]), C, grad_scale);
    row_hit[r] = uint8_t(hit);
  }
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

namespace {
// One span of Adam. The restrict-qualified arguments let the loop vectorise: `parallel for simd`
// over the aliasing pointers compiled to scalar code, a sqrt and a division a float in sequence
// (a tenth of a CPU training step).
void adam_span(float* __restrict p, float* __restrict m, float* __restrict v, const float* __restrict g,
               std::size_t n, float alpha, float b1, float b2, float c1, float c2, float eps) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * m[i] + c1 * gi;
    const float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= alpha * mi / (std::sqrt(vi) + eps);
  }
}
}  // namespace

void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1,
                 float b2, float eps, int64_t t) {
  const double bc1 = 1.0 - std::pow(double(b1), double(t));
  const double bc2 = 1.0 - std::pow(double(b2), double(t));
  const float alpha = float(double(lr) * std::sqrt(bc2) / bc1);
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
  for_ranges(n, [&](std::size_t i, std::size_t end) {
    adam_span(p + i, m + i, v + i, g + i, end - i, alpha, b1, b2, c1, c2, eps);
  });
}

void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels,
                  const int32_t* idx, int B, int D) {
  constexpr float kInv255 = 1.0f / 255.0f;
  for_ranges(std::size_t(B), [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      const uint8_t* src = images + std::size_t(idx[r]) * D;
      float* dst = X + r * D;
#pragma omp simd
      for (int k = 0; k < D; ++k) dst[k] = float(src[k]) * kInv255;
      if (y) y[r] = labels[idx[r]];
    }
  }, std::size_t(B) * D);
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
  template void gemm_tn<T>(T*, const T*, const T*, int, int, int, int);                       \
  template void bias_act<T>(T*, const T*, int, int, bool);                                    \
  template void relu_backward<T>(T*, const T*, const T*, std::size_t);                        \
  template void relu_dropout_backward<T>(T*, const T*, const T*, std::size_t, T);            \
  template void column_sums<T>(T*, const T*, int, int, int);                                  \
  template void dense_forward<T>(T*, const T*, const T*, const T*, int, int, int, bool,      \
                                 GemmPrecision);                                             \
  template void round_gemm_inputs<T>(T*, const T*, std::size_t, GemmPrecision);              \
  template void dense_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, int, \
                                  int, int, bool, GemmPrecision);                             \
  template void dropout_forward<T>(T*, const T*, std::size_t, float, uint64_t, uint64_t,      \
                                   uint32_t, std::size_t);                                    \
  template void dropout_backward<T>(T*, const T*, std::size_t, float, uint64_t, uint64_t,     \
                                    uint32_t, std::size_t);                                   \
  template double softmax_xent<T>(T*, int*, const T*, const uint8_t*, int, int, T);           \
  template void softmax_xent_rows<T>(T*, double*, uint8_t*, const T*, const uint8_t*, int, int, T); \
  template void softmax<T>(T*, const T*, int, int);
MNIST_INSTANTIATE(float)
MNIST_INSTANTIATE(double)
#undef MNIST_INSTANTIATE

}  // namespace mnist::cpu
