#include "runtime/device.hpp"

#include <cuda_runtime.h>

#include <cstdio>

namespace mnist {

DeviceInfo query_device() {
  DeviceInfo info;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    info.reason = std::string(cudaGetErrorString(e));
    cudaGetLastError();  // reset the (non-sticky) last error so that later calls start clean
    return info;
  }
  info.count = count;
  if (count == 0) {
    info.reason = "no CUDA device";
    return info;
  }
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, 0);
  if (e != cudaSuccess) {
    info.reason = std::string(cudaGetErrorString(e));
    cudaGetLastError();
    return info;
  }
  info.available = true;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.total_memory = prop.totalGlobalMem;
  return info;
}

void warm_up_device() {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) cudaFree(nullptr);
  cudaGetLastError();
}

std::string describe(const DeviceInfo& info) {
  if (!info.available) return "no CUDA device: " + info.reason;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB)", info.name.c_str(), info.major,
                info.minor, info.sm_count, info.total_memory / double(1ull << 30));
  return buf;
}

}  // namespace mnist
