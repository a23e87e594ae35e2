// bench_kernels' `icache` rows: what a kernel pays to fetch code it runs once.
//
// Why (profiling/NOTES.md, "The tail kernel timed from inside its blocks"): the kernels whose
// launches take far longer than their modelled work are the large straight-line ones, whose every
// warp runs most of its thousands of instructions once per launch (the tail kernel's training
// instantiation is 6,929 instructions, ≈ 110 KB of SASS). Each 128-byte line of such code is
// fetched once, from L2 if the SM's instruction caches do not hold it; if the fetch does not run far
// ahead of the warps, every line costs part of an L2 round trip. These rows time the same
// instruction stream both ways, inside the kernel (thread 0's SM clock between two barriers, the
// median over the blocks, at the device's peak clock):
//
// - straight: N independent FADDs (8 accumulators, round robin) unrolled: N x 16 bytes of code, each
//   line run once by the block's 8 warps;
// - loop: the same N FADDs as a 256-instruction body run N / 256 times (4 KB of code, warm after the
//   first pass);
// - launched again (the same kernel just ran on the SM) or after another kernel of the same size (a
//   second copy, other code at other addresses), which the caches cannot both hold.
//
// One block an SM, 8 warps (the tail kernel's shape). The straight rows minus the loop row, per KB
// of code, is the fetch's cost; if it is near zero, code size is not what the tail kernel pays for.
// bench-only: no engine or test runs these kernels.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace mnist::icache {

constexpr int kThreads = 256;
constexpr int kBody = 256;  // the loop kernel's body: 256 FADDs, 4 KB

__device__ __forceinline__ void fadd(float& a, float b) { asm volatile("add.f32 %0, %0, %1;" : "+f"(a) : "f"(b)); }

template <int N, int COPY, bool LOOP>
__global__ void __launch_bounds__(kThreads, 1) fetch_kernel(float* sink, unsigned long long* cycles) {
  float a[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) a[j] = float(threadIdx.x + j + COPY);
  const float b = sink[0] + 1.0f + float(COPY);  // (a runtime operand: nothing is folded)
  __syncthreads();
  const long long t0 = clock64();
  if constexpr (LOOP) {
#pragma unroll 1
    for (int r = 0; r < N / kBody; ++r)
#pragma unroll
      for (int i = 0; i < kBody; ++i) fadd(a[i & 7], b);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) fadd(a[i & 7], b);
  }
  __syncthreads();
  const long long t1 = clock64();
  if (threadIdx.x == 0) cycles[blockIdx.x] = static_cast<unsigned long long>(t1 - t0);
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) s += a[j];
  if (s == -1.0f) sink[1 + threadIdx.x] = s;  // (never: keeps the adds' results live)
}

}  // namespace mnist::icache
