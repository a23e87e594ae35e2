// The CPU reference ops: finite-difference gradient checks in double, Adam against hand-computed
// steps, GEMMs against naive loops, and the counter-based RNG against published test vectors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include <omp.h>

#include "helpers.hpp"
#include "kernels/philox.hpp"
#include "layers/cpu_ops.hpp"

using namespace mnist;
using mnist::test::random_vector;

namespace {

// Central difference of f at every element of x; h = 1e-6 in double gives O(h²) ≈ 1e-12
// truncation error and ~1e-10 rounding error relative to O(1) values.
std::vector<double> numeric_grad(std::vector<double>& x, const std::function<double()>& f) {
  const double h = 1e-6;
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

}  // namespace

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors") {
  auto r = rng::philox4x32_10({0, 0, 0, 0}, 0, 0);
  CHECK(r.x == 0x6627e8d5u);
  CHECK(r.y == 0xe169c58du);
  CHECK(r.z == 0xbc57ac4cu);
  CHECK(r.w == 0x9b00dbd8u);
  r = rng::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu);
  CHECK(r.x == 0x408f276du);
  CHECK(r.y == 0x41c83b0eu);
  CHECK(r.z == 0xa20bc7c6u);
  CHECK(r.w == 0x6d5451fdu);
  r = rng::philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, 0xa4093822u, 0x299f31d0u);
  CHECK(r.x == 0xd16cfe09u);
  CHECK(r.y == 0x94fdccebu);
  CHECK(r.z == 0x5001e420u);
  CHECK(r.w == 0x24126ea1u);
}

TEST_CASE("GEMM variants agree with naive triple loops (float and double, odd sizes)") {
  for (auto [M, N, K] : {std::array<int, 3>{1, 1, 1}, {7, 13, 5}, {33, 10, 129}, {128, 64, 128}}) {
    CAPTURE(M);
    CAPTURE(N);
    CAPTURE(K);
    auto A = random_vector<double>(std::size_t(M) * K, 1);
    auto Bnt = random_vector<double>(std::size_t(N) * K, 2);
    auto Bnn = random_vector<double>(std::size_t(K) * N, 3);
    auto At = random_vector<double>(std::size_t(K) * M, 4);
    std::vector<double> ref_nt(std::size_t(M) * N), ref_nn(ref_nt.size()), ref_tn(ref_nt.size());
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < K; ++k) {
          ref_nt[std::size_t(i) * N + j] += A[std::size_t(i) * K + k] * Bnt[std::size_t(j) * K + k];
          ref_nn[std::size_t(i) * N + j] += A[std::size_t(i) * K + k] * Bnn[std::size_t(k) * N + j];
          ref_tn[std::size_t(i) * N + j] += At[std::size_t(k) * M + i] * Bnn[std::size_t(k) * N + j];
        }
    std::vector<double> C(ref_nt.size(), std::nan(""));
    cpu::gemm_nt(C.data(), A.data(), Bnt.data(), M, N, K, false);
    test::expect_close(C, ref_nt, 1e-13, "gemm_nt double");
    cpu::gemm_nn(C.data(), A.data(), Bnn.data(), M, N, K);
    test::expect_close(C, ref_nn, 1e-13, "gemm_nn double");
    cpu::gemm_tn(C.data(), At.data(), Bnn.data(), M, N, K);
    test::expect_close(C, ref_tn, 1e-13, "gemm_tn double");
    // float: K-term sums of O(1) products carry ~sqrt(K)·2^-24 relative error; 1e-5 is ample.
    std::vector<float> Af(A.begin(), A.end()), Bf(Bnt.begin(), Bnt.end()), Cf(C.size(), std::nanf(""));
    cpu::gemm_nt(Cf.data(), Af.data(), Bf.data(), M, N, K, false);
    test::expect_close(Cf, ref_nt, 1e-5, "gemm_nt float");
    cpu::gemm_nt(Cf.data(), Af.data(), Bf.data(), M, N, K, true);  // accumulate: 2x
    std::vector<double> twice(ref_nt);
    for (auto& x : twice) x *= 2;
    test::expect_close(Cf, twice, 1e-5, "gemm_nt float accumulate");
    // gemm_tn on columns [j, j + w) of At (rows lda = M apart): the CPU engine's weight gradient
    // for a thread's share of a layer's units.
    const int j = M / 3, w = M - j - M / 4;
    std::vector<double> Cs(std::size_t(w) * N, std::nan(""));
    cpu::gemm_tn(Cs.data(), At.data() + j, Bnn.data(), w, N, K, M);
    test::expect_close(Cs, std::vector<double>(ref_tn.begin() + std::size_t(j) * N, ref_tn.begin() + std::size_t(j + w) * N),
                       1e-13, "gemm_tn double, a column range");
  }
}

