// Host emulation of kernels/clock.cuh: each read returns one more than the read before (one
// counter for both clocks, shared by every CUDA thread), so stamps taken in a kernel's program
// order ascend, as the GPU's do, and tests can check their order but not durations.
#pragma once

#include <atomic>
#include <cstdint>

namespace mnist::cuda {

inline uint64_t emu_clock_tick() {
  static std::atomic<uint64_t> ticks{0};
  return ++ticks;
}
inline uint64_t sm_clock() { return emu_clock_tick(); }
inline uint64_t global_ns() { return emu_clock_tick(); }

}  // namespace mnist::cuda
