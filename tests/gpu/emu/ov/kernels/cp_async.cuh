// Host emulation of kernels/cp_async.cuh: the same functions, modelling when a copy lands. A
// cp_async16 (cp_async4) records the copy in its thread's queue and poisons the 16 (4) destination
// bytes (0xFF: NaN as float, 255 as a pixel) at once; the copy is performed only when a cp_async_wait<N>() of the SAME thread
// lets its group complete (all but the N most recent committed groups; copies not yet committed
// stay in flight). So a kernel that reads a stage before its wait, before the __syncthreads after
// the other threads' waits, or that reuses a buffer whose copies are still in flight, reads NaN
// here (as it could read stale data on the GPU). Copies never waited for are dropped when the
// thread ends. g_emu_cp_async_copies counts the copies performed, of either size, and
// g_emu_cp_async4_copies the 4-byte ones (tests check the path ran: PipeTile's images operand).
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
  void* dst;
  const void* src;
  int bytes;  // 16 or 4
};
struct Queue {
  std::vector<Copy> open;                  // issued since the last commit
  std::deque<std::vector<Copy>> groups;    // committed, oldest first
};
inline Queue& queue() { return ::emu::lane_local<Queue>(); }  // this thread's
inline std::atomic<long long> copies{0};
inline std::atomic<long long> copies4{0};

// Issues a copy of `bytes` (both addresses aligned to it, as the PTX requires; else the run stops).
inline void issue(void* dst, const void* src, int bytes) {
  if (reinterpret_cast<std::uintptr_t>(dst) % bytes || reinterpret_cast<std::uintptr_t>(src) % bytes) {
    std::fprintf(stderr, "emu cp.async: misaligned %d-byte copy (dst %p, src %p)\n", bytes, dst, src);
    std::abort();
  }
  std::memset(dst, 0xFF, std::size_t(bytes));
  queue().open.push_back({dst, src, bytes});
}

}  // namespace emu_cp_async

inline std::atomic<long long>& g_emu_cp_async_copies = emu_cp_async::copies;
inline std::atomic<long long>& g_emu_cp_async4_copies = emu_cp_async::copies4;

inline void cp_async16(float* smem_dst, const float* gmem_src) { emu_cp_async::issue(smem_dst, gmem_src, 16); }
inline void cp_async4(float* smem_dst, const void* gmem_src) { emu_cp_async::issue(smem_dst, gmem_src, 4); }

inline void cp_async_commit() {
  auto& q = emu_cp_async::queue();
  q.groups.push_back(std::move(q.open));
  q.open.clear();
}

template <int N>
inline void cp_async_wait() {
  auto& q = emu_cp_async::queue();
  while (q.groups.size() > std::size_t(N)) {
    long long four = 0;
    for (const auto& c : q.groups.front()) {
      std::memcpy(c.dst, c.src, std::size_t(c.bytes));
      four += c.bytes == 4;
    }
    emu_cp_async::copies += static_cast<long long>(q.groups.front().size());
    emu_cp_async::copies4 += four;
    q.groups.pop_front();
  }
}

}  // namespace mnist::cuda
