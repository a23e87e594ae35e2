#include "runtime/lazy_library.hpp"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include "runtime/error.hpp"

namespace mnist {

LazyLibrary::LazyLibrary(std::string soname, std::string fallback_dir, Kind kind)
    : soname_(std::move(soname)), fallback_dir_(std::move(fallback_dir)), kind_(kind) {}

void LazyLibrary::fail(const std::string& what) const {
  if (kind_ == Kind::Cuda) throw CudaError(what);
  throw Error(what);
}

void* LazyLibrary::symbol(const char* name) {
  std::call_once(once_, [this] { open(); });
  if (!handle_) fail(cat(soname_, " could not be loaded, so ", name, " cannot be called (tried: ", tried_, ")"));
  dlerror();
  void* fn = dlsym(handle_, name);
  if (!fn) {
    const char* why = dlerror();
    fail(cat(soname_, ": no symbol ", name, why ? cat(" (", why, ")") : std::string()));
  }
  return fn;
}

void LazyLibrary::open() {
  try_path(soname_);
  if (!handle_ && kind_ == Kind::Cuda) {
    // Beside the libcudart this process runs with (the toolkit's own layout).
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&cudaRuntimeGetVersion), &info) && info.dli_fname) {
      const std::string path = info.dli_fname;
      const auto slash = path.find_last_of('/');
      if (slash != std::string::npos) try_path(path.substr(0, slash + 1) + soname_);
    }
  }
  if (!handle_ && !fallback_dir_.empty()) try_path(fallback_dir_ + "/" + soname_);
}

void LazyLibrary::try_path(const std::string& path) {
  handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char* why = dlerror();
    tried_ += cat(tried_.empty() ? "" : "; ", why ? why : path);
  }
}

}  // namespace mnist
