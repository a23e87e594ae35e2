#include "runtime/cuda_check.cuh"

namespace mnist::detail {

void throw_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  throw CudaError(cat("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ",
                      expr, " at ", file, ":", line));
}

void throw_lib(const char* lib, int status, const char* what, const char* expr, const char* file,
               int line) {
  throw CudaError(cat(lib, " error ", status, " (", what, ") in ", expr, " at ", file, ":", line));
}

}  // namespace mnist::detail
