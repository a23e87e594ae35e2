// Programmatic dependent launch (PDL, sm_90+): a kernel launched with programmatic stream
// serialization may start while the kernel before it in the stream is still running, as soon as
// every block of that one has executed griddepcontrol.launch_dependents (or ended). The step's
// kernels are each a few microseconds of dependent latency; without PDL every boundary costs the
// launch, the block scheduling and the new kernel's prologue (weight staging, index and label
// loads) after the previous kernel's last block ended. With it, those overlap the previous kernel.
//
// The contract every kernel launched through launch_kernel keeps (the host emulation checks it,
// tests/gpu/emu/README.md "Programmatic launches"):
//   1. Every thread calls pdl_wait() before it reads anything the previous launch writes and
//      before it writes anything that launch reads or writes; pdl_wait() returns once the previous
//      grid has completed and its memory is visible. Before it, a kernel may only read what
//      launches before the previous one wrote (they completed before the previous launch
//      triggered, rule 2), and write nothing the previous launch touches.
//   2. pdl_trigger() (launch_dependents) only after pdl_wait(): so when the next launch starts,
//      every launch before this one has completed, and rule 1's "before the previous one" holds
//      by induction. Every thread calls pdl_wait(), also a thread that has no work. A block counts
//      as triggered at its FIRST thread's launch_dependents, so the kernels call pdl_start(): wait,
//      a barrier, trigger: the next launch's early part never overlaps this block's own.
// Without the launch attribute (outside a ProgrammaticLaunches scope, or a device below sm_90)
// both are no-ops in effect: the previous kernel has completed when this one starts.
#pragma once

#include <cstddef>
#include <utility>

#include <cuda_runtime.h>

#include "kernels/pdl_scope.hpp"
#include "runtime/cuda_check.cuh"

namespace mnist::cuda {

// griddepcontrol.wait: until the previous grid in the stream (a programmatic dependency) has
// completed and its writes are visible. Returns at once without one.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// griddepcontrol.launch_dependents: this thread's block lets the next launch start (once every
// block has said so or ended). Only after pdl_wait() (rule 2 above).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// (an implicit conversion, as a <<<>>> launch makes: no cast that a call would refuse)
template <class T>
T as_param(T v) {
  return v;
}

// Wait, then let the next launch start (its blocks take the SMs this grid leaves free, and its part
// before its own wait overlaps this kernel). Every thread of the block calls it at the same point
// (a barrier between the two: the block triggers only once all its threads have waited).
__device__ __forceinline__ void pdl_start() {
  pdl_wait();
  __syncthreads();
  pdl_trigger();
}

// The attributes every launch of the step carries (at most 2, into attr; returns how many):
// programmatic stream serialization when a ProgrammaticLaunches scope is on, and the scope's
// carveout (kernels/pdl_scope.hpp: one carveout for the step).
inline unsigned step_launch_attributes(cudaLaunchAttribute* attr) {
  unsigned n = 0;
  if (ProgrammaticLaunches::active()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (ProgrammaticLaunches::max_shared()) {
    attr[n].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
    attr[n++].val.sharedMemCarveout = 100;  // percent of the SM's shared memory: all of it
  }
  return n;
}

// The launch attribute that puts a grid's blocks in clusters of cluster_y consecutive blocks along y.
inline cudaLaunchAttribute cluster_dimension(unsigned cluster_y) {
  cudaLaunchAttribute a = {};
  a.id = cudaLaunchAttributeClusterDimension;
  a.val.clusterDim.x = 1;
  a.val.clusterDim.y = cluster_y;
  a.val.clusterDim.z = 1;
  return a;
}

// Whether this device launches thread block clusters (compute capability 9.0 and later). False on
// any error, which is cleared.
inline bool device_launches_clusters() {
  int dev = 0, launch = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&launch, cudaDevAttrClusterLaunch, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return launch != 0;
}

// kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream serialization when a
// ProgrammaticLaunches scope is on, its blocks in clusters of cluster_y consecutive blocks along y
// where cluster_y > 0 (sm_90: kernels/cluster.cuh; grid.y a multiple of it, at most 8, the portable
// size, or up to 16 for a kernel given allow_nonportable_clusters; the caller checks that the device
// holds such clusters: cluster_capacity). The arguments are
// converted to the kernel's parameter types at the call, as a <<<>>> launch does. Throws CudaError
// if the launch is refused.
template <class... P, class... A>
void launch_kernel_in_clusters(void (*kernel)(P...), dim3 grid, dim3 block, unsigned cluster_y, std::size_t smem,
                               cudaStream_t stream, A&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[3] = {};
  unsigned n = step_launch_attributes(attr);
  if (cluster_y > 0) attr[n++] = cluster_dimension(cluster_y);
  config.attrs = n ? attr : nullptr;
  config.numAttrs = n;
  CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, as_param<P>(std::forward<A>(args))...));
}

// The launch without clusters.
template <class... P, class... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, A&&... args) {
  launch_kernel_in_clusters(kernel, grid, block, 0u, smem, stream, std::forward<A>(args)...);
}

// Lets `kernel` launch in clusters of more than 8 blocks, the portable size (Hopper: up to 16,
// cudaFuncAttributeNonPortableClusterSizeAllowed); cluster_capacity then answers for those sizes.
// True once set; false, with the error cleared, where the device or driver refuses it.
template <class... P>
bool allow_nonportable_clusters(void (*kernel)(P...)) {
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return true;
}

// How many clusters of cluster_y blocks of `kernel` (block threads, smem bytes of dynamic shared
// memory, already allowed by cudaFuncSetAttribute) this device holds at once
// (cudaOccupancyMaxActiveClusters): 0 where it launches no clusters (compute capability below 9.0)
// or none of that size fits, and on any error, which is cleared.
template <class... P>
int cluster_capacity(void (*kernel)(P...), unsigned threads, unsigned cluster_y, std::size_t smem) {
  if (!device_launches_clusters()) return 0;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(1, cluster_y);
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = smem;
  cudaLaunchAttribute attr = cluster_dimension(cluster_y);
  config.attrs = &attr;
  config.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return clusters;
}

// Whether this device runs programmatic launches inside a captured CUDA graph with the order the
// contract promises: sm_90+, then a probe on `stream` (three kernels captured as the engine captures
// its steps, launched programmatically, replayed, then launched uncaptured: the first slow before it
// writes, the second reads that after its wait, the third before its wait while the second still
// runs; a second that did not wait, or a first not complete and visible when the third starts,
// reads the output unwritten). Synchronises `stream` (the first call per device: the
// answer is kept for the process); any CUDA error on the way is cleared and answered false, so the
// caller falls back to ordinary launches. max_shared: the launches also ask for the largest
// shared-memory carveout (ProgrammaticLaunches' max_shared), probed apart: a driver that refused
// the carveout's attribute keeps the overlap without it.
bool programmatic_launch_works(cudaStream_t stream, bool max_shared = false);

}  // namespace mnist::cuda
