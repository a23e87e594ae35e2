// Helpers of the GPU tests: device copies of host vectors, poisoned outputs, read-back.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/op_cases.hpp"
#include "layers/model.hpp"
#include "runtime/device_buffer.cuh"
#include "runtime/stream.cuh"
#include "tests/helpers.hpp"

namespace mnist::test {

template <class T>
DeviceBuffer<T> to_device(const std::vector<T>& v) {
  DeviceBuffer<T> b(v.size());
  b.upload(v.data(), v.size());
  return b;
}

// n elements whose bytes are all 0xFF: NaN as float, -1 as int32, 255 as uint8. An output element
// that a kernel fails to write keeps this value, which the comparisons reject (expect_close fails
// on a non-finite element).
template <class T>
DeviceBuffer<T> poisoned(std::size_t n) {
  DeviceBuffer<T> b(n);
  if (n) CUDA_CHECK(cudaMemset(b.data(), 0xFF, b.bytes()));
  CUDA_CHECK(cudaDeviceSynchronize());
  return b;
}

// Waits for all device work, then copies the buffer back.
template <class T>
std::vector<T> to_host(const DeviceBuffer<T>& b) {
  CUDA_CHECK(cudaDeviceSynchronize());
  return b.to_host();
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// n bytes uniform in [lo, hi], from a fixed seed.
inline std::vector<uint8_t> random_bytes(std::size_t n, uint64_t seed, int lo = 0, int hi = 255) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(dist(gen));
  return v;
}

// The shared op table (kernels/op_cases.hpp) at the test row counts, with the odd shapes; Adam
// runs over the default model's flat storage and odd lengths.
inline std::vector<cases::OpCase> test_cases(cases::Op op) {
  const std::size_t model_storage = make_layout(ModelSpec{}).storage;
  std::vector<cases::OpCase> out;
  for (const cases::OpCase& c : cases::op_cases(cases::test_rows(), true, {model_storage, 1, 7, 1000, 100003}))
    if (c.op == op) out.push_back(c);
  return out;
}

}  // namespace mnist::test
