// RAII owners of a CUDA stream and a CUDA event (move-only).
//
// Stream is a *blocking* stream (cudaStreamDefault): it stays ordered with the legacy default
// stream, so the synchronous cudaMemcpy calls of DeviceBuffer::upload/download are ordered with
// the kernels enqueued on it. (A non-blocking stream would race with them.)
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "runtime/cuda_check.cuh"

namespace mnist {

class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamDefault)); }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    if (this != &o) {
      if (s_) cudaStreamDestroy(s_);
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }

  cudaStream_t get() const { return s_; }
  void synchronize() const { CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  explicit Event(unsigned flags = cudaEventDefault) { CUDA_CHECK(cudaEventCreateWithFlags(&e_, flags)); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&& o) noexcept {
    if (this != &o) {
      if (e_) cudaEventDestroy(e_);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }

  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(e_, s)); }
  void synchronize() const { CUDA_CHECK(cudaEventSynchronize(e_)); }
  // Milliseconds between two recorded (and completed) events.
  static float elapsed_ms(const Event& start, const Event& end) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, end.e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace mnist
