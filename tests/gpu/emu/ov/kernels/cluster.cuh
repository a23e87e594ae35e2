// Host emulation of kernels/cluster.cuh: a block's rank in its cluster, the cluster barrier and the
// map of a shared-memory address to the same offset of a peer's dynamic shared memory, over the
// clusters of emu::launch_cluster (ov/cooperative_groups.h). Outside a cluster launch each stops
// the run, as does a rank past the cluster or an address outside the block's dynamic shared memory.
#pragma once

#include <cstddef>
#include <stdexcept>

#include <cooperative_groups.h>
#include <cuda_runtime.h>

namespace mnist::cuda {

inline emu::Cluster& emu_cluster_of_block() {
  emu::Block& b = emu::current_block();
  if (!b.cluster) throw std::runtime_error("emu: a cluster function in a block not launched in clusters");
  return *b.cluster;
}

inline unsigned cluster_rank() {
  emu_cluster_of_block();
  return emu::current_block().cluster_rank;
}

inline void cluster_sync() { emu::wait(emu_cluster_of_block().sync); }

template <class T>
T* cluster_peer(T* p, unsigned rank) {
  emu::Cluster& c = emu_cluster_of_block();
  const emu::Block& own = emu::current_block();
  if (rank >= c.blocks.size()) throw std::runtime_error("emu: cluster_peer's rank is past the cluster");
  const char* base = static_cast<const char*>(own.smem);
  const char* q = reinterpret_cast<const char*>(p);
  if (q < base || q + sizeof(T) > base + own.smem_bytes)
    throw std::runtime_error("emu: cluster_peer of an address outside the block's dynamic shared memory");
  return reinterpret_cast<T*>(static_cast<char*>(c.blocks[rank]->smem) + (q - base));
}

}  // namespace mnist::cuda
