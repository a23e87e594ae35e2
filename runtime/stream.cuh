// RAII owners of a CUDA stream and a CUDA event (move-only).
//
// Stream is a *blocking* stream (cudaStreamDefault): it stays ordered with the legacy default
// stream, so the synchronous cudaMemcpy calls of DeviceBuffer::upload/download are ordered with
// the kernels enqueued on it. (A non-blocking stream would race with them.)
#pragma once

#include <cuda_runtime.h>

#include "runtime/cuda_check.cuh"
#include "runtime/unique_handle.hpp"

namespace mnist {

class Stream : public UniqueHandle<cudaStream_t, cudaStreamDestroy> {
 public:
  Stream() : UniqueHandle(create()) {}
  void synchronize() const { CUDA_CHECK(cudaStreamSynchronize(get())); }

 private:
  static cudaStream_t create() {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
    return s;
  }
};

class Event : public UniqueHandle<cudaEvent_t, cudaEventDestroy> {
 public:
  explicit Event(unsigned flags = cudaEventDefault) : UniqueHandle(create(flags)) {}
  void record(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(get(), s)); }
  void synchronize() const { CUDA_CHECK(cudaEventSynchronize(get())); }
  // Milliseconds between two recorded (and completed) events.
  static float elapsed_ms(const Event& start, const Event& end) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), end.get()));
    return ms;
  }

 private:
  static cudaEvent_t create(unsigned flags) {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
    return e;
  }
};

}  // namespace mnist
