// MNIST_LAUNCH_CHECK(stream): put after every kernel launch.
//
// Always: cudaGetLastError, which reports a bad launch configuration or a missing kernel image at
// the launch that caused it. Debug builds (or with MNIST_SYNC_CHECK defined) also synchronise
// `stream` so that a fault inside the kernel is reported by the launch that caused it, except
// while `stream` is being captured into a CUDA graph: synchronising there is illegal and would
// invalidate the capture, so the graph's replay is checked instead.
#pragma once

#include <cuda_runtime.h>

#include "runtime/cuda_check.cuh"

namespace mnist::detail {

inline void check_launch(cudaStream_t stream, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda(e, "kernel launch", file, line);
#if !defined(NDEBUG) || defined(MNIST_SYNC_CHECK)
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  e = cudaStreamIsCapturing(stream, &status);
  if (e != cudaSuccess) throw_cuda(e, "cudaStreamIsCapturing", file, line);
  if (status == cudaStreamCaptureStatusNone) {
    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) throw_cuda(e, "kernel execution (debug synchronisation)", file, line);
  }
#else
  (void)stream;
#endif
}

}  // namespace mnist::detail

#define MNIST_LAUNCH_CHECK(stream) ::mnist::detail::check_launch((stream), __FILE__, __LINE__)
