// A shared library opened on first use (dlopen), for the libraries only some runs need: cuBLAS and
// cuBLASLt (runtime/cublas_lazy.cpp), OpenBLAS (layers/cpu_blas.cpp: the CPU path's GEMMs).
// Thread-safe; the library stays loaded for the process' life.
#pragma once

#include <mutex>
#include <string>

namespace mnist {

class LazyLibrary {
 public:
  enum class Kind {
    Cuda,  // a CUDA toolkit library: also looked for beside libcudart; failures throw CudaError
    Host,  // any other: failures throw Error
  };
  // soname: e.g. "libcublas.so.13". Looked for, on the first symbol(), by the loader's own search
  // (LD_LIBRARY_PATH, the executable's RUNPATH, the system's cache), then (Kind::Cuda) beside the
  // libcudart this process runs with, then in fallback_dir (when not empty).
  LazyLibrary(std::string soname, std::string fallback_dir, Kind kind = Kind::Cuda);
  LazyLibrary(const LazyLibrary&) = delete;
  LazyLibrary& operator=(const LazyLibrary&) = delete;

  // The address of `name`; throws (CudaError or Error, by Kind) naming the library, the symbol and,
  // when the library could not be opened, each place tried and why it failed.
  void* symbol(const char* name);

  // Whether the library is open (false before the first symbol() and after a failed open).
  bool loaded() const { return handle_ != nullptr; }
  const std::string& soname() const { return soname_; }

 private:
  void open();
  void try_path(const std::string& path);

  [[noreturn]] void fail(const std::string& what) const;

  std::string soname_, fallback_dir_;
  Kind kind_;
  std::once_flag once_;
  void* handle_ = nullptr;
  std::string tried_;
};

// The symbol `name` of lib(), as the type of F, the declaration a forwarder stands in for (its
// own address: `lazy_symbol<&cblas_sgemm>(openblas, "cblas_sgemm")`). Resolved once per F; a
// failure throws (LazyLibrary::symbol) and is retried at the next call.
template <auto F>
auto lazy_symbol(LazyLibrary& (*lib)(), const char* name) {
  static const auto fn = reinterpret_cast<decltype(F)>(lib().symbol(name));
  return fn;
}

}  // namespace mnist
