#pragma once
#include <cuda_runtime.h>
namespace mnist::cuda {
struct Metrics { double loss_sum = 0; unsigned long long correct = 0; };
template <int THREADS>
inline void accumulate_metrics(Metrics* m, double loss, unsigned long long hits) {
  static double sl[THREADS]; static unsigned long long sh[THREADS];
  sl[threadIdx.x] = loss; sh[threadIdx.x] = hits;
  __syncthreads();
  if (threadIdx.x == 0) { double a = 0; unsigned long long h = 0; for (int i = 0; i < THREADS; ++i) { a += sl[i]; h += sh[i]; } m->loss_sum += a; m->correct += h; }
  __syncthreads();
}
}
