// The emulated CUDA runtime's globals (ov/cuda_runtime.h declares them), linked into every
// emulation binary: the thread and block indices, the launch counters, the device the emulated
// engine sees, and the CUDA-error hook of runtime/error.hpp.
#include <cuda_runtime.h>

#include <stdexcept>

#include "runtime/device.hpp"
#include "runtime/error.hpp"

thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
long long g_emu_launches = 0;
long long g_emu_stream_syncs = 0;

namespace mnist {

int g_emu_captures = 0, g_emu_replays = 0;

DeviceInfo query_device() {
  DeviceInfo i;
  i.available = true;
  i.count = 1;
  i.name = "emu";
  return i;
}

namespace detail {
void throw_cuda(cudaError_t, const char* expr, const char* file, int line) {
  throw std::runtime_error(cat("cuda ", expr, file, line));
}
}  // namespace detail

}  // namespace mnist
