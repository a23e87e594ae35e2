// A shared library opened on first use (dlopen), for the libraries only some runs need: cuBLAS and
// cuBLASLt (runtime/cublas_lazy.cpp). Thread-safe; the library stays loaded for the process' life.
#pragma once

#include <mutex>
#include <string>

namespace mnist {

class LazyLibrary {
 public:
  // soname: e.g. "libcublas.so.13". Looked for, on the first symbol(), by the loader's own search
  // (LD_LIBRARY_PATH, the executable's RUNPATH, the system's cache), then beside the libcudart
  // this process runs with, then in fallback_dir (when not empty).
  LazyLibrary(std::string soname, std::string fallback_dir);
  LazyLibrary(const LazyLibrary&) = delete;
  LazyLibrary& operator=(const LazyLibrary&) = delete;

  // The address of `name`; throws mnist::CudaError naming the library, the symbol and, when the
  // library could not be opened, each place tried and why it failed.
  void* symbol(const char* name);

  // Whether the library is open (false before the first symbol() and after a failed open).
  bool loaded() const { return handle_ != nullptr; }
  const std::string& soname() const { return soname_; }

 private:
  void open();
  void try_path(const std::string& path);

  std::string soname_, fallback_dir_;
  std::once_flag once_;
  void* handle_ = nullptr;
  std::string tried_;
};

}  // namespace mnist
