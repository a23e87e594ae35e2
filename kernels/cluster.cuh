// Thread block clusters (sm_90): the blocks of one cluster run at the same time on SMs of one GPC
// and may read each other's shared memory (distributed shared memory, DSMEM). The host emulation
// (tests/gpu/emu/ov/kernels/cluster.cuh) replaces these with a model: a cluster's blocks run
// concurrently, cluster_sync is a barrier over all their threads, and cluster_peer maps an address
// of this block's dynamic shared memory to the same offset in the peer's.
//
// PTX ISA: %cluster_ctarank is the block's rank in its cluster (0 .. cluster size - 1, x fastest);
// barrier.cluster.arrive.release + wait.acquire make every thread of the cluster wait until all have
// arrived, with this thread's earlier shared-memory writes visible to the peers after their wait;
// mapa on a generic address of this block's shared memory gives the generic address of the same
// variable in the block of the given rank, which ordinary ld and st reach (over the SM-to-SM network).
// Every thread of every block of the cluster must call cluster_sync (the .aligned form: all threads
// of a warp together), the same number of times; a block must not exit while a peer may still read
// its shared memory (a last cluster_sync before the end).
// Compiled below sm_90 (a -DCMAKE_CUDA_ARCHITECTURES override) they trap: the launchers offer the
// clustered kernels only where the device launches clusters (dense.cu, cluster_launch_available).
#pragma once

#include <cstdint>

namespace mnist::cuda {

__device__ __forceinline__ unsigned cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
#else
  return 0u;
#endif
}

__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

// The address of *p (in this block's shared memory) in the block of cluster rank `rank` (T const:
// to read the peer's; T not const: also to write it, st over the same network).
template <class T>
__device__ __forceinline__ T* cluster_peer(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint64_t q;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(q) : "l"(reinterpret_cast<uint64_t>(p)), "r"(rank));
  return reinterpret_cast<T*>(q);
#else
  (void)rank;
#if defined(__CUDA_ARCH__)
  __trap();
#endif
  return p;
#endif
}

}  // namespace mnist::cuda