TEST_CASE("column_sums adds a column range of rows in order; relu_backward masks by the output's sign") {
  const int B = 37, N = 19, lda = 23, j = 3;
  auto A = random_vector<float>(std::size_t(B) * lda, 5);
  std::vector<float> s(N, std::nanf(""));
  cpu::column_sums(s.data(), A.data() + j, B, N, lda);
  for (int c = 0; c < N; ++c) {
    float want = 0;
    for (int r = 0; r < B; ++r) want += A[std::size_t(r) * lda + j + c];
    CHECK_MESSAGE(s[std::size_t(c)] == want, "column ", c);  // same order, same bits
  }
  auto Y = random_vector<float>(std::size_t(B) * N, 6), dY = random_vector<float>(Y.size(), 7);
  for (std::size_t i = 0; i < Y.size(); i += 5) Y[i] = 0.0f;  // exact zeros: masked too
  std::vector<float> dZ(Y.size(), std::nanf(""));
  cpu::relu_backward(dZ.data(), dY.data(), Y.data(), Y.size());
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < Y.size(); ++i) wrong += dZ[i] != (Y[i] > 0 ? dY[i] : 0.0f);
  CHECK(wrong == 0);
}

TEST_CASE("dense_forward computes X·Wᵀ + b with and without ReLU") {
  const int B = 5, K = 9, N = 7;
  auto X = random_vector<double>(B * K, 10), W = random_vector<double>(N * K, 11), b = random_vector<double>(N, 12);
  for (bool relu : {false, true}) {
    std::vector<double> Y(B * N, std::nan("")), ref(B * N);
    cpu::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, relu);
    int negatives = 0;
    for (int r = 0; r < B; ++r)
      for (int j = 0; j < N; ++j) {
        double z = b[j];
        for (int k = 0; k < K; ++k) z += X[r * K + k] * W[j * K + k];
        negatives += z < 0;
        ref[r * N + j] = relu ? std::max(z, 0.0) : z;
      }
    REQUIRE(negatives > 0);  // the ReLU case really clips something
    test::expect_close(Y, ref, 1e-14, relu ? "dense+relu" : "dense");
  }
}

