// cuBLAS / cuBLASLt versions of the dense layer: the GPU references of the hand-written kernels in
// tests and benchmarks, and the engine's alternative path (EngineConfig::gemm == Gemm::Cublas), never
// the default. All FP32 (CUBLAS_COMPUTE_32F, no TF32).
//
// Row-major [R,C] arrays are column-major [C,R] arrays to cuBLAS, so each row-major product is
// issued as its transpose: C = A·Bᵀ becomes Cᵀ = B·Aᵀ, and so on (derivations beside each call).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace mnist::cublas {

// C [M,N] = A [M,K] · B [N,K]ᵀ (+ C if accumulate)
void gemm_nt(cublasHandle_t h, float* C, const float* A, const float* B, int M, int N, int K, bool accumulate,
             cudaStream_t stream);
// C [M,N] = A [M,K] · B [K,N]
void gemm_nn(cublasHandle_t h, float* C, const float* A, const float* B, int M, int N, int K, cudaStream_t stream);
// C [M,N] = A [K,M]ᵀ · B [K,N]
void gemm_tn(cublasHandle_t h, float* C, const float* A, const float* B, int M, int N, int K, cudaStream_t stream);
// out [N] = Σ_m A [m, :] for A [M,N], as A's column-major view times ones [M] (cublasSgemv).
void column_sum(cublasHandle_t h, float* out, const float* A, const float* ones, int M, int N, cudaStream_t stream);

// The dense forward Y [B,N] = act(X [B,K] · W [N,K]ᵀ + b [N]) as ONE cuBLASLt matmul with the
// bias (+ ReLU) epilogue, planned once per shape (descriptors and the heuristic's algorithm are
// built in the constructor; run() only launches, so it can be captured in a CUDA graph).
class LtDense {
 public:
  LtDense(cublasLtHandle_t h, int B, int K, int N, bool relu, std::size_t workspace_bytes);
  ~LtDense();
  LtDense(const LtDense&) = delete;
  LtDense& operator=(const LtDense&) = delete;

  // workspace: at least the workspace_bytes given to the constructor, device memory.
  void run(float* Y, const float* X, const float* W, const float* b, void* workspace, cudaStream_t stream) const;

  int batch() const { return B_; }

 private:
  void release() noexcept;

  cublasLtHandle_t h_;
  int B_, K_, N_;
  std::size_t ws_bytes_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
};

// Workspace the cuBLAS paths are given (cublasSetWorkspace and LtDense), enough for every shape
// of this model.
constexpr std::size_t kWorkspaceBytes = std::size_t(32) << 20;

// cpu::dense_backward through cuBLAS: dZ = relu ? dY ⊙ [Y > 0] : dY (written to dZ, which may alias
// dY), dW = dZᵀ·X (gemm_tn), db = Σ_b dZ (column_sum), dX = dZ·W when dX is set (gemm_nn).
// ones: [B] device array of 1.0f.
void dense_backward(cublasHandle_t h, float* dX, float* dW, float* db, float* dZ, const float* dY, const float* X,
                    const float* W, const float* Y, const float* ones, int B, int K, int N, bool relu,
                    cudaStream_t stream);

}  // namespace mnist::cublas
