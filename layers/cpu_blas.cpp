// OpenBLAS loaded on first use: the CPU path calls cblas_sgemm / cblas_dgemm by their usual names
// (layers/cpu_ops.cpp), but no target links libopenblas: the functions below are those names, and
// each forwards to the symbol of the same name in libopenblas.so.0, opened by the first call
// (runtime/lazy_library.hpp). A process that never runs a CPU GEMM (a GPU run, --help) neither maps
// it nor runs its constructor, which starts one thread per core (16 on the lent GPU machines).
// Where it is looked for: by soname, then in the directory the build found it in. If neither has
// it, the GEMM throws mnist::Error naming both.
#include "layers/cpu_blas.hpp"

#include "runtime/lazy_library.hpp"

#if MNIST_HAVE_OPENBLAS
#include <cblas.h>
#endif

#ifndef MNIST_OPENBLAS_DIR
#define MNIST_OPENBLAS_DIR ""
#endif

namespace mnist::cpu {

#if MNIST_HAVE_OPENBLAS
namespace {

LazyLibrary& openblas() {
  static LazyLibrary lib("libopenblas.so.0", MNIST_OPENBLAS_DIR, LazyLibrary::Kind::Host);
  return lib;
}

}  // namespace

bool blas_built() { return true; }
bool blas_loaded() { return openblas().loaded(); }
std::string blas_corename() { return openblas_get_corename(); }
#else
bool blas_built() { return false; }
bool blas_loaded() { return false; }
std::string blas_corename() { return ""; }
#endif

}  // namespace mnist::cpu

#if MNIST_HAVE_OPENBLAS
using mnist::lazy_symbol;
using mnist::cpu::openblas;

// Forwarders: the header's declarations (the compiler checks them), then the call through the
// loaded symbol.
extern "C" {

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const blasint M, const blasint N, const blasint K, const float alpha, const float* A,
                 const blasint lda, const float* B, const blasint ldb, const float beta, float* C, const blasint ldc) {
  lazy_symbol<&cblas_sgemm>(openblas, "cblas_sgemm")(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cblas_dgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const blasint M, const blasint N, const blasint K, const double alpha, const double* A,
                 const blasint lda, const double* B, const blasint ldb, const double beta, double* C,
                 const blasint ldc) {
  lazy_symbol<&cblas_dgemm>(openblas, "cblas_dgemm")(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

char* openblas_get_corename(void) { return lazy_symbol<&openblas_get_corename>(openblas, "openblas_get_corename")(); }

void openblas_set_num_threads(int num_threads) {
  lazy_symbol<&openblas_set_num_threads>(openblas, "openblas_set_num_threads")(num_threads);
}

}  // extern "C"
#endif