TEST_CASE("TF32/BF16 input rounding: nearest, ties away (TF32) / to even (BF16), within half an ulp") {
  // Hand-picked ties and limits (bit patterns: sign | exponent | mantissa).
  CHECK(round_tf32(bits_float(0x3F801000u)) == bits_float(0x3F802000u));    // 1 + 2^-11: tie -> away
  CHECK(round_tf32(-bits_float(0x3F801000u)) == -bits_float(0x3F802000u));  // negative tie -> away
  CHECK(round_tf32(bits_float(0x3F803000u)) == bits_float(0x3F804000u));    // odd kept LSB: still away
  CHECK(round_tf32(bits_float(0x3F800FFFu)) == 1.0f);                       // below the tie
  CHECK(round_bf16(bits_float(0x3F808000u)) == 1.0f);                       // tie, even kept LSB -> down
  CHECK(round_bf16(bits_float(0x3F818000u)) == bits_float(0x3F820000u));    // tie, odd kept LSB -> up
  CHECK(round_bf16(bits_float(0x3F808001u)) == bits_float(0x3F810000u));    // above the tie
  CHECK(std::isinf(round_tf32(3.4028235e38f)));                             // rounds past the format's max
  CHECK(std::isinf(round_bf16(-3.4e38f)));
  CHECK(std::isnan(round_tf32(NAN)));
  CHECK(std::isnan(round_bf16(NAN)));
  CHECK(round_tf32(INFINITY) == INFINITY);
  // Random values: the low bits are cleared and the error is at most half an ulp of the format.
  for (float x : random_vector<float>(10000, 77, -1e4, 1e4)) {
    const float t = round_tf32(x), h = round_bf16(x);
    REQUIRE((float_bits(t) & 0x1FFFu) == 0u);
    REQUIRE((float_bits(h) & 0xFFFFu) == 0u);
    REQUIRE(std::fabs(double(t) - x) <= std::ldexp(std::fabs(double(x)), -11));
    REQUIRE(std::fabs(double(h) - x) <= std::ldexp(std::fabs(double(x)), -8));
  }
}

TEST_CASE("dense_forward/dense_backward with TF32/BF16 round every GEMM input, nothing else") {
  const int B = 6, K = 11, N = 5;
  auto X = random_vector<float>(B * K, 20), W = random_vector<float>(N * K, 21), b = random_vector<float>(N, 22);
  auto dY = random_vector<float>(B * N, 23), Y = random_vector<float>(B * N, 24);
  for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) {
    INFO(std::string(prec == GemmPrecision::TF32 ? "tf32" : "bf16"));
    std::vector<float> Xr(X.size()), Wr(W.size());
    cpu::round_gemm_inputs(Xr.data(), X.data(), X.size(), prec);
    cpu::round_gemm_inputs(Wr.data(), W.data(), W.size(), prec);
    // The precision argument equals an FP32 call on rounded inputs: bitwise (same GEMM calls).
    std::vector<float> Y1(B * N), Y2(B * N);
    cpu::dense_forward(Y1.data(), X.data(), W.data(), b.data(), B, K, N, true, prec);
    cpu::dense_forward(Y2.data(), Xr.data(), Wr.data(), b.data(), B, K, N, true);
    CHECK(Y1 == Y2);
    CHECK(Xr != X);  // the rounding changed something (else this test proves nothing)
    // Backward: dZ = dY ⊙ [Y > 0] rounded; dW, db and dX from the rounded operands.
    std::vector<float> dX1(B * K), dW1(N * K), db1(N), dZ1(B * N), dX2(B * K), dW2(N * K), db2(N), dZ2(B * N);
    cpu::dense_backward(dX1.data(), dW1.data(), db1.data(), dZ1.data(), dY.data(), X.data(), W.data(), Y.data(), B, K,
                        N, true, prec);
    std::vector<float> dYm(B * N);
    for (int i = 0; i < B * N; ++i) dYm[i] = round_input(prec, Y[i] > 0 ? dY[i] : 0.0f);
    cpu::dense_backward(dX2.data(), dW2.data(), db2.data(), dZ2.data(), dYm.data(), Xr.data(), Wr.data(), Y.data(), B,
                        K, N, false);
    CHECK(dW1 == dW2);
    CHECK(db1 == db2);
    CHECK(dX1 == dX2);
    // The caller's inputs are untouched (only copies are rounded).
    CHECK(X == random_vector<float>(B * K, 20));
    CHECK(W == random_vector<float>(N * K, 21));
  }
}

