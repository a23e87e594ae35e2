// DeviceBuffer<T>: a move-only owner of one cudaMalloc allocation of `size()` elements of T.
// No hidden transfers: copies to and from the host are explicit, synchronous calls (upload,
// download, to_host); asynchronous copies and memsets are issued by the caller on its stream.
//
// Out of GPU memory (other processes may hold most of it) is one CudaError that says which flags
// to lower. MNIST_GPU_MEM_LIMIT=<bytes> caps what all DeviceBuffers together may hold, so that
// tests can provoke it on any device (and the host emulation) without filling a real GPU.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <utility>
#include <vector>

#include "runtime/cuda_check.cuh"

namespace mnist {

namespace detail {
inline std::atomic<std::size_t> g_device_bytes{0};  // held by every DeviceBuffer together

// MNIST_GPU_MEM_LIMIT in bytes; 0 (unset or unparsable): no cap but the device's own.
inline std::size_t device_memory_cap() {
  const char* s = std::getenv("MNIST_GPU_MEM_LIMIT");
  return s ? std::size_t(std::strtoull(s, nullptr, 10)) : 0;
}

[[noreturn]] inline void throw_out_of_memory(std::size_t bytes, const char* why) {
  throw CudaError(cat("out of GPU memory: cannot allocate ", bytes, " more bytes (", why,
                      "); lower --batch-size or --hidden, or free the GPU"));
}
}  // namespace detail

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { resize(n); }
  ~DeviceBuffer() { release(); }

  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  // Reallocates (contents are lost) when n differs from the current size.
  void resize(std::size_t n) {
    if (n == n_) return;
    release();
    if (n > 0) {
      const std::size_t bytes = n * sizeof(T), cap = detail::device_memory_cap();
      if (cap && detail::g_device_bytes.load() + bytes > cap)
        detail::throw_out_of_memory(bytes, cat("MNIST_GPU_MEM_LIMIT=", cap, ", ", detail::g_device_bytes.load(),
                                               " bytes in use").c_str());
      cudaError_t e = cudaMalloc(&ptr_, bytes);
      if (e != cudaSuccess) {
        cudaGetLastError();
        ptr_ = nullptr;
        detail::throw_out_of_memory(bytes, cudaGetErrorString(e));
      }
      detail::g_device_bytes += bytes;
    }
    n_ = n;
  }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }
  bool empty() const { return n_ == 0; }

  void upload(const T* src, std::size_t n) {
    MNIST_CHECK(n <= n_, "upload of ", n, " elements into a buffer of ", n_);
    if (n) CUDA_CHECK(cudaMemcpy(ptr_, src, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void upload(const std::vector<T>& v) { resize(v.size()); upload(v.data(), v.size()); }
  void download(T* dst, std::size_t n) const {
    MNIST_CHECK(n <= n_, "download of ", n, " elements from a buffer of ", n_);
    if (n) CUDA_CHECK(cudaMemcpy(dst, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost));
  }
  std::vector<T> to_host() const {
    std::vector<T> v(n_);
    download(v.data(), n_);
    return v;
  }

 private:
  void release() noexcept {
    if (ptr_) {
      cudaFree(ptr_);
      detail::g_device_bytes -= n_ * sizeof(T);
    }
    ptr_ = nullptr;
    n_ = 0;
  }
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace mnist
