// The CPU reference path: one free function per op, with the same name and argument order as its
// CUDA twin in kernels/ (outputs first, then inputs, then sizes). Plain loops that the compiler
// vectorises, OpenMP over the batch, and GEMMs through gemm_nt/nn/tn below (OpenBLAS when built
// with it). Templated on the element type so that gradient checks can run them in double.
//
// Layouts are row-major and PyTorch's: activations X [B, K]; Dense weight W [N, K] (out, in);
// bias b [N]; Y = X · Wᵀ + b.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/precision.hpp"

namespace mnist::cpu {

// C[M,N] = A[M,K] · B[N,K]ᵀ (+ C if accumulate)
template <class T> void gemm_nt(T* C, const T* A, const T* B, int M, int N, int K, bool accumulate);
// C[M,N] = A[M,K] · B[K,N]
template <class T> void gemm_nn(T* C, const T* A, const T* B, int M, int N, int K);
// C[M,N] = A[K,M]ᵀ · B[K,N]
template <class T> void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K);
// The same with A's rows lda >= M elements apart: columns [j, j+M) of a wider A (lda = its width).
template <class T> void gemm_tn(T* C, const T* A, const T* B, int M, int N, int K, int lda);

// The CPU engine runs its own threads (each its own rows or columns of a step) and calls the GEMMs
// from each: OpenBLAS's thread pool is held to one thread (loading the library if it is not yet;
// nothing in builds without it). OpenBLAS's own threads, woken at each of a step's small GEMMs,
// made a 2-core epoch slower than one thread (0.56-0.58 s against 0.50-0.52, batch 128).
void blas_one_thread();

// Y [B,N] = act(X [B,K] · W [N,K]ᵀ + b [N]); act = ReLU when relu, identity otherwise.
// prec (kernels/precision.hpp): TF32/BF16 round every element of X and W to that format (as the
// tensor-core kernels do) before the float32 product; the bias is added in full precision. For
// T = double the rounding goes through float.
template <class T>
void dense_forward(T* Y, const T* X, const T* W, const T* b, int B, int K, int N, bool relu,
                   GemmPrecision prec = GemmPrecision::FP32);

// Y [B,N] = act(Y + b) in place: dense_forward's epilogue.
template <class T> void bias_act(T* Y, const T* b, int B, int N, bool relu);

// The GEMM inputs of prec: out[i] = round_input(prec, in[i]) (a copy when prec is FP32).
template <class T> void round_gemm_inputs(T* out, const T* in, std::size_t n, GemmPrecision prec);

// Backward of dense_forward. dY [B,N] is the gradient of the loss w.r.t. Y; Y [B,N] is the
// forward output (its sign is the ReLU mask; unused when !relu). dZ [B,N] is scratch for the
// pre-activation gradient and may alias dY. Writes (overwrites) dW [N,K] = dZᵀ·X, db [N] = Σ_b dZ,
// and, when dX is not null, dX [B,K] = dZ·W. prec TF32/BF16: dZ, X and W are rounded first (dZ
// after the ReLU mask), and db sums the rounded dZ, as the kernels' ones column does.
template <class T>
void dense_backward(T* dX, T* dW, T* db, T* dZ, const T* dY, const T* X, const T* W, const T* Y,
                    int B, int K, int N, bool relu, GemmPrecision prec = GemmPrecision::FP32);

// dense_backward's first part: dZ [n] = Y > 0 ? dY : 0 (the ReLU's mask; dZ may alias dY).
template <class T> void relu_backward(T* dZ, const T* dY, const T* Y, std::size_t n);
// The gradient through a dropout and the ReLU before it, from the dropout's output D alone:
// dZ [n] = D > 0 ? dD * scale : 0, scale = 1/(1-p). D > 0 exactly where the element was kept and the
// ReLU passed it, so this equals dropout_backward then relu_backward bit for bit, without drawing the
// mask again (cuda::relu_dropout_backward's twin). dZ may alias dD, not D.
template <class T> void relu_dropout_backward(T* dZ, const T* dD, const T* D, std::size_t n, T scale);

// s [N] = Σ_r A[r·lda + j] over rows r = 0..B-1 in order: db of dense_backward (lda = N), or of a
// column range of a wider dZ.
template <class T> void column_sums(T* s, const T* A, int B, int N, int lda);

// Inverted dropout, training mode: out[i] = keep(i) ? in[i] / (1-p) : 0, where keep(i) is
// rng::dropout_keep(seed, step, layer, i, ...). p in [0,1). n = B * width elements, or a part of
// them: elements [first, first + n) of the layer's array, out and in pointing at element `first`.
template <class T>
void dropout_forward(T* out, const T* in, std::size_t n, float p, uint64_t seed, uint64_t step,
                     uint32_t layer, std::size_t first = 0);
// dIn[i] = keep(i) ? dOut[i] / (1-p) : 0 with the same mask as the forward call (regenerated).
template <class T>
void dropout_backward(T* dIn, const T* dOut, std::size_t n, float p, uint64_t seed, uint64_t step,
                      uint32_t layer, std::size_t first = 0);

// Sparse softmax cross-entropy over logits [B,C] and labels [B] (each < C), numerically stable
// (max-subtracted log-sum-exp). Returns the SUM of per-example losses; *correct gets the number
// of rows whose argmax (first maximum) equals the label. When dlogits is not null it receives
// (softmax - onehot) * grad_scale (grad_scale = 1/B for a mean loss).
template <class T>
double softmax_xent(T* dlogits, int* correct, const T* logits, const uint8_t* labels, int B, int C,
                    T grad_scale);

// The same, each row's loss and hit apart (row_loss[r], row_hit[r] 0 or 1), with no OpenMP region:
// for callers that split the rows among their own threads and sum the losses in row order.
template <class T>
void softmax_xent_rows(T* dlogits, double* row_loss, uint8_t* row_hit, const T* logits, const uint8_t* labels,
                       int B, int C, T grad_scale);

// Row-wise softmax probabilities [B,C] of logits [B,C] (for predictions).
template <class T> void softmax(T* probs, const T* logits, int B, int C);

// Adam as Keras computes it, over n elements of one flat span, at step t (1-based):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;
//   p -= lr · sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps)
void adam_update(float* p, float* m, float* v, const float* g, std::size_t n, float lr, float b1,
                 float b2, float eps, int64_t t);

// Batch gather: X [B,D] = images[idx[r]] / 255 (uint8 rows of D pixels), y[r] = labels[idx[r]].
void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels,
                  const int32_t* idx, int B, int D);

// Epoch order: indices 0..n-1 sorted by (rng::shuffle_key(seed, epoch, i), i).
void shuffle_order(int32_t* order, int n, uint64_t seed, uint64_t epoch);

}  // namespace mnist::cpu