TEST_CASE("dense_backward matches finite differences (double), with and without ReLU") {
  for (auto [B, K, N] : {std::array<int, 3>{4, 6, 5}, {3, 17, 10}}) {
    for (bool relu : {false, true}) {
      CAPTURE(relu);
      auto X = random_vector<double>(std::size_t(B) * K, 20), W = random_vector<double>(std::size_t(N) * K, 21);
      auto b = random_vector<double>(N, 22), G = random_vector<double>(std::size_t(B) * N, 23);
      std::vector<double> Y(std::size_t(B) * N);
      // L = Σ G ⊙ Y, so dL/dY = G.
      auto loss = [&] {
        cpu::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, relu);
        return dot(G, Y);
      };
      loss();
      std::vector<double> dX(X.size(), std::nan("")), dW(W.size(), std::nan("")), db(b.size(), std::nan(""));
      std::vector<double> dZ(Y.size());
      cpu::dense_backward(dX.data(), dW.data(), db.data(), dZ.data(), G.data(), X.data(), W.data(), Y.data(), B, K, N,
                          relu);
      // Analytic vs central differences of an exactly piecewise-linear function: agreement to
      // ~1e-9 unless a perturbation crosses a ReLU kink (probability ~1e-6 per element here).
      test::expect_close(dX, numeric_grad(X, loss), 1e-7, "dX");
      test::expect_close(dW, numeric_grad(W, loss), 1e-7, "dW");
      test::expect_close(db, numeric_grad(b, loss), 1e-7, "db");
    }
  }
}

TEST_CASE("dropout: inverted scaling, fixed mask reproducible, gradient matches finite differences") {
  const std::size_t n = 4000;
  const float p = 0.2f;
  auto X = random_vector<double>(n, 30, 0.5, 1.5);  // strictly positive: a dropped element is exactly 0
  std::vector<double> Y(n, std::nan("")), Y2(n);
  cpu::dropout_forward(Y.data(), X.data(), n, p, 7, 3, 1);
  cpu::dropout_forward(Y2.data(), X.data(), n, p, 7, 3, 1);
  CHECK(Y == Y2);  // a pure function of (seed, step, layer, index)
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (Y[i] != 0) {
      ++kept;
      CHECK(Y[i] == doctest::Approx(X[i] / (1.0 - double(p))).epsilon(1e-12));
    }
  }
  // keep ~ Binomial(4000, 0.8): sd ≈ 25, so ±150 (6 sd) never fails by chance.
  CHECK(std::abs(double(kept) - 0.8 * n) < 150);
  std::vector<double> Y3(n);
  cpu::dropout_forward(Y3.data(), X.data(), n, p, 7, 4, 1);  // another step: another mask
  CHECK(Y3 != Y);
  // The mask is rng::dropout_keep's, element by element (the layout the GPU kernels share), at
  // lengths that end inside a Philox block of 4 draws too.
  const uint32_t thr = rng::dropout_threshold(p);
  for (const std::size_t len : {std::size_t(1), std::size_t(3), std::size_t(6), n - 1}) {
    std::vector<double> Z(len, std::nan(""));
    cpu::dropout_forward(Z.data(), X.data(), len, p, 7, 3, 2);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < len; ++i)
      wrong += (Z[i] != 0) != rng::dropout_keep(7, 3, 2, i, thr);
    CHECK_MESSAGE(wrong == 0, len, " elements");
  }
  // A part of the layer's array, [first, first + len): the elements a thread of the CPU engine
  // owns. Starts and ends inside blocks, and lengths with whole groups of 8 blocks (the vectorised
  // draws) between partial blocks; every element against rng::dropout_keep of its own index.
  for (const std::size_t first : {std::size_t(0), std::size_t(1), std::size_t(6), std::size_t(33), std::size_t(100)})
    for (const std::size_t len : {std::size_t(1), std::size_t(2), std::size_t(31), std::size_t(32), std::size_t(67),
                                  n - first}) {
      std::vector<double> Z(len, std::nan(""));
      cpu::dropout_forward(Z.data(), X.data() + first, len, p, 7, 3, 2, first);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < len; ++i) {
        const bool keep = rng::dropout_keep(7, 3, 2, first + i, thr);
        wrong += Z[i] != (keep ? X[first + i] * (1.0 / (1.0 - double(p))) : 0.0);  // the op's scale, bitwise
      }
      CHECK_MESSAGE(wrong == 0, "elements [", first, ", ", first + len, ")");
    }

  auto G = random_vector<double>(n, 31);
  auto loss = [&] {
    cpu::dropout_forward(Y.data(), X.data(), n, p, 7, 3, 1);
    return dot(G, Y);
  };
  std::vector<double> dX(n, std::nan(""));
  cpu::dropout_backward(dX.data(), G.data(), n, p, 7, 3, 1);
  test::expect_close(dX, numeric_grad(X, loss), 1e-8, "dropout dX");
}

