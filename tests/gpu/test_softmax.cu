// The fused softmax + cross-entropy and the softmax against the CPU twins computed in double, and
// the softmax against cuDNN.
//
// Tolerances, element by element (a normalised error is dominated by the large elements and says
// nothing about a probability of 1e-21 beside one of 1; with one row of two classes it IS that
// element's relative error). u = 2⁻²⁴. The kernel (kernels/softmax_xent.cu) computes
// e_j = exp(z_j − zmax) with the subtraction's rounding folded back in (so the error does not grow
// with |z_j − zmax|): CUDA's expf is within 2 ulp (<= 4u), the correction adds u: 5u. The sum of C
// positive e_j: (C − 1)u more. A probability e_j/sum: 5u + (C + 4)u + u; the gradient's scale
// (1/B): + u, so (C + 11)u for j ≠ label; the label's -(Σ_{j≠y} e_j)/sum·scale: (C + 3)u +
// (C + 4)u + 2u. Bound: (2C + 12)·u·|ref| for the gradient, (C + 11)·u·|ref| for probabilities,
// plus 2⁻¹²⁶ absolute (results below float's normal range). The loss of a row is log1p(Σ_{j≠arg}
// e_j) − (z_y − zmax), two non-negative terms: (C + 6)u relative; the sum over rows adds positive
// terms in double: 1e-5 relative covers C <= 100 ((100 + 6)u = 6.3e-6). The correct count compares
// the same float logits on both sides and must match exactly.
// The H200 run of 2026-11-26 failed the old normalised 1e-6 on rows=1 out=2 spread=80: logits
// 72.684 and 24.960, label 0, so dlogits = (≈ −1.9e-21, 1.877e-21): the old kernel's float z − zmax
// = −47.72 carries a rounding of up to 47.72u = 2.8e-6, which exp turns into the same relative
// error of the 1.9e-21 (1.98e-6 measured, 1.87e-6 with glibc's expf on the host), and its
// p_y − 1 = 0 lost the label's element entirely (the double reference lost it too). See
// profiling/NOTES.md.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/metrics.cuh"
#include "kernels/softmax_xent.cuh"
#include "layers/cpu_ops.hpp"
#include "tests/gpu/gpu_test.cuh"

#if defined(MNIST_HAVE_CUDNN)
#include "kernels/cudnn_ref.cuh"
#include "runtime/cudnn_handle.cuh"
#endif

