// Helpers of the GPU tests: device copies of host vectors, poisoned outputs, read-back.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/labels.cuh"
#include "kernels/op_cases.hpp"
#include "layers/model.hpp"
#include "runtime/device_buffer.cuh"
#include "runtime/stream.cuh"
#include "tests/gpu/scattered_labels.hpp"
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

// u = 2⁻²⁴, the unit roundoff of float (half an ulp of 1): one correctly rounded float operation
// has a relative error of at most u.
constexpr double kUnitRoundoff = 1.0 / 16777216.0;

// Higham's γ_n = n·u / (1 − n·u): a float sum of n terms computed by n − 1 additions or FMAs (in
// any order, any grouping) is within γ_{n-1}·Σ|terms| of the exact sum. The bound is on
// Σ|terms|, not on |sum|: when the terms cancel, the sum's RELATIVE error is unbounded.
inline double gamma_n(int n) { return n * kUnitRoundoff / (1.0 - n * kUnitRoundoff); }

// Checks every element: finite and |out[i] − ref[i]| <= bound[i]. For results whose normalised
// error says nothing, such as one sum that cancels, or a probability of 1e-21 beside one of 1.
// Names the worst element (largest error / bound).
template <class A>
void expect_within(const std::vector<A>& out, const std::vector<double>& ref, const std::vector<double>& bound,
                   const std::string& what) {
  INFO(what);
  REQUIRE(out.size() == ref.size());
  REQUIRE(bound.size() == ref.size());
  std::size_t worst = 0, bad = 0;
  double worst_ratio = -1;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double err = std::fabs(double(out[i]) - ref[i]);
    const double ratio = std::isfinite(double(out[i])) ? err / std::max(bound[i], 1e-300) : INFINITY;
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;
  }
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << out.size() << " elements outside their rounding bound; worst ["
                               << worst << "] = " << double(out.empty() ? A(0) : out[worst]) << " vs "
                               << (ref.empty() ? 0.0 : ref[worst]) << ", error/bound " << worst_ratio);
}

// Element-wise bound γ_n·Σ|terms| (abs_ref: the same computation on the absolute values of the
// inputs, in double) plus rel_extra·|ref| for the roundings after the sum (an epilogue's scale).
inline std::vector<double> sum_bounds(const std::vector<double>& abs_ref, const std::vector<double>& ref, int n_terms,
                                      double rel_extra = 0.0) {
  std::vector<double> b(abs_ref.size());
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = gamma_n(n_terms) * abs_ref[i] + rel_extra * std::fabs(ref[i]);
  return b;
}

template <class T>
std::vector<double> abs_double(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::fabs(double(v[i]));
  return out;
}

// MNIST_GPU_TEST_QUICK=1: the sanitizer selection (profiling/gpu_suite.sh runs racecheck and
// synccheck over it, where every launch costs seconds). Rows 1 (one row) and 129 (a 32-row tile
// plus a one-row tail, 64-row tiles plus a tail), the odd layer widths only (33, 100, 129, 65, 7,
// 1: tails in every dimension, one column and one row of W, K not a multiple of the 64-deep
// slice), 2 and 33 classes, 7 and 33 pixels, Adam over 1 and 1000 elements. Every kernel and
// every shape class of the full selection, in a few launches each.
inline bool quick_tests() {
  const char* q = std::getenv("MNIST_GPU_TEST_QUICK");
  return q && *q && std::string(q) != "0";
}

// The shared op table (kernels/op_cases.hpp) at the test row counts, with the odd shapes; Adam
// runs over the default model's flat storage and odd lengths. Quick mode: see quick_tests().
inline std::vector<cases::OpCase> test_cases(cases::Op op) {
  std::vector<cases::OpCase> out;
  if (quick_tests()) {
    for (const cases::OpCase& c : cases::op_cases({1, 129}, true, {1, 1000})) {
      if (c.op != op) continue;
      const bool model_width = c.in == 784 || (c.in == 128 && c.out == 64) || (c.in == 64 && c.out == 10) ||
                               (c.op == cases::Op::Dropout && (c.out == 128 || c.out == 64)) ||
                               ((c.op == cases::Op::SoftmaxXent || c.op == cases::Op::Softmax) &&
                                (c.out == 10 || c.out == 100));
      if (!model_width) out.push_back(c);
    }
    return out;
  }
  const std::size_t model_storage = make_layout(ModelSpec{}).storage;
  for (const cases::OpCase& c : cases::op_cases(cases::test_rows(), true, {model_storage, 1, 7, 1000, 100003}))
    if (c.op == op) out.push_back(c);
  return out;
}

// The labels of a batch as the training step reads them by index (scatter_labels), on the device:
// labels() is the LabelInput that finds batch_labels[r] for row r.
struct DeviceLabels {
  ScatteredLabels host;
  DeviceBuffer<uint8_t> labels;
  DeviceBuffer<int32_t> idx;
  DeviceBuffer<cuda::TrainCounters> counters;
  DeviceLabels(const std::vector<uint8_t>& batch_labels, uint64_t seed)
      : host(scatter_labels(batch_labels, seed)), labels(host.labels.size()), idx(host.idx.size()), counters(1) {
    labels.upload(host.labels);
    idx.upload(host.idx);
    cuda::TrainCounters c;
    c.batch = host.batch;
    counters.upload(std::vector<cuda::TrainCounters>{c});
  }
  cuda::LabelInput input() const {
    return cuda::LabelInput::by_index(labels.data(), idx.data(), host.first, counters.data(), host.stride);
  }
};

}  // namespace mnist::test
