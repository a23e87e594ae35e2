// Which CUDA device, if any, this process can use. Never throws: a machine without a GPU or
// driver is a normal case (the CPU path is chosen), reported through `reason`.
#pragma once

#include <cstddef>
#include <string>

namespace mnist {

struct DeviceInfo {
  bool available = false;   // true when device 0 can be used
  int count = 0;            // number of CUDA devices seen
  std::string name;         // e.g. "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0; // compute capability
  int sm_count = 0;
  std::size_t total_memory = 0;  // bytes
  std::string reason;       // why no device is usable ("no CUDA device", driver error, ...)
};

DeviceInfo query_device();

// Creates device 0's primary CUDA context now (the runtime's start-up: hundreds of milliseconds
// on a large GPU), so that a second thread can pay for it while the first loads data. Never
// throws; a failure is left for query_device() to report.
void warm_up_device();

// One line for logs: "NVIDIA H100 (sm_90, 132 SMs, 79.1 GiB)" or "no CUDA device: <reason>".
std::string describe(const DeviceInfo& info);

}  // namespace mnist
