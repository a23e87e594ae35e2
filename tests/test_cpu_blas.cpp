// layers/cpu_blas.cpp: OpenBLAS is loaded by the first CPU GEMM, not at start-up. The GEMMs' results
// are checked by test_cpu_ops.cpp; here, that the forwarded calls reach the library, and when it is
// mapped.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "helpers.hpp"
#include "layers/cpu_blas.hpp"
#include "layers/cpu_ops.hpp"

// (First in this file: ctest runs each file's cases in a process of their own, in this order.)
TEST_CASE("OpenBLAS is loaded by the first CPU GEMM, not before") {
  REQUIRE(mnist::test::loaded_objects("libopenblas") == 0);
  CHECK(!mnist::cpu::blas_loaded());
  // C [3,5] = A [3,7] · B [5,7]ᵀ on values whose products and sums are exact in float.
  const int M = 3, N = 5, K = 7;
  std::vector<float> A(M * K), B(N * K), C(M * N, -1.0f);
  for (int i = 0; i < M * K; ++i) A[std::size_t(i)] = float(i % 5) - 2.0f;
  for (int i = 0; i < N * K; ++i) B[std::size_t(i)] = float(i % 3) + 0.5f;
  mnist::cpu::gemm_nt(C.data(), A.data(), B.data(), M, N, K, false);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float want = 0;
      for (int k = 0; k < K; ++k) want += A[std::size_t(i * K + k)] * B[std::size_t(j * K + k)];
      CHECK(C[std::size_t(i * N + j)] == want);
    }
  if (!mnist::cpu::blas_built()) {
    CHECK(!mnist::cpu::blas_loaded());
    MESSAGE("built without OpenBLAS: the CPU path's own GEMM loops");
    return;
  }
  CHECK(mnist::cpu::blas_loaded());
  CHECK(mnist::test::loaded_objects("libopenblas") == 1);
  const std::string core = mnist::cpu::blas_corename();
  CHECK(!core.empty());
  MESSAGE("OpenBLAS kernels: ", core);
}
