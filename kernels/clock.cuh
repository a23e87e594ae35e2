// Clocks read inside a kernel, for timing a kernel's phases from the inside (the tail kernel's
// clocked launches, bench_kernels' "tail_clock" rows). The host emulation has its own version
// (tests/gpu/emu/ov/kernels/clock.cuh: counters that only ascend).
#pragma once

#include <cstdint>

namespace mnist::cuda {

// The SM's cycle counter (clock64): differences between two reads of one block are cycles of that
// SM; counters of different SMs are not aligned.
__device__ __forceinline__ uint64_t sm_clock() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(t)::"memory");
  return t;
}

// The GPU's global timer (nanoseconds, one counter for all SMs): where the blocks of a launch
// start and end relative to one another.
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)::"memory");
  return t;
}

}  // namespace mnist::cuda
