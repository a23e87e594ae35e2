// Host emulation of kernels/pdl.cuh: pdl_wait / pdl_trigger and launch_kernel, with the launch
// order of a programmatic launch modelled as early as the contract allows (emu::launch_programmatic,
// ov/cooperative_groups.h; README.md "Programmatic launches").
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <tuple>
#include <utility>

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "kernels/pdl_scope.hpp"

namespace mnist::cuda {

inline void pdl_wait() { emu::grid_dependency_wait(); }
inline void pdl_trigger() { emu::grid_dependency_trigger(); }
inline void pdl_start() {
  pdl_wait();
  __syncthreads();
  pdl_trigger();
}

template <class T>
T as_param(T v) {
  return v;
}

// The arguments are converted and copied at the call (the device's launch copies them then too):
// the launch may run after the caller's locals are gone.
template <class... P, class... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t, A&&... args) {
  if (block.y != 1 || block.z != 1) throw std::runtime_error("emu: launch_kernel takes 1D blocks");
  std::function<void()> body = [kernel, t = std::tuple<P...>(as_param<P>(std::forward<A>(args))...)] {
    std::apply(kernel, t);
  };
  if (ProgrammaticLaunches::active())
    emu::launch_programmatic(grid, block.x, smem, emu::kernel_key(kernel), std::move(body));
  else
    emu::launch_dynamic(grid, block.x, smem, emu::kernel_key(kernel), body);
}

// launch_kernel in clusters (emu::launch_cluster: an ordinary launch's order, see there).
template <class... P, class... A>
void launch_kernel_in_clusters(void (*kernel)(P...), dim3 grid, dim3 block, unsigned cluster_y, std::size_t smem,
                               cudaStream_t, A&&... args) {
  if (block.y != 1 || block.z != 1) throw std::runtime_error("emu: launch_kernel_in_clusters takes 1D blocks");
  std::function<void()> body = [kernel, t = std::tuple<P...>(as_param<P>(std::forward<A>(args))...)] {
    std::apply(kernel, t);
  };
  emu::launch_cluster(grid, cluster_y, block.x, smem, emu::kernel_key(kernel), body);
}

// The emulated device launches clusters unless a test says otherwise (g_emu_clusters).
inline bool device_launches_clusters() { return emu::g_emu_clusters; }

// The kernel may launch in clusters of up to 16 blocks from now on (emu::launch_cluster refuses more
// than 8 to a kernel not given this, as the device does).
template <class... P>
bool allow_nonportable_clusters(void (*kernel)(P...)) {
  emu::g_emu_nonportable.insert(emu::kernel_key(kernel));
  return true;
}

// Clusters of up to 8 blocks (16 for a kernel given allow_nonportable_clusters) fit wherever the
// emulated device launches clusters (g_emu_clusters): as many as its g_emu_sm_count SMs hold, one
// block an SM, at least one.
template <class... P>
int cluster_capacity(void (*kernel)(P...), unsigned threads, unsigned cluster_y, std::size_t smem) {
  const unsigned most = emu::g_emu_nonportable.count(emu::kernel_key(kernel)) ? 16u : 8u;
  const bool fits = emu::g_emu_clusters && cluster_y >= 1 && cluster_y <= most && threads <= 1024 && smem <= 227 * 1024;
  return fits ? std::max(1, g_emu_sm_count / int(cluster_y)) : 0;
}

// The emulation models the order the contract promises.
inline bool programmatic_launch_works(cudaStream_t, bool = false) { return true; }

}  // namespace mnist::cuda
