// The head kernel (kernels/head.cuh: the last layer's forward, softmax + cross-entropy and backward
// in one launch) against the CPU reference at fp32, tf32 and bf16, every output element checked,
// and against the separate kernels it replaces, bit for bit where the arithmetic is the same.
//
// Tolerances (tests/gpu/head_ref.hpp derives them): with the GEMM inputs rounded as the kernel
// rounds them every product is exact, so each element may differ from the double reference only by
// its float32 sum, γ_n·Σ|terms| for a sum of n terms (+ the epilogue's rounding). dZ (dlogits)
// is the kernel's own, checked against cpu::softmax_xent with test_softmax.cu's (2C + 12)·u bound,
// and the GEMM references are built from it (see head_ref.hpp why). Bitwise, against the launches
// the engine ran before: loss sum, hit count and dZ equal cuda::softmax_xent's over the head's
// logits (the same xent_row and the same order of the sums); at fp32 the logits equal
// cuda::dense_forward's and dA cuda::dense_backward_data's (the same FMA chains). dW/db have no
// bitwise twin (the graph path splits the rows at other points): the bound above.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/dense.cuh"
#include "kernels/head.cuh"
#include "kernels/metrics.cuh"
#include "kernels/softmax_xent.cuh"
#include "layers/cpu_ops.hpp"
#include "runtime/error.hpp"
#include "tests/gpu/gpu_test.cuh"
#include "tests/gpu/head_ref.hpp"

