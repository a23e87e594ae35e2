#include "kernels/pdl.cuh"

#include <map>
#include <mutex>
#include <vector>

#include "runtime/device_buffer.cuh"
#include "runtime/error.hpp"
#include "runtime/graph.cuh"

namespace mnist::cuda {
namespace {

constexpr int kProbeThreads = 256;
constexpr unsigned long long kProbeSpinNs = 20'000;  // the delay of the first two kernels

__device__ void probe_spin() {
#if defined(__CUDA_ARCH__)
  unsigned long long t0 = 0, t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(500);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < kProbeSpinNs);
#endif
}

// data[i] = 7i + 1 for i < n, after kProbeSpinNs: it triggers first, so the second kernel may
// start at once and must wait for these writes. (One block.)
__global__ void pdl_probe_first(unsigned* data, int n) {
  pdl_start();
  probe_spin();
  for (int i = int(threadIdx.x); i < n; i += kProbeThreads) data[i] = 7u * unsigned(i) + 1u;
}

// out[i] = data[i] once the first kernel has completed (its wait), after kProbeSpinNs: it triggers
// first, so the third kernel starts while it spins. (One block.)
__global__ void pdl_probe_second(unsigned* out, const unsigned* data, int n) {
  pdl_start();
  probe_spin();
  for (int i = int(threadIdx.x); i < n; i += kProbeThreads) out[i] = data[i];
}

// out[i] = data[i] read BEFORE its wait: the first kernel, two launches back, must have completed
// with its writes visible (what the tail kernel, the gather and Adam rely on). (One block.)
__global__ void pdl_probe_third(unsigned* out, const unsigned* data, int n) {
  for (int i = int(threadIdx.x); i < n; i += kProbeThreads) out[i] = data[i];
  pdl_start();
}

// The probe of programmatic_launch_works.
bool probe(cudaStream_t stream, int device, bool max_shared) {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (major < 9) return false;
  constexpr int n = 4096;
  try {
    DeviceBuffer<unsigned> data(n), out(n), out3(n);
    const auto three = [&] {
      ProgrammaticLaunches on(true, max_shared);
      launch_kernel(pdl_probe_first, dim3(1), dim3(kProbeThreads), 0, stream, data.data(), n);
      launch_kernel(pdl_probe_second, dim3(1), dim3(kProbeThreads), 0, stream, out.data(), data.data(), n);
      launch_kernel(pdl_probe_third, dim3(1), dim3(kProbeThreads), 0, stream, out3.data(), data.data(), n);
    };
    const auto right = [&] {
      CUDA_CHECK(cudaStreamSynchronize(stream));
      std::vector<unsigned> h(n), h3(n);
      out.download(h.data(), n);
      out3.download(h3.data(), n);
      for (int i = 0; i < n; ++i)
        if (h[i] != 7u * unsigned(i) + 1u || h3[i] != 7u * unsigned(i) + 1u) return false;
      return true;
    };
    const auto clear = [&] {
      for (DeviceBuffer<unsigned>* b : {&data, &out, &out3})
        CUDA_CHECK(cudaMemsetAsync(b->data(), 0, n * sizeof(unsigned), stream));
    };
    // As the engine runs a step: in a captured graph, and (a short last batch) uncaptured.
    clear();
    const GraphExec graph = capture_graph(stream, three);
    graph.launch(stream);
    if (!right()) return false;
    clear();
    three();
    return right();
  } catch (const CudaError&) {
    cudaGetLastError();
    return false;
  }
}

}  // namespace

// Probed once per device and process (every engine asks; the answer cannot change).
bool programmatic_launch_works(cudaStream_t stream, bool max_shared) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  static std::mutex m;
  static std::map<std::pair<int, bool>, bool> known;
  const std::lock_guard<std::mutex> lock(m);
  const auto it = known.find({device, max_shared});
  if (it != known.end()) return it->second;
  return known[{device, max_shared}] = probe(stream, device, max_shared);
}

}  // namespace mnist::cuda