TEST_CASE("relu_dropout_backward: from the dropout's output alone, dropout_backward then relu_backward bitwise") {
  // The CPU engine's backward through a hidden layer's ReLU and the dropout after it: D > 0 exactly
  // where both passed the element, so the mask need not be drawn again. Pre-activations of both
  // signs, with exact zeros, and several rates; every element against the two-op form.
  const std::size_t n = 3001;
  auto Z = random_vector<float>(n, 40);
  for (std::size_t i = 0; i < n; i += 7) Z[i] = 0.0f;
  auto dD = random_vector<float>(n, 41);
  std::vector<float> Y(n), D(n);
  for (std::size_t i = 0; i < n; ++i) Y[i] = std::max(Z[i], 0.0f);  // the hidden layer's ReLU
  for (const float p : {0.1f, 0.2f, 0.5f, 0.9f}) {
    cpu::dropout_forward(D.data(), Y.data(), n, p, 11, 5, 1);
    std::vector<float> want(n, std::nanf("")), got(n, std::nanf(""));
    cpu::dropout_backward(want.data(), dD.data(), n, p, 11, 5, 1);
    cpu::relu_backward(want.data(), want.data(), Y.data(), n);
    const float scale = 1.0f / (1.0f - p);
    cpu::relu_dropout_backward(got.data(), dD.data(), D.data(), n, scale);
    std::size_t wrong = 0, passed = 0;
    for (std::size_t i = 0; i < n; ++i) {
      wrong += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
      passed += want[i] != 0.0f;
    }
    CHECK_MESSAGE(wrong == 0, "p = ", p);
    CHECK_MESSAGE(passed > 0, "p = ", p);  // (not all masked: the comparison means something)
    // In place, as the engine calls it.
    std::vector<float> inplace = dD;
    cpu::relu_dropout_backward(inplace.data(), inplace.data(), D.data(), n, scale);
    CHECK_MESSAGE(inplace == got, "p = ", p, " in place");
  }
}

TEST_CASE("softmax_xent: loss, correct count and gradient match finite differences") {
  const int B = 6, C = 10;
  auto Z = random_vector<double>(B * C, 40, -3, 3);
  std::vector<uint8_t> y{3, 0, 9, 9, 5, 1};
  auto mean_loss = [&] { return cpu::softmax_xent<double>(nullptr, nullptr, Z.data(), y.data(), B, C, 0.0) / B; };
  std::vector<double> d(Z.size(), std::nan(""));
  int correct = -1;
  const double sum = cpu::softmax_xent<double>(d.data(), &correct, Z.data(), y.data(), B, C, 1.0 / B);
  double ref = 0;
  int ref_correct = 0;
  for (int r = 0; r < B; ++r) {
    double s = 0;
    for (int j = 0; j < C; ++j) s += std::exp(Z[r * C + j]);
    ref += -std::log(std::exp(Z[r * C + y[r]]) / s);
    ref_correct += int(std::max_element(&Z[r * C], &Z[r * C] + C) - &Z[r * C]) == y[r];
  }
  CHECK(sum == doctest::Approx(ref).epsilon(1e-12));
  CHECK(correct == ref_correct);
  test::expect_close(d, numeric_grad(Z, mean_loss), 1e-8, "dlogits");
}

