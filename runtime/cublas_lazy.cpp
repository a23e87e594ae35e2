// cuBLAS and cuBLASLt, loaded on first use. The project calls cuBLAS through its usual names
// (runtime/handles.cuh, kernels/cublas_ref.cu, tests, benchmarks), but no target links libcublas:
// the functions below are those names, and each forwards to the symbol of the same name in
// libcublas.so / libcublasLt.so, opened with dlopen the first time any of them is called.
//
// Why: cuBLAS is the engine's comparison path (--gemm cublas) and the tests' GPU reference, never
// the default step, yet linking it made every process load libcublasLt (540 MB) and run its static
// constructors: 0.6 s of CPU time and 26,000 page faults before main(), in `mnist_cuda --help`, in
// every run on the CPU, in every test process. Loading it on demand costs that only where cuBLAS is
// used.
//
// Where the libraries are looked for: runtime/lazy_library.hpp (by soname, then beside libcudart, then
// the toolkit directory found at build time). If none has them, the call that needed cuBLAS throws
// mnist::CudaError naming each place tried and why it failed; nothing else of the program is affected.
//
// Adding a cuBLAS function: declare its forwarder here, with the header's exact signature (the
// compiler checks it against the header's declaration).
#include <cublasLt.h>
#include <cublas_v2.h>

#include <string>

#include "runtime/lazy_library.hpp"

#ifndef MNIST_CUDA_LIBRARY_DIR
#define MNIST_CUDA_LIBRARY_DIR ""
#endif

namespace mnist::detail {
namespace {

LazyLibrary& blas() {
  static LazyLibrary lib("libcublas.so." + std::to_string(CUBLAS_VER_MAJOR), MNIST_CUDA_LIBRARY_DIR);
  return lib;
}
LazyLibrary& lt() {
  static LazyLibrary lib("libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR), MNIST_CUDA_LIBRARY_DIR);
  return lib;
}

}  // namespace
}  // namespace mnist::detail

using mnist::detail::blas;
using mnist::detail::lt;
using mnist::lazy_symbol;

// Forwarders: the header's declaration, then the call through the loaded symbol.
#define MNIST_CUBLAS_FORWARD(lib, ret, name, params, args) \
  ret CUBLASWINAPI name params { return lazy_symbol<&name>(lib, #name) args; }

extern "C" {

// cuBLAS
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasCreate_v2, (cublasHandle_t * handle), (handle))
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasDestroy_v2, (cublasHandle_t handle), (handle))
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t stream),
                     (handle, stream))
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasSetWorkspace_v2,
                     (cublasHandle_t handle, void* workspace, size_t bytes), (handle, workspace, bytes))
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasSetMathMode, (cublasHandle_t handle, cublasMath_t mode),
                     (handle, mode))
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasSgemm_v2,
                     (cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                      float* C, int ldc),
                     (handle, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
MNIST_CUBLAS_FORWARD(blas, cublasStatus_t, cublasSgemv_v2,
                     (cublasHandle_t handle, cublasOperation_t trans, int m, int n, const float* alpha,
                      const float* A, int lda, const float* x, int incx, const float* beta, float* y, int incy),
                     (handle, trans, m, n, alpha, A, lda, x, incx, beta, y, incy))

MNIST_CUBLAS_FORWARD(blas, const char*, cublasGetStatusString, (cublasStatus_t status), (status))

// cuBLASLt
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtCreate, (cublasLtHandle_t * handle), (handle))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtDestroy, (cublasLtHandle_t handle), (handle))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulDescCreate,
                     (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale),
                     (desc, compute, scale))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), (desc))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulDescSetAttribute,
                     (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void* buf, size_t size),
                     (desc, attr, buf, size))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatrixLayoutCreate,
                     (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld),
                     (layout, type, rows, cols, ld))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), (layout))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * pref), (pref))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t pref), (pref))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulPreferenceSetAttribute,
                     (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                      size_t size),
                     (pref, attr, buf, size))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmulAlgoGetHeuristic,
                     (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A,
                      cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                      cublasLtMatmulPreference_t pref, int requested, cublasLtMatmulHeuristicResult_t results[],
                      int* returned),
                     (handle, desc, A, B, C, D, pref, requested, results, returned))
MNIST_CUBLAS_FORWARD(lt, cublasStatus_t, cublasLtMatmul,
                     (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                      cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                      const void* C, cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                      const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspaceSize, cudaStream_t stream),
                     (handle, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo, workspace,
                      workspaceSize, stream))

}  // extern "C"
