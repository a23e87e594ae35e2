// Host emulation of kernels/wgmma.cuh: the same functions, with wgmma modelled as the asynchronous
// warpgroup collective it is.
//
// Issue (wgmma_tf32<N> / wgmma_bf16<N>, m64nNk8 / m64nNk16, N = 64 or 128): the 128 threads of the warpgroup (threads
// 128q .. 128q+127 of the block) meet at a barrier with the descriptors they pass; every thread
// checks that its descriptors and scale-d equal the warpgroup's first thread's (the instruction
// takes one value per warpgroup: a thread-dependent descriptor is a bug) and records the operation
// (descriptors, its own accumulator array, scale-d) in its own queue. Nothing is computed yet.
// wgmma_commit closes the thread's open operations into a group; wgmma_wait<N> performs, in issue
// order, every group but the N most recent: only then does the thread's accumulator change, and
// only then are the operands read from shared memory. So a kernel that reads an accumulator before
// its wait sees the old value, and one that overwrites a stage before every thread's wait has
// passed (a missing barrier, a wait of too many groups) feeds the wrong or poisoned (NaN) data, as
// it could on the GPU.
//
// Performing an operation, a thread computes its own N/2 elements of D by the PTX fragment table
// (thread 32w + 4g + t holds d[4j + 2h + c] = D[16w + g + 8h][8j + 2t + c], written out here
// independently of how dense.cu stores them), each as the sum over k of A(m, k)·B(n, k), where
// every operand element is found by DECODING the descriptor (start address, LBO, SBO; base offset
// and swizzle must be 0: only the no-swizzle K-major layout is modelled, anything else aborts):
//   element (x, k), E-byte elements: start + (x/8)·SBO + (k·E/16)·LBO + (x%8)·16 + (k·E)%16.
// Addresses are byte offsets in the block's dynamic shared memory (the emulator's per-block buffer
// stands for the shared window; wgmma_desc encodes p - base). TF32 elements are read as the
// hardware does (the 19 high bits of the word), BF16 as 16-bit halves. Numerics as the mma model
// (ov/kernels/mma.cuh): products exact, added to the accumulator in ascending k with float FMAs;
// the hardware's order inside one instruction is not documented and the tests' tolerances cover
// any order. fence_proxy_async and wgmma_fence order nothing here (the model reads at the wait,
// after the barriers a correct kernel has): they only count. g_emu_wgmma_ops counts the operations
// performed (tests check the path ran).
#pragma once

#include <atomic>
#include <cooperative_groups.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#include <cuda_runtime.h>

#include "kernels/precision.hpp"
#include "kernels/wgmma_desc.hpp"

#define MNIST_WGMMA 1

namespace mnist::cuda {
namespace emu_wgmma {

struct Issue {
  uint64_t a, b;
  int accumulate, n;
};
// Two buffers per warpgroup (emu::group_state), used by alternate calls (one barrier per call
// suffices, as in mma.cuh); the warpgroup's barrier is emu::group_wait(128).
struct Scratch {
  Issue issue[2][128];
};
struct Calls {
  unsigned n;  // this thread's issue count
};

struct Op {
  uint64_t a, b;
  float* d;
  int n;  // N of m64nN: n/2 accumulators a thread
  bool accumulate, bf16;
};
struct Queue {
  std::vector<Op> open;                // issued since the last commit
  std::deque<std::vector<Op>> groups;  // committed, oldest first
};
inline Queue& queue() { return ::emu::lane_local<Queue>(); }  // this thread's
inline std::atomic<long long> ops{0}, fences{0}, proxy_fences{0};

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "emu wgmma: %s\n", what);
  std::abort();
}

// A K-major no-swizzle operand described by desc, decoded once per operation: element (x, k) of E
// bytes lies at byte  start + (x/8)·SBO + (k·E/16)·LBO + (x%8)·16 + (k·E)%16  of the block's dynamic
// shared memory.
struct Operand {
  const unsigned char* start;
  uint64_t lbo, sbo;
  int E;
  Operand(uint64_t desc, int E) : E(E) {
    if (((desc >> 49) & 7u) != 0) fail("descriptor base offset != 0 (not modelled)");
    if ((desc >> 62) != 0) fail("descriptor swizzle mode != none (not modelled)");
    start = static_cast<const unsigned char*>(g_emu_dynamic_smem) + ((desc & 0x3FFFu) << 4);
    lbo = ((desc >> 16) & 0x3FFFu) << 4, sbo = ((desc >> 32) & 0x3FFFu) << 4;
  }
  const unsigned char* element(int x, int k) const {
    const int kb = k * E;
    return start + uint64_t(x / 8) * sbo + uint64_t(kb / 16) * lbo + uint64_t(x % 8) * 16 + uint64_t(kb % 16);
  }
};

inline float tf32_at(const unsigned char* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return bits_float(w & 0xFFFFE000u);
}
inline float bf16_at(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return bits_float(uint32_t(h) << 16);
}

