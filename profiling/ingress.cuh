// bench_kernels' `ingress` rows: how many bytes a second an SM pulls from L2 into shared memory, by
// the copy instruction and the access pattern the GEMM tiles use, with nothing else in the loop.
//
// Why (profiling/NOTES.md, "The forward's split summed across a thread block cluster", and the
// eighteenth session's reading of a018989): every large native GEMM moves its operands at about
// 7 bytes a clock per SM, whatever the tile: PipeTile 64x64 x 8 warps (1-2 blocks an SM, 54 MB in
// 29.2 µs for layer 0's weight pieces at 4096 rows) as the 128x128 tile (one block an SM on 42 SMs,
// 29 MB in 46 µs); the pipelines keep 48-96 KB of copies in flight, which at an L2 latency of ~1 µs
// would allow 25-50. Either the SMs' ingress by 16-byte cp.async saturates far below L2's rate, or
// it is the access pattern (every block reading the same W slice at once). The rows separate them:
//
// - copy: `cp.async` (16 bytes a thread, cg: PipeTile's and the wgmma tiles'), `ld.global.v4` into
//   registers and then st.shared (SimtVecTile's), or `cp.async.bulk` (sm_90's bulk copy, one
//   thread issuing a row a copy, completion on an mbarrier: what TMA-fed tiles would use);
// - pattern (source_offset): every block the same 400 KB at the same time ("shared": W0 read by
//   every row tile in lockstep), the same bytes with each block starting elsewhere ("staggered"),
//   W0's slices as 128-byte rows 3,136 bytes apart ("shared rows"), or every block its own 400 KB
//   ("distinct": more than L2 holds, so HBM's rate);
// - blocks: one an SM (132) and two (264), 4 stages of 16 KB in flight a block, as the tiles'.
//
// A row's GB/s over 132 SMs at ~1.9 GHz gives its bytes a clock per SM. bench-only: no engine or
// test runs these kernels (they trap rather than hang if a bulk copy never completes).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace mnist::ingress {

constexpr int kThreads = 256;
constexpr int kStages = 4;
constexpr int kStageBytes = 16 * 1024;
constexpr int kRowBytes = 128;       // a W slice row: 32 floats
constexpr int kRowStride = 784 * 4;  // W0's rows
constexpr int kBlockBytes = 25 * kStageBytes;  // ≈ W0 (401 KB): 25 stages

enum Copy { kCpAsync = 0, kLdgSts = 1, kBulk = 2 };
enum Pattern { kDistinct = 0, kShared = 1, kStaggered = 2, kSharedRows = 3 };

