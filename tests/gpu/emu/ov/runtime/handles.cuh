#pragma once
#include "runtime/cuda_check.cuh"
typedef struct cublasContext* cublasHandle_t;
typedef struct cublasLtContext* cublasLtHandle_t;
typedef int cublasStatus_t;
#define CUBLAS_CHECK(expr) do { (void)(expr); } while (0)
inline int cublasSetWorkspace(cublasHandle_t, void*, size_t) { throw std::runtime_error("no cublas in emulation"); }
namespace mnist {
struct CublasHandle { cublasHandle_t get() const { return nullptr; } };
struct CublasLtHandle { cublasLtHandle_t get() const { return nullptr; } };
}
