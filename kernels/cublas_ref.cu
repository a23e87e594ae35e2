#include "kernels/cublas_ref.cuh"

#include <cstdint>

#include "kernels/dropout.cuh"
#include "runtime/error.hpp"
#include "runtime/handles.cuh"

namespace mnist::cublas {
namespace {
constexpr uint32_t kMinAlignment = 16;  // bytes, for every matrix and the bias of LtDense
}  // namespace

void gemm_nt(cublasHandle_t h, float* C, const float* A, const float* B, int M, int N, int K, bool accumulate,
             cudaStream_t stream) {
  // Cᵀ [N,M] = B [N,K] · Aᵀ [K,M]. In column-major terms B's memory is Bᵀ [K,N] (ld K), used
  // transposed; A's memory is Aᵀ [K,M] (ld K), used as is; C's memory is Cᵀ [N,M] (ld N).
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  CUBLAS_CHECK(cublasSetStream(h, stream));
  CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, B, K, A, K, &beta, C, N));
}

void gemm_nn(cublasHandle_t h, float* C, const float* A, const float* B, int M, int N, int K, cudaStream_t stream) {
  // Cᵀ [N,M] = Bᵀ [N,K] · Aᵀ [K,M]: B's memory is Bᵀ (ld N), A's memory is Aᵀ (ld K), both as is.
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasSetStream(h, stream));
  CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, N, A, K, &beta, C, N));
}

void gemm_tn(cublasHandle_t h, float* C, const float* A, const float* B, int M, int N, int K, cudaStream_t stream) {
  // Cᵀ [N,M] = Bᵀ [N,K] · A [K,M]: B's memory is Bᵀ (ld N) as is; A's memory (row-major [K,M])
  // is Aᵀ [M,K] column-major (ld M), used transposed.
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasSetStream(h, stream));
  CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, N, M, K, &alpha, B, N, A, M, &beta, C, N));
}

void column_sum(cublasHandle_t h, float* out, const float* A, const float* ones, int M, int N, cudaStream_t stream) {
  // A's memory is Aᵀ [N,M] column-major (ld N); out = Aᵀ · ones.
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasSetStream(h, stream));
  CUBLAS_CHECK(cublasSgemv(h, CUBLAS_OP_N, N, M, &alpha, A, N, ones, 1, &beta, out, 1));
}

LtDense::LtDense(cublasLtHandle_t h, int B, int K, int N, bool relu, std::size_t workspace_bytes)
    : h_(h), B_(B), K_(K), N_(N), ws_bytes_(workspace_bytes) {
  MNIST_CHECK(B > 0 && K > 0 && N > 0, "LtDense: invalid sizes B=", B, " K=", K, " N=", N);
  // D = Yᵀ [N,B] (ld N) = op(A) · op(B) + bias, with A = W's memory, Wᵀ [K,N] (ld K), transposed
  // to [N,K]; B = X's memory, Xᵀ [K,B] (ld K), as is. The bias has D's row count N and is
  // broadcast over the B columns, i.e. over the batch, as it should be.
  try {
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    const cublasLtEpilogue_t epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, CUDA_R_32F, uint64_t(K), uint64_t(N), int64_t(K)));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, CUDA_R_32F, uint64_t(K), uint64_t(B), int64_t(K)));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c_, CUDA_R_32F, uint64_t(N), uint64_t(B), int64_t(N)));

    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    // The heuristic assumes 256-byte-aligned matrices unless told otherwise; the engine's weights
    // sit at 128-byte offsets in the flat parameter array, so only ask for algorithms that work
    // with 16-byte alignment (run() checks it).
    const cublasStatus_t st = [&] {
      cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                              &ws_bytes_, sizeof ws_bytes_);
      const uint32_t align = kMinAlignment;
      for (cublasLtMatmulPreferenceAttributes_t a :
           {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulPreferenceSetAttribute(pref, a, &align, sizeof align);
      if (s != CUBLAS_STATUS_SUCCESS) return s;
      return cublasLtMatmulAlgoGetHeuristic(h_, op_, a_, b_, c_, c_, pref, 1, &result, &found);
    }();
    cublasLtMatmulPreferenceDestroy(pref);
    CUBLAS_CHECK(st);
    MNIST_CHECK(found > 0 && result.state == CUBLAS_STATUS_SUCCESS, "cuBLASLt has no algorithm for the dense layer B=",
                B, " K=", K, " N=", N);
    algo_ = result.algo;
  } catch (...) {
    release();
    throw;
  }
}

LtDense::~LtDense() { release(); }

void LtDense::release() noexcept {
  if (c_) cublasLtMatrixLayoutDestroy(c_);
  if (b_) cublasLtMatrixLayoutDestroy(b_);
  if (a_) cublasLtMatrixLayoutDestroy(a_);
  if (op_) cublasLtMatmulDescDestroy(op_);
  c_ = b_ = a_ = nullptr;
  op_ = nullptr;
}

void LtDense::run(float* Y, const float* X, const float* W, const float* b, void* workspace,
                  cudaStream_t stream) const {
  MNIST_CHECK(Y && X && W && b, "LtDense::run: null pointer");
  for (const void* ptr : {static_cast<const void*>(Y), static_cast<const void*>(X), static_cast<const void*>(W),
                          static_cast<const void*>(b)})
    MNIST_CHECK(reinterpret_cast<uintptr_t>(ptr) % kMinAlignment == 0, "LtDense::run: pointer not ", kMinAlignment,
                "-byte aligned");
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(h_, op_, &alpha, W, a_, X, b_, &beta, Y, c_, Y, c_, &algo_, workspace, ws_bytes_,
                              stream));
}

void dense_backward(cublasHandle_t h, float* dX, float* dW, float* db, float* dZ, const float* dY, const float* X,
                    const float* W, const float* Y, const float* ones, int B, int K, int N, bool relu,
                    cudaStream_t stream) {
  MNIST_CHECK(B > 0 && K > 0 && N > 0, "cublas::dense_backward: invalid sizes");
  const float* g = dY;
  if (relu) {
    cuda::relu_dropout_backward(dZ, dY, Y, std::size_t(B) * N, 1.0f, stream);
    g = dZ;
  }
  gemm_tn(h, dW, g, X, N, K, B, stream);   // [N,K] = dZᵀ [N,B] · X [B,K]
  column_sum(h, db, g, ones, B, N, stream);
  if (dX) gemm_nn(h, dX, g, W, B, K, N, stream);  // [B,K] = dZ [B,N] · W [N,K]
}

}  // namespace mnist::cublas