// Byte offset of stage s's row r (kStageBytes / kRowBytes rows a stage) in a block's stream:
// kDistinct: the block's own 400 KB (more than L2 holds over the grid: HBM's rate);
// kShared: the one 400 KB every block reads, all at the same stage at once (in lockstep);
// kStaggered: the same 400 KB, block b starting at stage b % 25 (the same bytes, other lines at once);
// kSharedRows: a W0 slice a stage: 128 rows of 128 bytes, 3,136 bytes apart (the 24 slices of 32
// floats in a 784-float row), every block the same at once.
__device__ __forceinline__ std::size_t source_offset(Pattern pat, int block, int s, int r) {
  constexpr int kSlices = kBlockBytes / kStageBytes;
  if (pat == kSharedRows) return std::size_t(r) * kRowStride + std::size_t(s % 24) * kRowBytes;
  const int stage = pat == kStaggered ? (s + block) % kSlices : s;
  const std::size_t in_stream = std::size_t(stage) * kStageBytes + std::size_t(r) * kRowBytes;
  return pat == kDistinct ? std::size_t(block) * kBlockBytes + in_stream : in_stream;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <int COPY>
__global__ void __launch_bounds__(kThreads) ingress_kernel(const uint8_t* src, int pattern, float* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ float4 ingress_smem[];
  uint8_t* const stages = reinterpret_cast<uint8_t*>(ingress_smem);
  __shared__ alignas(8) uint64_t bar[kStages];
  const int tid = int(threadIdx.x), block = int(blockIdx.x);
  const Pattern pat = Pattern(pattern);
  constexpr int kSlices = kBlockBytes / kStageBytes;
  constexpr int kRows = kStageBytes / kRowBytes;  // 128 rows of 128 bytes a stage
  float acc = 0.0f;
  if (COPY == kBulk && tid == 0) {
    for (int i = 0; i < kStages; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&bar[i])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  // Stage s's copies into slot s % kStages.
  auto issue = [&](int s) {
    uint8_t* dst = stages + (s % kStages) * kStageBytes;
    if constexpr (COPY == kCpAsync) {
      for (int c = tid; c < kStageBytes / 16; c += kThreads) {  // 8 rows of 16-byte chunks: chunk c of row c / 8
        const uint8_t* p = src + source_offset(pat, block, s, c / 8) + (c % 8) * 16;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(dst + 16 * c)), "l"(p) : "memory");
      }
      asm volatile("cp.async.commit_group;" ::: "memory");
    } else if constexpr (COPY == kBulk) {
      if (tid == 0) {
        const uint32_t b = smem_u32(&bar[s % kStages]);
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // the slot's earlier reads before its refill
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(kStageBytes) : "memory");
        for (int r = 0; r < kRows; ++r) {
          const uint8_t* p = src + source_offset(pat, block, s, r);
          asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                           smem_u32(dst + r * kRowBytes)),
                       "l"(p), "r"(kRowBytes), "r"(b)
                       : "memory");
        }
      }
    }
  };
  // ld.global + st.shared: the loads of stage s + kStages - 1 go out before stage s is consumed.
  float4 reg[kStageBytes / 16 / kThreads];
  auto load = [&](int s) {
#pragma unroll
    for (int i = 0; i < kStageBytes / 16 / kThreads; ++i) {
      const int c = tid + i * kThreads;
      reg[i] = __ldcg(reinterpret_cast<const float4*>(src + source_offset(pat, block, s, c / 8) + (c % 8) * 16));
    }
  };
  auto store = [&](int s) {
#pragma unroll
    for (int i = 0; i < kStageBytes / 16 / kThreads; ++i)
      reinterpret_cast<float4*>(stages + (s % kStages) * kStageBytes)[tid + i * kThreads] = reg[i];
  };
  if constexpr (COPY == kLdgSts) {
    load(0);
  } else {
    for (int s = 0; s < kStages - 1; ++s) issue(s);
  }
  for (int s = 0; s < kSlices; ++s) {
    if constexpr (COPY == kCpAsync) {
      asm volatile("cp.async.wait_group %0;" ::"n"(kStages - 2) : "memory");
    } else if constexpr (COPY == kBulk) {
      const uint32_t b = smem_u32(&bar[s % kStages]), parity = uint32_t(s / kStages) & 1u;
      const long long t0 = clock64();
      uint32_t done = 0;
      while (!done) {
        asm volatile(
            "{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
            : "=r"(done)
            : "r"(b), "r"(parity)
            : "memory");
        if (!done && clock64() - t0 > (1ll << 32)) __trap();  // (seconds: a copy that never lands)
      }
    } else {
      store(s);
      if (s + 1 < kSlices) load(s + 1);
    }
    __syncthreads();  // stage s is in for every thread; stage s - 1 is consumed by all
    if (COPY != kLdgSts && s + kStages - 1 < kSlices) issue(s + kStages - 1);
    if constexpr (COPY == kCpAsync)
      if (s + kStages - 1 >= kSlices) asm volatile("cp.async.commit_group;" ::: "memory");  // (the wait count)
    acc += reinterpret_cast<const float*>(stages + (s % kStages) * kStageBytes)[tid];  // touch the stage
    __syncthreads();
  }
  if (COPY == kCpAsync) asm volatile("cp.async.wait_group 0;" ::: "memory");
  if (acc == 12345.678f) sink[tid] = acc;  // (never: keeps the reads)
#else
  (void)src, (void)pattern, (void)sink;
#endif
}

}  // namespace mnist::ingress
