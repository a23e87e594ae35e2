// UniqueHandle<H, Destroy>: the one RAII shape behind every CUDA-runtime and library object the
// project owns (streams, events, graphs, cuBLAS/cuBLASLt/cuDNN handles): move-only, holds one
// handle H (an opaque pointer type), releases it with Destroy exactly once. Wrappers derive from
// it, create the handle in their constructor and add what their type can do.
#pragma once

#include <utility>

namespace mnist {

template <class H, auto Destroy>
class UniqueHandle {
 public:
  UniqueHandle() = default;
  explicit UniqueHandle(H h) : h_(h) {}
  ~UniqueHandle() { reset(); }
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;
  UniqueHandle(UniqueHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UniqueHandle& operator=(UniqueHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }

  H get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }
  // Releases the handle (errors of the destroy call are ignored: it runs in destructors).
  void reset() {
    if (h_) (void)Destroy(h_);
    h_ = nullptr;
  }

 private:
  H h_ = nullptr;
};

}  // namespace mnist
