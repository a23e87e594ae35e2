// Hopper's asynchronous warpgroup MMA (wgmma, sm_90a), each instruction wrapped in one small device
// function so that the host emulation (tests/gpu/emu/ov/kernels/wgmma.cuh) can replace them with a
// model that decodes the descriptors and applies the PTX fragment table. Used by WgmmaTile
// (kernels/dense.cu).
//
// PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate": a warpgroup is 4 consecutive
// warps (128 threads, the first warp's index a multiple of 4); all 128 threads execute every
// instruction below together (.sync.aligned).
//   wgmma_tf32_m64n64k8   D[64x64] (+)= A[64x8] · B[8x64]ᵀ-stored, .f32.tf32.tf32
//   wgmma_bf16_m64n64k16  D[64x64] (+)= A[64x16] · B[16x64],         .f32.bf16.bf16
// A and B are both read from shared memory through descriptors (kernels/wgmma_desc.hpp), both
// K-major (A [m][k], B [n][k]: k fastest; TF32 allows nothing else), no swizzle. TF32 operands are
// 32-bit words of which the tensor core reads the 19 high bits (the kernel rounds them first).
// accumulate = false: D = A·B (scale-d 0, the old D ignored); true: D = A·B + D.
// D fragment (m64nNk*, float32, N/2 registers a thread): thread 32w + 4g + t (warp w of the
// warpgroup, g = lane/4, t = lane%4) holds, for every 8-column block j,
//   d[4j+0] = D[16w+g][8j+2t]     d[4j+1] = D[16w+g][8j+2t+1]
//   d[4j+2] = D[16w+g+8][8j+2t]   d[4j+3] = D[16w+g+8][8j+2t+1]
// (mma.m16n8's D per 8 columns, warp w owning rows 16w..16w+15).
//
// The instructions are asynchronous: wgmma_fence() orders the warpgroup's earlier register and
// shared-memory accesses before the wgmmas that follow (needed before the first wgmma and whenever
// the accumulators were touched by other instructions); wgmma_commit() closes the wgmmas issued
// since the last commit into a group; wgmma_wait<N>() returns once at most N of the warpgroup's
// groups are pending: only then may their accumulators be read and their shared operands be
// overwritten. Shared memory written by ordinary stores (or cp.async) must be made visible to the
// tensor cores' asynchronous proxy by fence_proxy_async() in the writing thread, before the
// barrier that publishes it.
//
// MNIST_WGMMA is 1 only in the sm_90a device compilation (__CUDA_ARCH_FEAT_SM90_ALL); elsewhere the
// wrappers trap, and dense.cu's probe (wgmma_available) keeps the launchers off them.
#pragma once

#include <cstdint>

#include "kernels/wgmma_desc.hpp"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MNIST_WGMMA 1
#else
#define MNIST_WGMMA 0
#endif

namespace mnist::cuda {

// The descriptor of a no-swizzle K-major operand tile starting at p (shared memory, 16-byte aligned).
__device__ __forceinline__ uint64_t wgmma_desc(const void* p, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return wgmma_desc_bits(static_cast<uint32_t>(__cvta_generic_to_shared(p)), lbo_bytes, sbo_bytes);
}

__device__ __forceinline__ void wgmma_fence() {
#if MNIST_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if MNIST_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

template <int N>
__device__ __forceinline__ void wgmma_wait() {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
#if MNIST_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// Makes this thread's generic-proxy writes to shared memory (stores, landed cp.async copies)
// visible to the asynchronous proxy that wgmma reads its operands through.
__device__ __forceinline__ void fence_proxy_async() {
#if MNIST_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  __trap();
#endif
}

// Pins the accumulators in place for the compiler: the wgmma asm statements name them as outputs, so
// without this it could move a read of d (or a write) across a wgmma_wait, which names no register.
// Call it right after every wgmma_wait whose group wrote d, before d is read (CUTLASS does the same:
// warpgroup_fence_operand). No instruction is emitted.
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[32]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

#define MNIST_WGMMA_D32                                                                                             \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29," \
  "%30,%31}"
#define MNIST_WGMMA_D32_OPERANDS                                                                                    \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),       \
      "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),       \
      "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),      \
      "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

__device__ __forceinline__ void wgmma_tf32_m64n64k8(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
#if MNIST_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 " MNIST_WGMMA_D32 ", %32, %33, p, 1, 1;\n}\n"
      : MNIST_WGMMA_D32_OPERANDS
      : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));
#else
  __trap();
#endif
}

// imm-trans-a = imm-trans-b = 0: both operands K-major.
__device__ __forceinline__ void wgmma_bf16_m64n64k16(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
#if MNIST_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " MNIST_WGMMA_D32 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
      : MNIST_WGMMA_D32_OPERANDS
      : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));
#else
  __trap();
#endif
}

#undef MNIST_WGMMA_D32
#undef MNIST_WGMMA_D32_OPERANDS

}  // namespace mnist::cuda
