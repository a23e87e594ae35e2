// The tests' twin of cpu::dense_backward on the GPU, composed from the engine's launcher: the
// tests compare it with the CPU path and cuBLAS; the engine itself never masks dY by Y (its
// activations are stored after the ReLU, so the next layer's dense_backward_fused masks dX).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "kernels/dense.cuh"
#include "runtime/cuda_check.cuh"
#include "runtime/device_buffer.cuh"

namespace mnist::test {

// dY [B,N], Y [B,N] (the forward output, its sign the ReLU mask; unused when !relu), X [B,K],
// W [N,K]: dW [N,K] = dZᵀ·X, db [N] = Σ_b dZ and, when dX is not null, dX [B,K] = dZ·W, with
// dZ = relu ? dY ⊙ [Y > 0] : dY formed on the host (a test helper: it synchronises the stream).
inline void dense_backward(float* dX, float* dW, float* db, const float* dY, const float* X, const float* W,
                           const float* Y, int B, int K, int N, bool relu, cudaStream_t stream,
                           GemmPrecision prec = GemmPrecision::FP32) {
  if (!relu || B == 0) {
    cuda::dense_backward_fused(dW, db, dX, dY, X, W, nullptr, 1.0f, B, K, N, stream, prec);
    return;
  }
  const std::size_t n = std::size_t(B) * std::size_t(N);
  std::vector<float> hdY(n), hY(n);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  CUDA_CHECK(cudaMemcpy(hdY.data(), dY, n * sizeof(float), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(hY.data(), Y, n * sizeof(float), cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < n; ++i) hdY[i] = hY[i] > 0.0f ? hdY[i] : 0.0f;
  DeviceBuffer<float> dZ(n);
  dZ.upload(hdY.data(), n);
  cuda::dense_backward_fused(dW, db, dX, dZ.data(), X, W, nullptr, 1.0f, B, K, N, stream, prec);
  CUDA_CHECK(cudaStreamSynchronize(stream));  // dZ is freed on return
}

}  // namespace mnist::test
