// Block-to-block dependencies inside one cooperative launch (every block co-resident), finer than a
// grid barrier: the blocks that produce a piece of work count it on a counter in global memory, and
// a block that needs it waits for the count instead of for the whole grid. The instructions are
// cooperative_groups' grid sync on sm_70+ (details/sync.h), applied to one counter: the block's
// barrier, then one thread's release add (red.release.gpu; the grid sync uses atom.add.release.gpu,
// which also returns the old count); the waiter's one thread polling with
// ld.acquire.gpu, then the block's barrier. Release and acquire are cumulative over the barriers, so
// every thread's writes before the producer's barrier are seen by every thread of the waiting
// block after its barrier.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

// (__noinline__ for nvcc; the host emulation, a plain C++ compile, inlines or not as it likes)
#if defined(__CUDACC__)
#define MNIST_DEVICE_NOINLINE __noinline__
#else
#define MNIST_DEVICE_NOINLINE
#endif

namespace mnist::cuda {

// A wait this long is a bug (a count that can never be reached), not a slow producer: the waiting
// thread traps, so the launch fails with an error instead of hanging the process.
constexpr uint64_t kDepWaitLimitNs = 10ull * 1000 * 1000 * 1000;

// Called by every thread of the producing block after its writes: once all have written, one
// thread adds 1 to *counter with release semantics.
__device__ __forceinline__ void dep_signal(unsigned* counter) {
  __syncthreads();
  if (threadIdx.x == 0) {
#if defined(__CUDA_ARCH__)
    asm volatile("red.release.gpu.add.u32 [%0],%1;" ::"l"(counter), "r"(1u) : "memory");
#else
    atomicAdd(counter, 1u);  // (the host emulation's memory is sequentially consistent)
#endif
  }
}

// Called by every thread of the consuming block: one thread polls *counter with acquire loads until
// it is at least target (pausing with __nanosleep; in the host emulation that lets the other CUDA
// threads run, tests/gpu/emu/ov/cuda_runtime.h); the barrier holds the other threads until then.
// Not inlined: the fused kernel sits at the 255-register cap at TF32/BF16, and the poll loop
// inlined at its three call sites made ptxas spill 28/88 bytes there (4 bytes called); a call a
// phase costs nothing next to the wait.
inline __device__ MNIST_DEVICE_NOINLINE void dep_wait(const unsigned* counter, unsigned target) {
  if (threadIdx.x == 0) {
#if defined(__CUDA_ARCH__)
    uint64_t t0 = 0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    for (;;) {
      unsigned v;
      asm volatile("ld.acquire.gpu.u32 %0,[%1];" : "=r"(v) : "l"(counter) : "memory");
      if (v >= target) break;
      __nanosleep(64);
      uint64_t t = 0;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      if (t - t0 > kDepWaitLimitNs) __trap();
    }
#else
    const volatile unsigned* c = counter;
    while (*c < target) __nanosleep(64);
#endif
  }
  __syncthreads();
}

}  // namespace mnist::cuda
