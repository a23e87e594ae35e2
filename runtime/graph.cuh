// RAII owners of a CUDA graph and its executable instance, and capture_graph(), which records
// what a callable enqueues on a stream into an instantiated graph.
//
// Capture uses cudaStreamCaptureModeThreadLocal: this thread may not make unsafe calls (a
// synchronisation, a legacy-stream copy) while capturing, other threads are unaffected.
#pragma once

#include <cuda_runtime.h>

#include "runtime/cuda_check.cuh"
#include "runtime/unique_handle.hpp"

namespace mnist {

using Graph = UniqueHandle<cudaGraph_t, cudaGraphDestroy>;

class GraphExec : public UniqueHandle<cudaGraphExec_t, cudaGraphExecDestroy> {
 public:
  using UniqueHandle::UniqueHandle;
  void launch(cudaStream_t s) const { CUDA_CHECK(cudaGraphLaunch(get(), s)); }
};

// Records everything `record()` enqueues on `stream` and returns the instantiated graph. If
// `record` throws, the capture is ended and discarded before the exception propagates, so the
// stream is usable again.
template <class F>
GraphExec capture_graph(cudaStream_t stream, F&& record) {
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    record();
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken) cudaGraphDestroy(broken);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t raw = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream, &raw));
  Graph graph(raw);
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph.get(), 0));
  return GraphExec(exec);
}

}  // namespace mnist
