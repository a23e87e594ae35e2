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
//
// The metric sums: softmax_xent runs 256 rows a block and adds the rows' losses in the order its
// header states (kernels/softmax_xent.cuh), whatever the order in which the blocks finish. The
// multi-block case takes each block's sum from a launch over that block's rows alone and each
// row's loss from a one-row launch (one block: 0 + S = S), writes the stated order out on the host
// (xent_order.hpp) and requires the B-row launch's sum bit for bit, so any other order (blocks
// added as they finish, another tree) fails; the completion counter must be back at 0 after every
// launch, and repeated launches (a graph's replays) must add up exactly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/metrics.cuh"
#include "kernels/softmax_xent.cuh"
#include "layers/cpu_ops.hpp"
#include "runtime/error.hpp"
#include "tests/gpu/gpu_test.cuh"
#include "tests/gpu/xent_order.hpp"

#if defined(MNIST_HAVE_CUDNN)
#include "kernels/cudnn_ref.cuh"
#include "runtime/cudnn_handle.cuh"
#endif

namespace mnist::test {
namespace {

cuda::Metrics read_metrics(const DeviceBuffer<cuda::Metrics>& m) { return to_host(m)[0]; }

DeviceBuffer<cuda::Metrics> zero_metrics(std::size_t n = 1) { return to_device(std::vector<cuda::Metrics>(n)); }

// softmax_xent's scratch for up to `rows` rows, as the engine holds it: block slots poisoned (each
// launch must write its slots before reading them), the counter 0.
struct XentBuffers {
  DeviceBuffer<cuda::Metrics> blocks;
  DeviceBuffer<unsigned> done;
  explicit XentBuffers(int rows)
      : blocks(poisoned<cuda::Metrics>(std::size_t(cuda::softmax_xent_blocks(rows)))),
        done(to_device(std::vector<unsigned>{0u})) {}
  cuda::XentScratch scratch() { return {blocks.data(), done.data(), int(blocks.size())}; }
  unsigned counter() const { return to_host(done)[0]; }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

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
      XentBuffers xb(B);
      cuda::softmax_xent(d_grad.data(), metrics.data(), xb.scratch(), d_logits.data(), d_labels.data(), B, C,
                         1.0f / float(B), stream.get());
      expect_within(to_host(d_grad), ref, softmax_bounds(ref, 2 * C + 12), "dlogits");
      cuda::Metrics m = read_metrics(metrics);
      CHECK(m.loss_sum == doctest::Approx(ref_loss).epsilon(1e-5));
      CHECK(m.correct == (unsigned long long)ref_correct);
      {  // The labels read by index, as the training step reads them (kernels/labels.cuh): the same bits.
        const DeviceLabels by_index(labels, 33 + B);
        auto g2 = poisoned<float>(logits.size());
        auto m2 = zero_metrics();
        cuda::softmax_xent(g2.data(), m2.data(), xb.scratch(), d_logits.data(), by_index.input(), B, C,
                           1.0f / float(B), stream.get());
        CHECK(bitwise_equal(to_host(g2), to_host(d_grad)));
        const cuda::Metrics mi = read_metrics(m2);
        CHECK(same_bits(mi.loss_sum, m.loss_sum));
        CHECK(mi.correct == m.correct);
        CHECK(xb.counter() == 0u);
      }
      // The accumulators add up across calls (the engine reads them once per epoch); no gradient.
      cuda::softmax_xent(nullptr, metrics.data(), xb.scratch(), d_logits.data(), d_labels.data(), B, C, 0.0f,
                         stream.get());
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
    cuda::softmax_xent(d_grad.data(), metrics.data(), {}, d_logits.data(), d_labels.data(), 1, 2, 1.0f,
                       stream.get());  // one block: no scratch
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
  XentBuffers xb(B);
  cuda::softmax_xent(nullptr, a.data(), xb.scratch(), d_logits.data(), d_labels.data(), B, C, 0.0f, stream.get());
  cuda::softmax_xent(nullptr, b.data(), xb.scratch(), d_logits.data(), d_labels.data(), B, C, 0.0f, stream.get());
  const cuda::Metrics ma = read_metrics(a), mb = read_metrics(b);
  CHECK(std::memcmp(&ma.loss_sum, &mb.loss_sum, sizeof(double)) == 0);
  CHECK(ma.correct == mb.correct);
}

TEST_CASE("softmax_xent over several blocks: every dlogit, the sums in the stated order bit for bit, the counter") {
  Stream stream;
  // 1 row; one block plus one row; 1000 = 3 full blocks + 232; the batch-4096 step (16 blocks).
  // Quick mode (the emulation, sanitizers): 1 row, 1 and 2 blocks, and no one-row launches (below).
  const bool quick = quick_tests();
  const std::vector<int> sizes = quick ? std::vector<int>{1, 129, 300} : std::vector<int>{1, 129, 1000, 4096};
  const int R = cuda::kXentRowsPerBlock;
  for (int B : sizes)
    for (int C : {10, 33}) {
      INFO("rows=", B, " classes=", C);
      const int blocks = cuda::softmax_xent_blocks(B);
      // Every third row confident (the label's logit 3 .. 30 above the rest): losses from 1e-13 up
      // to 40, so the double sums round (float losses of one magnitude add exactly in double, in
      // any order). A few block sums can still round alike in both orders: the first seed whose
      // data tells block order from reversed is taken (3+ blocks; with 2, 0 + S0 + S1 = 0 + S1 + S0).
      // Each block's sum S_b comes from a launch over that block's rows alone (one block: 0 + S_b).
      std::vector<float> logits;
      std::vector<uint8_t> labels;
      DeviceBuffer<float> d_logits;
      DeviceBuffer<uint8_t> d_labels;
      std::vector<double> S;
      double expected = 0;
      bool sensitive = blocks <= 2;
      for (uint64_t seed = 51; seed < 71; ++seed) {
        logits = random_vector(std::size_t(B) * C, seed + B + C, -20, 20);
        labels = random_bytes(std::size_t(B), seed + 1 + B, 0, C - 1);
        const std::vector<float> gap = random_vector(std::size_t(B), seed + 2 + B, 3, 30);
        for (int r = 0; r < B; r += 3) {
          float* row = logits.data() + std::size_t(r) * C;
          row[labels[std::size_t(r)]] = *std::max_element(row, row + C) + gap[std::size_t(r)];
        }
        d_logits = to_device(logits);
        d_labels = to_device(labels);
        auto block_metrics = zero_metrics(std::size_t(blocks));
        for (int b = 0; b < blocks; ++b) {
          const int first = b * R, rows = std::min(R, B - first);
          cuda::softmax_xent(nullptr, block_metrics.data() + b, {}, d_logits.data() + std::size_t(first) * C,
                             d_labels.data() + first, rows, C, 0.0f, stream.get());
        }
        S.clear();
        for (const cuda::Metrics& m : to_host(block_metrics)) S.push_back(m.loss_sum);
        expected = xent_launch_sum(S);
        if (blocks <= 2) break;
        if (!same_bits(expected, xent_launch_sum(S, true))) {
          sensitive = true;
          break;
        }
      }
      REQUIRE(sensitive);
      std::vector<double> ref(logits.size());
      int ref_correct = -1;
      const double ref_loss = cpu::softmax_xent(ref.data(), &ref_correct, to_double(logits).data(), labels.data(), B,
                                                C, 1.0 / double(B));

      XentBuffers xb(B);
      auto metrics = zero_metrics();
      auto d_grad = poisoned<float>(logits.size());
      cuda::softmax_xent(d_grad.data(), metrics.data(), xb.scratch(), d_logits.data(), d_labels.data(), B, C,
                         1.0f / float(B), stream.get());
      const std::vector<float> grad = to_host(d_grad);
      expect_within(grad, ref, softmax_bounds(ref, 2 * C + 12), "dlogits");
      cuda::Metrics m = read_metrics(metrics);
      INFO("loss ", m.loss_sum, " expected ", expected, " cpu ", ref_loss);
      CHECK(same_bits(m.loss_sum, expected));
      CHECK(std::fabs(m.loss_sum - ref_loss) <= 1e-5 * ref_loss);  // (C + 6)u per row, see the header
      CHECK(m.correct == (unsigned long long)ref_correct);
      CHECK(xb.counter() == 0u);

      // Replays into one accumulator (as the captured step adds every batch): ((0 + T) + T) + T.
      auto acc = zero_metrics();
      double want = 0;
      for (int k = 1; k <= 3; ++k) {
        cuda::softmax_xent(nullptr, acc.data(), xb.scratch(), d_logits.data(), d_labels.data(), B, C, 0.0f,
                           stream.get());
        want += expected;
        m = read_metrics(acc);
        CHECK(same_bits(m.loss_sum, want));
        CHECK(m.correct == (unsigned long long)k * (unsigned long long)ref_correct);
        CHECK(xb.counter() == 0u);
      }

      // The order inside a block, from one-row launches (one block: 0 + l = l): each block sum is
      // the stated tree over its rows' losses, and a row's gradient does not depend on its block.
      // B launches: not in quick mode, where a sanitizer makes each launch cost seconds.
      if (quick) continue;
      auto row_metrics = zero_metrics(std::size_t(B));
      auto row_grad = poisoned<float>(logits.size());
      for (int r = 0; r < B; ++r) {
        const std::size_t o = std::size_t(r) * std::size_t(C);
        cuda::softmax_xent(row_grad.data() + o, row_metrics.data() + r, {}, d_logits.data() + o, d_labels.data() + r,
                           1, C, 1.0f / float(B), stream.get());
      }
      std::vector<double> row_loss;
      for (const cuda::Metrics& rm : to_host(row_metrics)) row_loss.push_back(rm.loss_sum);
      const std::vector<double> tree = xent_block_sums(row_loss, R);
      REQUIRE(tree.size() == S.size());
      for (std::size_t b = 0; b < S.size(); ++b) CHECK_MESSAGE(same_bits(tree[b], S[b]), "block " << b);
      CHECK(bitwise_equal(grad, to_host(row_grad)));
    }
}

TEST_CASE("softmax_xent: a launch of several blocks without a large enough scratch is refused") {
  Stream stream;
  const int B = cuda::kXentRowsPerBlock + 1, C = 10;
  auto d_logits = to_device(random_vector(std::size_t(B) * C, 61));
  auto d_labels = to_device(random_bytes(std::size_t(B), 62, 0, C - 1));
  auto metrics = zero_metrics();
  CHECK_THROWS_AS(cuda::softmax_xent(nullptr, metrics.data(), {}, d_logits.data(), d_labels.data(), B, C, 0.0f,
                                     stream.get()),
                  Error);
  XentBuffers small(B - 1);  // one slot; two are needed
  CHECK_THROWS_AS(cuda::softmax_xent(nullptr, metrics.data(), small.scratch(), d_logits.data(), d_labels.data(), B, C,
                                     0.0f, stream.get()),
                  Error);
  XentBuffers enough(B);
  cuda::softmax_xent(nullptr, metrics.data(), enough.scratch(), d_logits.data(), d_labels.data(), B, C, 0.0f,
                     stream.get());
  CHECK(read_metrics(metrics).loss_sum > 0);
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
