// A load from L2, past this SM's L1: for data that other blocks of the same launch wrote (their
// stores and atomics reach L2; this SM's L1 may hold a stale line). The host emulation has one
// coherent memory, so there it is a plain load.
#pragma once

#include <cuda_runtime.h>

namespace mnist::cuda {

template <class T>
__device__ __forceinline__ T load_l2(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(p);
#else
  return *p;
#endif
}

}  // namespace mnist::cuda