TEST_CASE("softmax_xent_rows: each row's loss and hit, summing to softmax_xent's in row order") {
  const int B = 41, C = 10;
  auto Z = random_vector<float>(std::size_t(B) * C, 41, -6, 6);
  std::vector<uint8_t> y(B);
  for (int r = 0; r < B; ++r) y[std::size_t(r)] = uint8_t((r * 7) % C);
  std::vector<float> d_all(Z.size(), std::nanf("")), d_rows(Z.size(), std::nanf(""));
  int hits = -1;
  const double sum = cpu::softmax_xent(d_all.data(), &hits, Z.data(), y.data(), B, C, 1.0f / B);
  std::vector<double> loss(B, std::nan(""));
  std::vector<uint8_t> hit(B, 7);
  cpu::softmax_xent_rows(d_rows.data(), loss.data(), hit.data(), Z.data(), y.data(), B, C, 1.0f / B);
  double row_sum = 0;
  int row_hits = 0;
  for (int r = 0; r < B; ++r) {
    int h = -1;
    const double one = cpu::softmax_xent<float>(nullptr, &h, Z.data() + std::size_t(r) * C, y.data() + r, 1, C, 0.0f);
    CHECK(loss[std::size_t(r)] == one);
    CHECK(int(hit[std::size_t(r)]) == h);
    row_sum += loss[std::size_t(r)];
    row_hits += hit[std::size_t(r)];
  }
  CHECK(row_sum == sum);
  CHECK(row_hits == hits);
  CHECK(hits > 0);
  CHECK(d_rows == d_all);
}

TEST_CASE("softmax_xent is numerically stable for huge logits") {
  std::vector<float> Z{1000.f, -1000.f, 0.f, 3000.f, 2999.f, 2998.f};
  std::vector<uint8_t> y{0, 1};
  std::vector<float> d(6);
  int correct = 0;
  const double loss = cpu::softmax_xent<float>(d.data(), &correct, Z.data(), y.data(), 2, 3, 0.5f);
  CHECK(std::isfinite(loss));
  // row 0: loss ≈ 0; row 1: loss = log(1 + e^-1 + e^-2) + 1
  CHECK(loss == doctest::Approx(std::log(1 + std::exp(-1.0) + std::exp(-2.0)) + 1.0).epsilon(1e-5));
  CHECK(correct == 1);
  for (float v : d) CHECK(std::isfinite(v));
}

TEST_CASE("adam_update reproduces hand-computed Keras Adam steps") {
  // One parameter, g = 0.5 then -0.25, lr 0.1, b1 .9, b2 .999, eps 1e-7.
  float p = 1.0f, m = 0, v = 0;
  const float g1 = 0.5f, g2 = -0.25f;
  cpu::adam_update(&p, &m, &v, &g1, 1, 0.1f, 0.9f, 0.999f, 1e-7f, 1);
  // t=1: m = .05, v = .00025, alpha = .1·sqrt(.001)/.1 = .0316228; step = alpha·m/(sqrt(v)+eps)
  double m1 = 0.05, v1 = 0.00025, a1 = 0.1 * std::sqrt(1 - 0.999) / (1 - 0.9);
  double p1 = 1.0 - a1 * m1 / (std::sqrt(v1) + 1e-7);
  CHECK(m == doctest::Approx(m1).epsilon(1e-6));
  CHECK(v == doctest::Approx(v1).epsilon(1e-6));
  CHECK(p == doctest::Approx(p1).epsilon(1e-6));
  cpu::adam_update(&p, &m, &v, &g2, 1, 0.1f, 0.9f, 0.999f, 1e-7f, 2);
  double m2 = 0.9 * m1 + 0.1 * -0.25, v2 = 0.999 * v1 + 0.001 * 0.0625;
  double a2 = 0.1 * std::sqrt(1 - 0.999 * 0.999) / (1 - 0.81);
  double p2 = p1 - a2 * m2 / (std::sqrt(v2) + 1e-7);
  CHECK(m == doctest::Approx(m2).epsilon(1e-6));
  CHECK(v == doctest::Approx(v2).epsilon(1e-6));
  CHECK(p == doctest::Approx(p2).epsilon(1e-6));
  // The first Adam step moves every parameter by ≈ lr (sign of g) whatever the gradient's scale.
  auto P = random_vector(1000, 50), G = random_vector(1000, 51, -1e-3, 1e-3);
  std::vector<float> P0 = P, M(1000), V(1000);
  cpu::adam_update(P.data(), M.data(), V.data(), G.data(), 1000, 1e-3f, 0.9f, 0.999f, 1e-7f, 1);
  for (std::size_t i = 0; i < P.size(); ++i) CHECK(std::abs(P0[i] - P[i]) == doctest::Approx(1e-3).epsilon(1e-3));
}