// This thread's N/2 elements of D for one operation (m64nNk8 tf32 / m64nNk16 bf16): element v at
// row m = 16w + g + 8h, column n = 8j + 2t + c (v = 4j + 2h + c), its K products added in k order from
// D (or 0) by fma. Each operand element the thread needs is decoded and read once (its two rows of
// A, its n/4 columns of B); then k runs outermost, so that each step's n/2 fmas are independent of
// one another (the k-inner loop waited out every fma's latency in turn: half of emu_gpu_tests'
// time). Every element still sees the same fmas in the same order: the same bits.
inline void perform(const Op& op) {
  const int tid = int(threadIdx.x) % 128, w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
  const int K = op.bf16 ? 16 : 8, E = op.bf16 ? 2 : 4, V = op.n / 2;
  const Operand A(op.a, E), B(op.b, E);
  const auto value = [&](const Operand& o, int x, int k) {
    const unsigned char* p = o.element(x, k);
    return op.bf16 ? bf16_at(p) : tf32_at(p);
  };
  float a[16][2], b[16][64], acc[64];  // a[k][h], b[k][2j + c], acc[v]
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < K; ++k) a[k][h] = value(A, 16 * w + g + 8 * h, k);
  for (int jc = 0; jc < V / 2; ++jc)
    for (int k = 0; k < K; ++k) b[k][jc] = value(B, 8 * (jc / 2) + 2 * t + jc % 2, k);
  for (int v = 0; v < V; ++v) acc[v] = op.accumulate ? op.d[v] : 0.0f;
  for (int k = 0; k < K; ++k) {
    const float a0 = a[k][0], a1 = a[k][1];
    const float* bk = b[k];
    for (int j = 0; j < V / 4; ++j) {  // v = 4j + 2h + c
      float* d = acc + 4 * j;
      d[0] = std::fma(a0, bk[2 * j], d[0]);
      d[1] = std::fma(a0, bk[2 * j + 1], d[1]);
      d[2] = std::fma(a1, bk[2 * j], d[2]);
      d[3] = std::fma(a1, bk[2 * j + 1], d[3]);
    }
  }
  for (int v = 0; v < V; ++v) op.d[v] = acc[v];
  ++ops;
}

inline void issue(float* d, int n, uint64_t desc_a, uint64_t desc_b, bool accumulate, bool bf16) {
  if (blockDim.x % 128 != 0 || blockDim.y != 1 || blockDim.z != 1) fail("block is not whole warpgroups");
  const int tid = int(threadIdx.x);
  const unsigned buf = ::emu::lane_local<Calls>().n++ % 2;
  auto& sc = ::emu::group_state<Scratch>(128).issue[buf];
  sc[tid % 128] = {desc_a, desc_b, int(accumulate), n};
  ::emu::group_wait(128, "a wgmma (warpgroup collective)");
  const Issue& first = sc[0];
  if (first.a != desc_a || first.b != desc_b || first.accumulate != int(accumulate) || first.n != n)
    fail("the threads of a warpgroup passed different descriptors, scale-d or shapes");
  queue().open.push_back({desc_a, desc_b, d, n, accumulate, bf16});
}

}  // namespace emu_wgmma

inline std::atomic<long long>& g_emu_wgmma_ops = emu_wgmma::ops;
inline std::atomic<long long>& g_emu_wgmma_fences = emu_wgmma::fences;
inline std::atomic<long long>& g_emu_proxy_fences = emu_wgmma::proxy_fences;

inline uint64_t wgmma_desc(const void* p, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const std::ptrdiff_t off = static_cast<const unsigned char*>(p) - static_cast<const unsigned char*>(g_emu_dynamic_smem);
  if (!g_emu_dynamic_smem || off < 0 || off >= (1 << 18)) emu_wgmma::fail("descriptor of an address outside the block's shared memory");
  if (off % 16) emu_wgmma::fail("descriptor start address not 16-byte aligned");
  return wgmma_desc_bits(uint32_t(off), lbo_bytes, sbo_bytes);
}

inline void wgmma_fence() { ++emu_wgmma::fences; }
template <int R>
inline void wgmma_fence_operands(float (&)[R]) {}  // a compiler barrier on the GPU; nothing to model
inline void fence_proxy_async() { ++emu_wgmma::proxy_fences; }

inline void wgmma_commit() {
  auto& q = emu_wgmma::queue();
  q.groups.push_back(std::move(q.open));
  q.open.clear();
}

template <int N>
inline void wgmma_wait() {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
  auto& q = emu_wgmma::queue();
  while (q.groups.size() > std::size_t(N)) {
    for (const auto& op : q.groups.front()) emu_wgmma::perform(op);
    q.groups.pop_front();
  }
}

template <int N>
inline void wgmma_tf32(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(N == 64 || N == 128, "kernels/wgmma.cuh wraps m64n64 and m64n128");
  emu_wgmma::issue(d, N, desc_a, desc_b, accumulate, false);
}
template <int N>
inline void wgmma_bf16(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(N == 64 || N == 128, "kernels/wgmma.cuh wraps m64n64 and m64n128");
  emu_wgmma::issue(d, N, desc_a, desc_b, accumulate, true);
}

}  // namespace mnist::cuda
