// Entry point of mnist_gpu_tests: runs the doctest suites when a CUDA device is usable; otherwise
// prints one line saying why and exits 77, which ctest reports as "skipped" (SKIP_RETURN_CODE).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "runtime/device.hpp"

int main(int argc, char** argv) {
  const mnist::DeviceInfo info = mnist::query_device();
  if (!info.available) {
    std::printf("SKIPPED: GPU tests need a CUDA device (%s)\n", info.reason.c_str());
    return 77;
  }
  std::printf("GPU: %s\n", mnist::describe(info).c_str());
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