namespace mnist::test {
namespace {

cuda::Metrics read_metrics(const DeviceBuffer<cuda::Metrics>& m) { return to_host(m)[0]; }

DeviceBuffer<cuda::Metrics> zero_metrics() { return to_device(std::vector<cuda::Metrics>(1)); }

// factor·u·|ref| + 2⁻¹²⁶ for every element (see the header).
std::vector<double> softmax_bounds(const std::vector<double>& ref, int factor) {
  std::vector<double> b(ref.size());
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = factor * kUnitRoundoff * std::fabs(ref[i]) + std::ldexp(1.0, -126);
  return b;
}

TEST_CASE("softmax_xent equals cpu::softmax_xent (loss, gradient, correct count) and accumulates") {
  Stream stream;
  for (const cases::OpCase& c : test_cases(cases::Op::SoftmaxXent)) {
    for (double spread : {3.0, 80.0}) {  // 80: exp would overflow without the max subtraction
      INFO(c.name(), " spread=", spread);
      const int B = c.rows, C = c.out;
      const std::vector<float> logits = random_vector(std::size_t(B) * C, 31 + B + C, -spread, spread);
      const std::vector<uint8_t> labels = random_bytes(std::size_t(B), 32 + B, 0, C - 1);
      std::vector<double> ref(logits.size());
      int ref_correct = -1;
      const double ref_loss = cpu::softmax_xent(ref.data(), &ref_correct, to_double(logits).data(), labels.data(), B,
                                                C, 1.0 / double(B));
      auto d_logits = to_device(logits);
      auto d_labels = to_device(labels);
      auto d_grad = poisoned<float>(logits.size());
      auto metrics = zero_metrics();
      cuda::softmax_xent(d_grad.data(), metrics.data(), d_logits.data(), d_labels.data(), B, C, 1.0f / float(B),
                         stream.get());
      expect_within(to_host(d_grad), ref, softmax_bounds(ref, 2 * C + 12), "dlogits");
      cuda::Metrics m = read_metrics(metrics);
      CHECK(m.loss_sum == doctest::Approx(ref_loss).epsilon(1e-5));
      CHECK(m.correct == (unsigned long long)ref_correct);
      // The accumulators add up across calls (the engine reads them once per epoch); no gradient.
      cuda::softmax_xent(nullptr, metrics.data(), d_logits.data(), d_labels.data(), B, C, 0.0f, stream.get());
      m = read_metrics(metrics);
      CHECK(m.loss_sum == doctest::Approx(2 * ref_loss).epsilon(1e-5));
      CHECK(m.correct == 2ull * (unsigned long long)ref_correct);
    }
  }
}

TEST_CASE("softmax_xent: a confident row keeps the label's small gradient and loss (no cancellation)") {
  // Two classes, label = the larger logit, gaps 5 .. 40: p_y = 1 − e with e from 7e-3 down to 4e-18.
  // p_y − 1 in float loses e (entirely below 6e-8); the kernel must give −e and log1p(e) to a few u.
  Stream stream;
  for (float gap : {5.0f, 12.0f, 17.5f, 25.0f, 40.0f}) {
    INFO("gap=", gap);
    const std::vector<float> logits{1.0f + gap, 1.0f};
    const std::vector<uint8_t> labels{0};
    std::vector<double> ref(2);
    int ref_correct = -1;
    const double ref_loss =
        cpu::softmax_xent(ref.data(), &ref_correct, to_double(logits).data(), labels.data(), 1, 2, 1.0);
    const double e = std::exp(-double(gap));
    CHECK(ref[0] == doctest::Approx(-e / (1 + e)).epsilon(1e-12));  // the reference itself is exact
    CHECK(ref_loss == doctest::Approx(std::log1p(e)).epsilon(1e-12).scale(0));
    auto d_logits = to_device(logits);
    auto d_labels = to_device(labels);
    auto d_grad = poisoned<float>(2);
    auto metrics = zero_metrics();
    cuda::softmax_xent(d_grad.data(), metrics.data(), d_logits.data(), d_labels.data(), 1, 2, 1.0f, stream.get());
    expect_within(to_host(d_grad), ref, softmax_bounds(ref, 2 * 2 + 12), "dlogits");
    const cuda::Metrics m = read_metrics(metrics);
    CHECK(std::fabs(m.loss_sum - ref_loss) <= (2 + 6) * kUnitRoundoff * ref_loss);
    CHECK(m.correct == 1ull);
  }
}

TEST_CASE("softmax_xent: the metric sums are bitwise reproducible") {
  Stream stream;
  const int B = 4096, C = 10;
  const std::vector<float> logits = random_vector(std::size_t(B) * C, 77, -4, 4);
  const std::vector<uint8_t> labels = random_bytes(std::size_t(B), 78, 0, C - 1);
  auto d_logits = to_device(logits);
  auto d_labels = to_device(labels);
  auto a = zero_metrics(), b = zero_metrics();
  cuda::softmax_xent(nullptr, a.data(), d_logits.data(), d_labels.data(), B, C, 0.0f, stream.get());
  cuda::softmax_xent(nullptr, b.data(), d_logits.data(), d_labels.data(), B, C, 0.0f, stream.get());
  const cuda::Metrics ma = read_metrics(a), mb = read_metrics(b);
  CHECK(std::memcmp(&ma.loss_sum, &mb.loss_sum, sizeof(double)) == 0);
  CHECK(ma.correct == mb.correct);
}

TEST_CASE("softmax equals cpu::softmax (and cuDNN's softmax forward)") {
  Stream stream;
#if defined(MNIST_HAVE_CUDNN)
  CudnnHandle dnn;
#endif
  for (const cases::OpCase& c : test_cases(cases::Op::Softmax)) {
    INFO(c.name());
    const int B = c.rows, C = c.out;
    const std::vector<float> logits = random_vector(std::size_t(B) * C, 41 + B * C, -10, 10);
    std::vector<double> ref(logits.size());
    cpu::softmax(ref.data(), to_double(logits).data(), B, C);
    auto d_logits = to_device(logits);
    auto mine = poisoned<float>(logits.size());
    cuda::softmax(mine.data(), d_logits.data(), B, C, stream.get());
    const std::vector<float> got = to_host(mine);
    expect_within(got, ref, softmax_bounds(ref, C + 11), "probs");
#if defined(MNIST_HAVE_CUDNN)
    auto theirs = poisoned<float>(logits.size());
    cudnn::softmax(dnn.get(), theirs.data(), d_logits.data(), B, C, stream.get());
    // cuDNN need not fold the rounding of z − zmax back in: up to |z − zmax|·u = 20u more (logits in
    // [-10, 10]), on top of both sides' (C + 11)u.
    expect_close(got, to_host(theirs), (20 + 2 * (C + 11)) * kUnitRoundoff, "probs vs cuDNN");
#endif
  }
}

}  // namespace
}  // namespace mnist::test
