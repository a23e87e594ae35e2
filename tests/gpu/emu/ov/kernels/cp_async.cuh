// Host emulation of kernels/cp_async.cuh: the same functions, modelling when a copy lands. A
// cp_async16 records the copy in its thread's queue and poisons the 16 destination bytes (0xFF:
// NaN as float) at once; the copy is performed only when a cp_async_wait<N>() of the SAME thread
// lets its group complete (all but the N most recent committed groups; copies not yet committed
// stay in flight). So a kernel that reads a stage before its wait, before the __syncthreads after
// the other threads' waits, or that reuses a buffer whose copies are still in flight, reads NaN
// here (as it could read stale data on the GPU). Copies never waited for are dropped when the
// thread ends. g_emu_cp_async_copies counts the copies performed (tests check the path ran).
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include <cuda_runtime.h>

namespace mnist::cuda {
namespace emu_cp_async {

struct Copy {
  float* dst;
  const float* src;
};
struct Queue {
  std::vector<Copy> open;                  // issued since the last commit
  std::deque<std::vector<Copy>> groups;    // committed, oldest first
};
inline Queue& queue() { return ::emu::lane_local<Queue>(); }  // this thread's
inline std::atomic<long long> copies{0};

}  // namespace emu_cp_async

inline std::atomic<long long>& g_emu_cp_async_copies = emu_cp_async::copies;

inline void cp_async16(float* smem_dst, const float* gmem_src) {
  if (reinterpret_cast<std::uintptr_t>(smem_dst) % 16 || reinterpret_cast<std::uintptr_t>(gmem_src) % 16) {
    std::fprintf(stderr, "emu cp.async: misaligned 16-byte copy (dst %p, src %p)\n", static_cast<void*>(smem_dst),
                 static_cast<const void*>(gmem_src));
    std::abort();
  }
  std::memset(smem_dst, 0xFF, 16);
  emu_cp_async::queue().open.push_back({smem_dst, gmem_src});
}

inline void cp_async_commit() {
  auto& q = emu_cp_async::queue();
  q.groups.push_back(std::move(q.open));
  q.open.clear();
}

template <int N>
inline void cp_async_wait() {
  auto& q = emu_cp_async::queue();
  while (q.groups.size() > std::size_t(N)) {
    for (const auto& c : q.groups.front()) std::memcpy(c.dst, c.src, 16);
    emu_cp_async::copies += static_cast<long long>(q.groups.front().size());
    q.groups.pop_front();
  }
}

}  // namespace mnist::cuda
