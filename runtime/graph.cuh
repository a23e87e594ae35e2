// RAII owners of a CUDA graph and its executable instance, and capture_graph(), which records
// what a callable enqueues on a stream into an instantiated graph.
//
// Capture uses cudaStreamCaptureModeThreadLocal: this thread may not make unsafe calls (a
// synchronisation, a legacy-stream copy) while capturing, other threads are unaffected.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda_check.cuh"

namespace mnist {

class Graph {
 public:
  Graph() = default;
  explicit Graph(cudaGraph_t g) : g_(g) {}
  ~Graph() {
    if (g_) cudaGraphDestroy(g_);
  }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&& o) noexcept : g_(std::exchange(o.g_, nullptr)) {}
  Graph& operator=(Graph&& o) noexcept {
    if (this != &o) {
      if (g_) cudaGraphDestroy(g_);
      g_ = std::exchange(o.g_, nullptr);
    }
    return *this;
  }
  cudaGraph_t get() const { return g_; }

 private:
  cudaGraph_t g_ = nullptr;
};

class GraphExec {
 public:
  GraphExec() = default;
  explicit GraphExec(cudaGraphExec_t e) : e_(e) {}
  ~GraphExec() {
    if (e_) cudaGraphExecDestroy(e_);
  }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  GraphExec(GraphExec&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  GraphExec& operator=(GraphExec&& o) noexcept {
    if (this != &o) {
      if (e_) cudaGraphExecDestroy(e_);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }

  explicit operator bool() const { return e_ != nullptr; }
  cudaGraphExec_t get() const { return e_; }
  void launch(cudaStream_t s) const { CUDA_CHECK(cudaGraphLaunch(e_, s)); }

 private:
  cudaGraphExec_t e_ = nullptr;
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