namespace mnist::test {
namespace {

struct HeadShape {
  int rows, in, classes;
};

// The model's head (64 -> 10) at one row, a 32-row group plus tails, and the batch-4096 step
// (64 blocks of 64 rows, the cross-block reduction); odd widths: one input, 33 inputs to 7
// classes, 90 inputs to the most classes (32), 129 inputs to 2; and 2080 x 90 -> 32, the one
// whose blocks run several chunks (64 rows a block, chunks of 32: the pool holds no more), so that
// a later chunk's labels, read by index, are checked too. Quick mode (emulation, sanitizers): the
// odd widths at 1 and 129 rows.
std::vector<HeadShape> head_shapes() {
  std::vector<HeadShape> v{{1, 64, 10}, {129, 64, 10}, {4096, 64, 10}, {2080, 90, 32}};
  const std::vector<int> rows = quick_tests() ? std::vector<int>{1, 129} : std::vector<int>{1, 129, 1000};
  for (int B : rows)
    for (const HeadShape& s : {HeadShape{0, 1, 3}, HeadShape{0, 33, 7}, HeadShape{0, 90, 32}, HeadShape{0, 129, 2}})
      v.push_back({B, s.in, s.classes});
  return v;
}

const char* prec_name(GemmPrecision p) {
  return p == GemmPrecision::TF32 ? "tf32" : p == GemmPrecision::BF16 ? "bf16" : "fp32";
}

// The head's scratch for up to `rows` rows, as the engine holds it: slots and partials poisoned
// (each launch must write what it reads), the counter 0.
struct HeadBuffers {
  DeviceBuffer<cuda::Metrics> slots;
  DeviceBuffer<unsigned> done;
  DeviceBuffer<float> partial;
  HeadBuffers(int rows, int K, int N)
      : slots(poisoned<cuda::Metrics>(std::size_t(cuda::head_xent_slots(rows)))),
        done(to_device(std::vector<unsigned>{0u})),
        partial(poisoned<float>(cuda::head_partial_floats(rows, K, N))) {}
  cuda::XentScratch xent() { return {slots.data(), done.data(), int(slots.size())}; }
  cuda::HeadScratch scratch() { return {xent(), partial.data(), partial.size()}; }
  unsigned counter() const { return to_host(done)[0]; }
};

// softmax_xent's scratch for `rows` rows (the launch the head replaces).
struct SoftmaxBuffers {
  DeviceBuffer<cuda::Metrics> blocks;
  DeviceBuffer<unsigned> done;
  explicit SoftmaxBuffers(int rows)
      : blocks(poisoned<cuda::Metrics>(std::size_t(cuda::softmax_xent_blocks(rows)))),
        done(to_device(std::vector<unsigned>{0u})) {}
  cuda::XentScratch scratch() { return {blocks.data(), done.data(), int(blocks.size())}; }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// A hidden layer's output as the head sees it: ReLU'd (about half exactly 0) and dropout-scaled.
std::vector<float> activation(std::size_t n, uint64_t seed) {
  std::vector<float> a = random_vector(n, seed, -1.0, 1.0);
  for (float& x : a) x = x > 0.0f ? x * 1.25f : 0.0f;
  return a;
}

TEST_CASE("head_train equals the CPU reference at fp32/tf32/bf16 and the separate kernels bit for bit") {
  Stream stream;
  const float mask_scale = 1.25f;
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
    for (const HeadShape& s : head_shapes()) {
      const int B = s.rows, K = s.in, N = s.classes;
      INFO("rows=", B, " in=", K, " classes=", N, " ", prec_name(prec));
      REQUIRE(cuda::head_supported(K, N));
      const auto A = activation(std::size_t(B) * K, 101 + B + K);
      const auto W = random_vector(std::size_t(N) * K, 102 + K, -0.5, 0.5);
      const auto b = random_vector(std::size_t(N), 103, -0.5, 0.5);
      const auto labels = random_bytes(std::size_t(B), 104 + B, 0, N - 1);
      auto d_A = to_device(A), d_W = to_device(W), d_b = to_device(b);
      auto dlab = to_device(labels);
      auto gW = poisoned<float>(W.size()), gb = poisoned<float>(b.size()), gA = poisoned<float>(A.size());
      auto logits = poisoned<float>(std::size_t(B) * N), dlogits = poisoned<float>(std::size_t(B) * N);
      auto metrics = to_device(std::vector<cuda::Metrics>(1));
      HeadBuffers hb(B, K, N);
      cuda::head_train(gW.data(), gb.data(), gA.data(), metrics.data(), hb.scratch(), d_A.data(), d_W.data(),
                       d_b.data(), dlab.data(), mask_scale, 1.0f / float(B), B, K, N, stream.get(), prec,
                       logits.data(), dlogits.data());
      const std::vector<float> z = to_host(logits), dz = to_host(dlogits);
      const cuda::Metrics m = to_host(metrics)[0];
      CHECK(hb.counter() == 0u);

      // Every GEMM output against the double reference of the same rounded inputs.
      const HeadReference ref = head_reference(A, W, b, dz, B, K, N, mask_scale, prec);
      expect_within(z, ref.logits, ref.logits_bound, "logits");
      expect_within(to_host(gA), ref.dA, ref.dA_bound, "dA");
      expect_within(to_host(gW), ref.dW, ref.dW_bound, "dW");
      expect_within(to_host(gb), ref.db, ref.db_bound, "db");

      // dZ, loss and hits: cpu::softmax_xent on the head's logits (test_softmax.cu's bounds).
      std::vector<double> dz_ref(dz.size());
      int correct = -1;
      const double loss = cpu::softmax_xent(dz_ref.data(), &correct, to_double(z).data(), labels.data(), B, N,
                                            1.0 / double(B));
      std::vector<double> dz_bound(dz_ref.size());
      for (std::size_t i = 0; i < dz_ref.size(); ++i)
        dz_bound[i] = (2 * N + 12) * kUnitRoundoff * std::fabs(dz_ref[i]) + std::ldexp(1.0, -126);
      expect_within(dz, dz_ref, dz_bound, "dlogits vs cpu");
      CHECK(std::fabs(m.loss_sum - loss) <= 1e-5 * loss);
      CHECK(m.correct == (unsigned long long)correct);

      // The launches it replaces: softmax_xent over the same logits gives the same bits.
      SoftmaxBuffers xb(B);
      auto m2 = to_device(std::vector<cuda::Metrics>(1));
      auto dz2 = poisoned<float>(dz.size());
      cuda::softmax_xent(dz2.data(), m2.data(), xb.scratch(), logits.data(), dlab.data(), B, N, 1.0f / float(B),
                         stream.get());
      const cuda::Metrics x = to_host(m2)[0];
      CHECK(bitwise_equal(to_host(dz2), dz));
      CHECK(same_bits(m.loss_sum, x.loss_sum));
      CHECK(m.correct == x.correct);
      if (prec == GemmPrecision::FP32) {  // the same FMA chains as the SIMT GEMMs
        auto y = poisoned<float>(z.size());
        cuda::dense_forward(y.data(), d_A.data(), d_W.data(), d_b.data(), B, K, N, false, stream.get());
        CHECK(bitwise_equal(to_host(y), z));
        auto dx = poisoned<float>(A.size());
        cuda::dense_backward_data(dx.data(), dlogits.data(), d_W.data(), d_A.data(), mask_scale, B, K, N,
                                  stream.get());
        CHECK(bitwise_equal(to_host(dx), to_host(gA)));
      }

      // A second launch (a graph's next replay) adds the same sums; the gradients are rewritten
      // with the same bits; no dA asked: dW and db alone. Its labels are read by index, as the
      // training step reads them (kernels/labels.cuh): the same labels, so the same bits.
      const DeviceLabels by_index(labels, 105 + B);
      auto gW2 = poisoned<float>(W.size()), gb2 = poisoned<float>(b.size());
      cuda::head_train(gW2.data(), gb2.data(), nullptr, metrics.data(), hb.scratch(), d_A.data(), d_W.data(),
                       d_b.data(), by_index.input(), mask_scale, 1.0f / float(B), B, K, N, stream.get(), prec);
      const cuda::Metrics m3 = to_host(metrics)[0];
      CHECK(same_bits(m3.loss_sum, m.loss_sum + m.loss_sum));
      CHECK(m3.correct == 2 * m.correct);
      CHECK(bitwise_equal(to_host(gW2), to_host(gW)));
      CHECK(bitwise_equal(to_host(gb2), to_host(gb)));
      CHECK(hb.counter() == 0u);

      // Evaluation: the same forward and sums, no gradient.
      auto me = to_device(std::vector<cuda::Metrics>(1));
      auto ze = poisoned<float>(z.size());
      cuda::head_evaluate(me.data(), hb.xent(), d_A.data(), d_W.data(), d_b.data(), dlab.data(), B, K, N,
                          stream.get(), prec, ze.data());
      const cuda::Metrics e = to_host(me)[0];
      CHECK(bitwise_equal(to_host(ze), z));
      CHECK(same_bits(e.loss_sum, m.loss_sum));
      CHECK(e.correct == m.correct);
      CHECK(hb.counter() == 0u);
      auto mi = to_device(std::vector<cuda::Metrics>(1));  // and with the labels by index
      cuda::head_evaluate(mi.data(), hb.xent(), d_A.data(), d_W.data(), d_b.data(), by_index.input(), B, K, N,
                          stream.get(), prec);
      const cuda::Metrics ei = to_host(mi)[0];
      CHECK(same_bits(ei.loss_sum, m.loss_sum));
      CHECK(ei.correct == m.correct);
    }
}

TEST_CASE("head: shapes it cannot hold and scratches too small are refused") {
  Stream stream;
  CHECK(cuda::head_supported(64, 10));
  CHECK(cuda::head_supported(128, 10));
  CHECK(cuda::head_supported(202, 10));  // the shared-memory plan's edge (kernels/head.cuh)
  CHECK_FALSE(cuda::head_supported(203, 10));
  CHECK(cuda::head_supported(95, 32));
  CHECK_FALSE(cuda::head_supported(96, 32));
  CHECK_FALSE(cuda::head_supported(64, 33));  // more classes than a row's thread holds
  CHECK_FALSE(cuda::head_supported(784, 10));  // wider than the shared-memory plan
  CHECK_FALSE(cuda::head_supported(64, 0));
  const int B = 129, K = 64, N = 10;
  auto A = to_device(activation(std::size_t(B) * K, 7)), W = to_device(random_vector(std::size_t(N) * K, 8));
  auto b = to_device(random_vector(std::size_t(N), 9));
  auto labels = to_device(random_bytes(std::size_t(B), 10, 0, N - 1));
  auto dW = poisoned<float>(std::size_t(N) * K), db = poisoned<float>(std::size_t(N));
  auto metrics = to_device(std::vector<cuda::Metrics>(1));
  HeadBuffers small(B - 32, K, N), enough(B, K, N);
  CHECK_THROWS_AS(cuda::head_train(dW.data(), db.data(), nullptr, metrics.data(), {}, A.data(), W.data(), b.data(),
                                   labels.data(), 1.0f, 1.0f / B, B, K, N, stream.get()),
                  Error);
  CHECK_THROWS_AS(cuda::head_train(dW.data(), db.data(), nullptr, metrics.data(), small.scratch(), A.data(), W.data(),
                                   b.data(), labels.data(), 1.0f, 1.0f / B, B, K, N, stream.get()),
                  Error);
  CHECK_THROWS_AS(cuda::head_evaluate(metrics.data(), small.xent(), A.data(), W.data(), b.data(), labels.data(), B, K,
                                      N, stream.get()),
                  Error);
  CHECK_THROWS_AS(cuda::head_train(dW.data(), db.data(), nullptr, metrics.data(), enough.scratch(), A.data(),
                                   W.data(), b.data(), labels.data(), 1.0f, 1.0f / B, B, 784, N, stream.get()),
                  Error);
  cuda::head_train(dW.data(), db.data(), nullptr, metrics.data(), enough.scratch(), A.data(), W.data(), b.data(),
                   labels.data(), 1.0f, 1.0f / B, B, K, N, stream.get());
  CHECK(to_host(metrics)[0].loss_sum > 0);
  CHECK(std::isfinite(to_host(dW)[0]));
}

}  // namespace
}  // namespace mnist::test
