// Block-to-block dependencies inside one cooperative launch (every block co-resident), finer than a
// grid barrier: the blocks that produce a piece of work count it on a counter in global memory, and
// a block that needs it waits for the count instead of for the whole grid. The same instructions as
// cooperative_groups' grid sync (a fence before the arrival, a volatile spin, a fence after it, the
// block's barrier), applied to one counter.
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

// Called by every thread of the producing block after its writes: each thread's writes are made
// visible at GPU scope, then, once all have, one thread adds 1 to *counter.
__device__ __forceinline__ void dep_signal(unsigned* counter) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(counter, 1u);
}

// Called by every thread of the consuming block: one thread waits until *counter >= target, then
// fences (its block's later reads see every write the producers fenced before counting); the
// barrier holds the other threads until then. In the host emulation __nanosleep lets the other
// CUDA threads run (tests/gpu/emu/ov/cuda_runtime.h). Not inlined: the fused kernel sits at the
// 255-register cap at TF32/BF16, and the spin loop inlined at its three call sites made ptxas spill
// 28/88 bytes there (4 bytes called); a call a phase costs nothing next to the wait.
inline __device__ MNIST_DEVICE_NOINLINE void dep_wait(const unsigned* counter, unsigned target) {
  if (threadIdx.x == 0) {
    const volatile unsigned* c = counter;
#if defined(__CUDA_ARCH__)
    uint64_t t0 = 0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
#endif
    while (*c < target) {
      __nanosleep(64);
#if defined(__CUDA_ARCH__)
      uint64_t t = 0;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      if (t - t0 > kDepWaitLimitNs) __trap();
#endif
    }
    __threadfence();
  }
  __syncthreads();
}

}  // namespace mnist::cuda
