// Placeholder linked until the CUDA engine lands in layers/cuda_engine.cu.
#include "layers/engine.hpp"
#include "runtime/error.hpp"

namespace mnist {
std::unique_ptr<Engine> make_cuda_engine(const EngineConfig&) {
  throw CudaError("this build has no CUDA engine");
}
}  // namespace mnist
