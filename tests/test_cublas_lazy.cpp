// runtime/cublas_lazy.cpp and runtime/lazy_library.hpp: cuBLAS is loaded by the first cuBLAS call,
// not at start-up; the calls reach the real library; a library that cannot be found is reported
// with every place tried. (The GPU tests and `--gemm cublas` prove the forwarded calls compute.)
#include <cublas_v2.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "helpers.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"
#include "runtime/lazy_library.hpp"

namespace {

// The message of the CudaError f throws ("" if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const mnist::CudaError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// (First in this file: ctest runs each file's cases in a process of their own, in this order.)
TEST_CASE("cuBLAS is loaded by the first cuBLAS call, not before") {
  REQUIRE(mnist::test::loaded_objects("libcublas") == 0);  // neither libcublas nor libcublasLt at start-up
  const char* name = cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE);
  REQUIRE(name != nullptr);
  CHECK(std::string(name).size() > 3);
  CHECK(mnist::test::loaded_objects("libcublas.so") == 1);
  CHECK(mnist::test::loaded_objects("libcublasLt.so") == 1);  // libcublas needs it
}

TEST_CASE("cublasCreate reaches the library: a handle with a device, a failure status without one") {
  const mnist::DeviceInfo dev = mnist::query_device();
  cublasHandle_t h = nullptr;
  const cublasStatus_t st = cublasCreate(&h);
  if (dev.available) {
    REQUIRE(st == CUBLAS_STATUS_SUCCESS);
    CHECK(h != nullptr);
    CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
  } else {
    CHECK(st != CUBLAS_STATUS_SUCCESS);  // the library's own answer: no device to initialize
    MESSAGE("no CUDA device: cublasCreate returned ", std::string(cublasGetStatusString(st)));
  }
}

TEST_CASE("LazyLibrary: a missing library is reported with every place tried, each time") {
  mnist::LazyLibrary lib("libmnist_no_such_library.so.1", "/nonexistent_dir");
  CHECK(!lib.loaded());
  for (int attempt = 0; attempt < 2; ++attempt) {
    const std::string what = error_of([&] { lib.symbol("some_function"); });
    CAPTURE(what);
    CHECK(what.find("libmnist_no_such_library.so.1 could not be loaded") != std::string::npos);
    CHECK(what.find("some_function") != std::string::npos);
    CHECK(what.find("/nonexistent_dir/libmnist_no_such_library.so.1") != std::string::npos);
  }
  CHECK(!lib.loaded());
}

TEST_CASE("LazyLibrary: symbols of a library that loads, and a clear error for one it lacks") {
  mnist::LazyLibrary lib("libm.so.6", "");
  auto* cos_fn = reinterpret_cast<double (*)(double)>(lib.symbol("cos"));
  CHECK(lib.loaded());
  REQUIRE(reinterpret_cast<void*>(cos_fn) != nullptr);
  CHECK(cos_fn(0.5) == std::cos(0.5));
  const std::string what = error_of([&] { lib.symbol("mnist_no_such_symbol"); });
  CAPTURE(what);
  CHECK(what.find("libm.so.6: no symbol mnist_no_such_symbol") == 0);
}

TEST_CASE("LazyLibrary, Kind::Host: failures are mnist::Error, not CudaError, and libcudart's directory is not tried") {
  mnist::LazyLibrary lib("libmnist_no_such_library.so.2", "/nonexistent_dir", mnist::LazyLibrary::Kind::Host);
  std::string what;
  bool cuda_error = false;
  try {
    lib.symbol("some_function");
  } catch (const mnist::CudaError&) {
    cuda_error = true;
  } catch (const mnist::Error& e) {
    what = e.what();
  }
  CHECK(!cuda_error);
  CAPTURE(what);
  CHECK(what.find("libmnist_no_such_library.so.2 could not be loaded") != std::string::npos);
  CHECK(what.find("/nonexistent_dir/libmnist_no_such_library.so.2") != std::string::npos);
  CHECK(what.find("cudart") == std::string::npos);
  CHECK(what.find("targets/") == std::string::npos);  // (libcudart's directory in the toolkit's layout)
  // Two places tried: the soname, the fallback directory.
  CHECK(std::count(what.begin(), what.end(), ';') == 1);
}
