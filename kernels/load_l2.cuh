// A load from L2, past this SM's L1: for data that other blocks of the same launch wrote (their
// stores and atomics reach L2; this SM's L1 may hold a stale line). The host emulation has one
// coherent memory, so there it is a plain load.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace mnist::cuda {

template <class T>
__device__ __forceinline__ T load_l2(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(p);
#else
  return *p;
#endif
}

// 0 + x[0] + x[stride] + ... + x[(n - 1)·stride], added in that order from 0.0f (so the bits depend
// on n and the values only), with BATCH terms loaded from L2 before their adds: one round trip per
// BATCH terms, not per term (a split's pieces, a launch's per-block partials).
template <int BATCH>
__device__ __forceinline__ float sum_strided_in_order(const float* x, std::size_t stride, int n) {
  float acc = 0.0f;
  for (int q0 = 0; q0 < n; q0 += BATCH) {
    float v[BATCH];
#pragma unroll
    for (int j = 0; j < BATCH; ++j) v[j] = q0 + j < n ? load_l2(x + std::size_t(q0 + j) * stride) : 0.0f;
#pragma unroll
    for (int j = 0; j < BATCH; ++j)
      if (q0 + j < n) acc += v[j];
  }
  return acc;
}

}  // namespace mnist::cuda
