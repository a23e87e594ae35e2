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

// The symbol `name`, as F's type; resolved once per function (a failure is retried).
template <auto F>
auto resolve(const char* name) {
  static const auto fn = reinterpret_cast<decltype(F)>(openblas().symbol(name));
  return fn;
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
using mnist::cpu::resolve;

// Forwarders: the header's declarations (the compiler checks them), then the call through the
// loaded symbol.
extern "C" {

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const blasint M, const blasint N, const blasint K, const float alpha, const float* A,
                 const blasint lda, const float* B, const blasint ldb, const float beta, float* C, const blasint ldc) {
  resolve<&cblas_sgemm>("cblas_sgemm")(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cblas_dgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const blasint M, const blasint N, const blasint K, const double alpha, const double* A,
                 const blasint lda, const double* B, const blasint ldb, const double beta, double* C,
                 const blasint ldc) {
  resolve<&cblas_dgemm>("cblas_dgemm")(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

char* openblas_get_corename(void) { return resolve<&openblas_get_corename>("openblas_get_corename")(); }

}  // extern "C"
#endif