TEST_CASE("element-wise ops above the parallel threshold: the same bits split among threads as in small pieces") {
  // Above 2^20 elements (and outside a team) Adam and the dropout split their work among OpenMP's
  // threads; an element's result must not depend on that split.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(3);
  const std::size_t n = (std::size_t(1) << 21) + 7;
  auto P = random_vector<float>(n, 61), M = random_vector<float>(n, 62, -0.1, 0.1), V = random_vector<float>(n, 63, 0, 0.01);
  const auto G = random_vector<float>(n, 64);
  auto P2 = P, M2 = M, V2 = V;
  cpu::adam_update(P.data(), M.data(), V.data(), G.data(), n, 1e-3f, 0.9f, 0.999f, 1e-7f, 4);
  const std::size_t piece = 1000;  // below the threshold: no split
  for (std::size_t i = 0; i < n; i += piece)
    cpu::adam_update(P2.data() + i, M2.data() + i, V2.data() + i, G.data() + i, std::min(piece, n - i), 1e-3f,
                     0.9f, 0.999f, 1e-7f, 4);
  CHECK(P == P2);
  CHECK(M == M2);
  CHECK(V == V2);
  std::vector<float> D(n), D2(n);
  cpu::dropout_forward(D.data(), G.data(), n, 0.2f, 5, 6, 1);
  for (std::size_t i = 0; i < n; i += piece)
    cpu::dropout_forward(D2.data() + i, G.data() + i, std::min(piece, n - i), 0.2f, 5, 6, 1, i);
  CHECK(D == D2);
  omp_set_num_threads(threads);
}

TEST_CASE("gather_batch scales uint8 rows by 1/255 in the given order") {
  const int n = 5, D = 784;
  std::vector<uint8_t> img(std::size_t(n) * D), lab{0, 1, 2, 3, 4};
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = uint8_t((i * 37 + 11) % 256);
  std::vector<int32_t> idx{4, 0, 2};
  std::vector<float> X(3 * D, std::nanf(""));
  std::vector<uint8_t> y(3, 255);
  cpu::gather_batch(X.data(), y.data(), img.data(), lab.data(), idx.data(), 3, D);
  for (int r = 0; r < 3; ++r) {
    CHECK(y[r] == lab[idx[r]]);
    for (int k = 0; k < D; ++k) REQUIRE(X[r * D + k] == float(img[idx[r] * D + k]) * (1.0f / 255.0f));
  }
}

TEST_CASE("shuffle_order: a permutation, deterministic by (seed, epoch), different across epochs") {
  const int n = 48000;
  std::vector<int32_t> a(n), b(n), c(n), d(n);
  cpu::shuffle_order(a.data(), n, 42, 0);
  cpu::shuffle_order(b.data(), n, 42, 0);
  cpu::shuffle_order(c.data(), n, 42, 1);
  cpu::shuffle_order(d.data(), n, 43, 0);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != d);
  std::vector<int32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < n; ++i) REQUIRE(sorted[i] == i);
  int fixed = 0;
  for (int i = 0; i < n; ++i) fixed += a[i] == i;
  CHECK(fixed < 20);  // a random permutation has ~1 fixed point
}
