// The asynchronous global -> shared copies of the pipelined tensor-core GEMM tile (kernels/dense.cu)
// and of the row-block kernels' staging (kernels/row_block.cuh),
// each wrapped in one small device function so that the host emulation
// (tests/gpu/emu/ov/kernels/cp_async.cuh) can replace them with a model of their completion rules.
// sm_80+ (the H100/H200 are sm_90).
//
// PTX ISA, "cp.async": cp_async16 starts a 16-byte copy (both addresses 16-byte aligned; .cg: cached
// in L2 only) that completes asynchronously. cp_async_commit closes the thread's copies issued since
// the last commit into one group; cp_async_wait<N>() blocks until at most N of the thread's committed
// groups are still in flight (the N most recent). A copy is visible to the issuing thread after its
// wait, to the block's other threads only after a __syncthreads that follows the wait.
// cp_async4 starts a 4-byte copy (both addresses 4-byte aligned; .ca: the only cache mode a copy
// under 16 bytes may name) with the same group and wait rules: 4 pixels of a uint8 image row
// (PipeTile's X read in place from the images, kernels/dense.cu), or one float (the row-block
// kernels' staging where rows are not whole float4, kernels/row_block.cuh).
#pragma once

#include <cstdint>

namespace mnist::cuda {

__device__ __forceinline__ void cp_async16(float* smem_dst, const float* gmem_src) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src) : "memory");
}

__device__ __forceinline__ void cp_async4(float* smem_dst, const void* gmem_src) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(gmem_src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace mnist::cuda
