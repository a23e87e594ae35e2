// The fused softmax + cross-entropy and the softmax against the CPU twins computed in double, and
// the softmax against cuDNN.
//
// Tolerances: each probability is exp(z - max) / Σ exp, a handful of correctly rounded (to
// ~1-2 ulp) float operations, so each element is within ~1e-6 relative of the exact value and the
// normalised error of a whole tensor is below that: 1e-6 for probabilities and the gradient
// (which is (p - onehot)/B: the same relative error). The loss sum adds B float row losses
// (log-sum-exp, each to ~1e-6 relative) in double: 1e-5 relative. The correct count compares the
// same float logits on both sides and must match exactly.
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
      expect_close(to_host(d_grad), ref, 1e-6, "dlogits");
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
    expect_close(got, ref, 1e-6, "probs");
#if defined(MNIST_HAVE_CUDNN)
    auto theirs = poisoned<float>(logits.size());
    cudnn::softmax(dnn.get(), theirs.data(), d_logits.data(), B, C, stream.get());
    expect_close(got, to_host(theirs), 1e-6, "probs vs cuDNN");
#endif
  }
}

}  // namespace
}  // namespace mnist::test
