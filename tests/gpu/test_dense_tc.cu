// The tensor-core (TF32 / BF16) dense GEMMs on the GPU: the instructions' rounding against the
// host's (bitwise), every GEMM kind at both precisions on the op-case shapes against the CPU twins
// with the same input rounding (every element), and batch independence (bitwise).
//
// Tolerance (per element, derived as in tests/gpu/emu/emu_tc.cpp): with the inputs rounded the
// same way every product is exact in float (11x11- or 8x8-bit significands), so the kernel and the
// double reference differ only in the float32 summation of K products, whatever order and rounding
// (or truncation) the tensor core uses inside an mma: |out - ref| <= K·2^-23·Σ|a·b|, plus two
// roundings for the epilogue (bias, dropout scale). Checked as (K+2)·2^-23·scale·(Σ|a·b| + |bias|).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dense.cuh"
#include "kernels/mma.cuh"
#include "kernels/precision.hpp"
#include "layers/cpu_ops.hpp"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"
#include "tests/gpu/dense_backward_ref.cuh"
#include "tests/gpu/gpu_test.cuh"

namespace mnist::test {
namespace {

__global__ void round_on_device(uint32_t* tf32, uint32_t* bf16x2, const float* x, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  tf32[i] = cuda::to_tf32(x[i]);
  bf16x2[i] = cuda::pack_bf16x2(x[i], -x[i]);
}

std::vector<double> rounded(const std::vector<float>& v, GemmPrecision p, bool absolute = false) {
  std::vector<double> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double r = double(round_input(p, v[i]));
    o[i] = absolute ? std::fabs(r) : r;
  }
  return o;
}

// Every element within (K+2)·2^-23·scale·mag (see the header); NaN (unwritten) fails.
void expect_within(const std::vector<float>& out, const std::vector<double>& ref, const std::vector<double>& mag,
                   int K, double scale, const char* what) {
  REQUIRE(out.size() == ref.size());
  std::size_t bad = 0;
  double worst = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double tol = double(K + 2) * std::ldexp(1.0, -23) * scale * mag[i] + 1e-30;
    const double err = std::fabs(double(out[i]) - ref[i]);
    if (!(err <= tol)) ++bad;
    worst = std::max(worst, err / tol);
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " elements out of tolerance, worst ", worst, " x tol");
}

constexpr GemmPrecision kTensorCore[] = {GemmPrecision::TF32, GemmPrecision::BF16};

TEST_CASE("cvt.rna.tf32.f32 and cvt.rn.bf16x2.f32 round exactly as round_tf32/round_bf16") {
  std::vector<float> x = random_vector(1 << 16, 5, -1e3, 1e3);
  for (uint32_t m = 0; m < 4096; ++m) {  // every tie and near-tie pattern of the dropped bits
    x.push_back(bits_float(0x3F800000u | (m << 1)));
    x.push_back(bits_float(0xC0000000u | ((m * 16u) & 0x7FFFFFu)));
  }
  x.push_back(3.4028235e38f);
  x.push_back(1e-40f);  // subnormal
  const int n = int(x.size());
  auto dx = to_device(x);
  DeviceBuffer<uint32_t> t(x.size()), h(x.size());
  round_on_device<<<(n + 255) / 256, 256>>>(t.data(), h.data(), dx.data(), n);
  MNIST_LAUNCH_CHECK(nullptr);
  const auto tt = to_host(t), hh = to_host(h);
  int tf32_bad = 0, bf16_bad = 0;
  for (int i = 0; i < n; ++i) {
    tf32_bad += tt[i] != float_bits(round_tf32(x[i]));
    const uint32_t want = (float_bits(round_bf16(-x[i])) & 0xFFFF0000u) | (float_bits(round_bf16(x[i])) >> 16);
    bf16_bad += hh[i] != want;
  }
  CHECK(tf32_bad == 0);
  CHECK(bf16_bad == 0);
}

TEST_CASE("TF32/BF16 dense_forward and dense_relu_dropout_forward equal the CPU twins with rounded inputs") {
  Stream stream;
  for (GemmPrecision prec : kTensorCore)
    for (const cases::OpCase& c : test_cases(cases::Op::DenseForward)) {
      const int B = c.rows, K = c.in, N = c.out;
      INFO(c.name(), std::string(prec == GemmPrecision::TF32 ? " tf32" : " bf16"));
      const auto X = random_vector(std::size_t(B) * K, 11 + B), W = random_vector(std::size_t(N) * K, 12, -.5, .5);
      const auto b = random_vector(std::size_t(N), 13, -.5, .5);
      std::vector<double> ref(std::size_t(B) * N), mag(ref.size()), zero(N, 0.0);
      cpu::dense_forward(ref.data(), to_double(X).data(), to_double(W).data(), to_double(b).data(), B, K, N, c.relu,
                         prec);
      cpu::dense_forward(mag.data(), rounded(X, prec, true).data(), rounded(W, prec, true).data(), zero.data(), B, K,
                         N, false);
      for (std::size_t i = 0; i < mag.size(); ++i) mag[i] += std::fabs(b[i % N]);
      auto dX = to_device(X), dW = to_device(W), db = to_device(b);
      auto Y = poisoned<float>(ref.size());
      cuda::dense_forward(Y.data(), dX.data(), dW.data(), db.data(), B, K, N, c.relu, stream.get(), prec);
      expect_within(to_host(Y), ref, mag, K, 1.0, "Y");
      if (c.relu) {
        std::vector<double> drop(ref.size());
        cpu::dropout_forward(drop.data(), ref.data(), ref.size(), 0.2f, 42, 9, 1);
        auto D = poisoned<float>(ref.size());
        cuda::dense_relu_dropout_forward(D.data(), dX.data(), dW.data(), db.data(), B, K, N,
                                         cuda::DropoutSpec{0.2f, 42, 9, 1, nullptr}, stream.get(), prec);
        expect_within(to_host(D), drop, mag, K, 1.25, "D");
      }
    }
}

TEST_CASE("TF32/BF16 dense_backward and dense_backward_fused equal the CPU twins with rounded inputs") {
  Stream stream;
  for (GemmPrecision prec : kTensorCore)
    for (const cases::OpCase& c : test_cases(cases::Op::DenseBackward)) {
      const int B = c.rows, K = c.in, N = c.out;
      INFO(c.name(), std::string(prec == GemmPrecision::TF32 ? " tf32" : " bf16"));
      const auto X = random_vector(std::size_t(B) * K, 21 + B), W = random_vector(std::size_t(N) * K, 22, -.5, .5);
      const auto dY = random_vector(std::size_t(B) * N, 23), Y = random_vector(std::size_t(B) * N, 24);
      std::vector<double> dXr(std::size_t(B) * K), dWr(std::size_t(N) * K), dbr(N), dZ(std::size_t(B) * N);
      cpu::dense_backward(dXr.data(), dWr.data(), dbr.data(), dZ.data(), to_double(dY).data(), to_double(X).data(),
                          to_double(W).data(), to_double(Y).data(), B, K, N, c.relu, prec);
      std::vector<double> adZ(dZ.size()), mW(dWr.size()), mb(N, 0.0), mX(dXr.size());
      for (std::size_t i = 0; i < dZ.size(); ++i) adZ[i] = std::fabs(dZ[i]), mb[i % N] += adZ[i];
      cpu::gemm_tn(mW.data(), adZ.data(), rounded(X, prec, true).data(), N, K, B);
      cpu::gemm_nn(mX.data(), adZ.data(), rounded(W, prec, true).data(), B, K, N);
      auto gX = to_device(X), gW = to_device(W), gdY = to_device(dY), gY = to_device(Y);
      auto odX = poisoned<float>(dXr.size()), odW = poisoned<float>(dWr.size()), odb = poisoned<float>(N);
      test::dense_backward(odX.data(), odW.data(), odb.data(), gdY.data(), gX.data(), gW.data(), gY.data(), B,
                           K, N, c.relu, stream.get(), prec);
      expect_within(to_host(odX), dXr, mX, N, 1.0, "dX");
      expect_within(to_host(odW), dWr, mW, B, 1.0, "dW");
      expect_within(to_host(odb), dbr, mb, B, 1.0, "db");
      if (!c.relu) {  // the engine's launch: dZ given, the data gradient masked by the previous layer
        const auto mask = random_vector(std::size_t(B) * K, 25);
        std::vector<double> masked(dXr.size());
        for (std::size_t i = 0; i < masked.size(); ++i) masked[i] = mask[i] > 0 ? dXr[i] * 1.25 : 0.0;
        auto gm = to_device(mask);
        auto fX = poisoned<float>(dXr.size()), fW = poisoned<float>(dWr.size()), fb = poisoned<float>(N);
        cuda::dense_backward_fused(fW.data(), fb.data(), fX.data(), gdY.data(), gX.data(), gW.data(), gm.data(), 1.25f,
                                   B, K, N, stream.get(), prec);
        expect_within(to_host(fX), masked, mX, N, 1.25, "fused dX");
        CHECK(bitwise_equal(to_host(fW), to_host(odW)));
        CHECK(bitwise_equal(to_host(fb), to_host(odb)));
      }
    }
}

TEST_CASE("TF32/BF16 dense_forward: a row's result does not depend on its batch (bitwise)") {
  Stream stream;
  const int B = 4096, K = 784, N = 128;
  const auto X = random_vector(std::size_t(B) * K, 31), W = random_vector(std::size_t(N) * K, 32, -.5, .5);
  const auto b = random_vector(std::size_t(N), 33);
  auto dX = to_device(X), dW = to_device(W), db = to_device(b);
  for (GemmPrecision prec : kTensorCore) {
    auto Y = poisoned<float>(std::size_t(B) * N);
    cuda::dense_forward(Y.data(), dX.data(), dW.data(), db.data(), B, K, N, true, stream.get(), prec);
    const std::vector<float> all = to_host(Y);
    for (int r : {0, 63, 64, 4095}) {
      auto y1 = poisoned<float>(N);
      cuda::dense_forward(y1.data(), dX.data() + std::size_t(r) * K, dW.data(), db.data(), 1, K, N, true,
                          stream.get(), prec);
      const std::vector<float> row(all.begin() + std::size_t(r) * N, all.begin() + std::size_t(r + 1) * N);
      CHECK_MESSAGE(bitwise_equal(to_host(y1), row), "row ", r);
    }
  }
}

TEST_CASE("split-K (engine workspace): forward over K = 784 and weight GEMMs over 4096 rows, every precision") {
  // Within the derived tolerance of the rounded reference; bitwise: a forward row alone equals the
  // row in the batch (split points from K only), the fused backward equals the weight GEMM alone.
  Stream stream;
  const int B = 4096;
  for (const cases::LayerShape& L : cases::model_layers())
    for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
      const int K = L.in, N = L.out;
      INFO(K, "->", N, " ", int(prec));
      DeviceBuffer<float> ws(cuda::dense_workspace_floats(B, K, N));
      REQUIRE(ws.size() > 0);
      const auto X = random_vector(std::size_t(B) * K, 51), W = random_vector(std::size_t(N) * K, 52, -.5, .5);
      const auto b = random_vector(std::size_t(N), 53), dZ = random_vector(std::size_t(B) * N, 54);
      auto gX = to_device(X), gW = to_device(W), gb = to_device(b), gdZ = to_device(dZ);
      const auto Xr = rounded(X, prec), Wr = rounded(W, prec), dZr = rounded(dZ, prec);
      const auto aX = rounded(X, prec, true), aW = rounded(W, prec, true), adZ = rounded(dZ, prec, true);
      // forward
      std::vector<double> ref(std::size_t(B) * N), mag(ref.size()), zero(N, 0.0);
      cpu::dense_forward(ref.data(), Xr.data(), Wr.data(), to_double(b).data(), B, K, N, L.relu);
      cpu::dense_forward(mag.data(), aX.data(), aW.data(), zero.data(), B, K, N, false);
      for (std::size_t i = 0; i < mag.size(); ++i) mag[i] += std::fabs(b[i % N]);
      auto Y = poisoned<float>(ref.size());
      cuda::dense_forward(Y.data(), gX.data(), gW.data(), gb.data(), B, K, N, L.relu, stream.get(), prec, ws.data());
      const std::vector<float> all = to_host(Y);
      expect_within(all, ref, mag, K, 1.0, "Y");
      auto y1 = poisoned<float>(N);
      cuda::dense_forward(y1.data(), gX.data() + std::size_t(B - 1) * K, gW.data(), gb.data(), 1, K, N, L.relu,
                          stream.get(), prec, ws.data());
      CHECK(bitwise_equal(to_host(y1), std::vector<float>(all.end() - N, all.end())));
      // weight GEMM (+db), alone and fused with the data GEMM
      std::vector<double> rW(std::size_t(N) * K), mW(rW.size()), rb(N, 0.0), mb(N, 0.0);
      cpu::gemm_tn(rW.data(), dZr.data(), Xr.data(), N, K, B);
      cpu::gemm_tn(mW.data(), adZ.data(), aX.data(), N, K, B);
      for (std::size_t i = 0; i < dZr.size(); ++i) rb[i % N] += dZr[i], mb[i % N] += adZ[i];
      auto dW = poisoned<float>(rW.size()), db = poisoned<float>(N);
      cuda::dense_backward_weights(dW.data(), db.data(), gdZ.data(), gX.data(), B, K, N, stream.get(), prec, ws.data());
      const auto hW = to_host(dW), hb = to_host(db);
      expect_within(hW, rW, mW, B, 1.0, "dW");
      expect_within(hb, rb, mb, B, 1.0, "db");
      auto fW = poisoned<float>(rW.size()), fb = poisoned<float>(N), fX = poisoned<float>(std::size_t(B) * K);
      cuda::dense_backward_fused(fW.data(), fb.data(), fX.data(), gdZ.data(), gX.data(), gW.data(), nullptr, 1.0f, B, K,
                                 N, stream.get(), prec, ws.data());
      CHECK(bitwise_equal(to_host(fW), hW));
      CHECK(bitwise_equal(to_host(fb), hb));
      // Split-K in one launch (tickets: the last block of a tile sums its partials in the same fixed
      // order): bitwise the two-pass results, at 4096 rows and (forward, split across blocks) one
      // row; every ticket back to 0 afterwards. Twice, so the second launch starts from the
      // first's reset counters.
      DeviceBuffer<unsigned> tk(cuda::dense_ticket_count(B, K, N));
      REQUIRE(tk.size() > 0);
      CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
      for (int rep = 0; rep < 2; ++rep) {
        auto tW = poisoned<float>(rW.size()), tb = poisoned<float>(N), tX = poisoned<float>(std::size_t(B) * K);
        cuda::dense_backward_fused(tW.data(), tb.data(), tX.data(), gdZ.data(), gX.data(), gW.data(), nullptr, 1.0f, B,
                                   K, N, stream.get(), prec, ws.data(), tk.data());
        CHECK(bitwise_equal(to_host(tW), hW));
        CHECK(bitwise_equal(to_host(tb), hb));
        CHECK(bitwise_equal(to_host(tX), to_host(fX)));
        auto tY = poisoned<float>(ref.size()), t1 = poisoned<float>(N);
        cuda::dense_forward(tY.data(), gX.data(), gW.data(), gb.data(), B, K, N, L.relu, stream.get(), prec, ws.data(),
                            tk.data());
        CHECK(bitwise_equal(to_host(tY), all));
        cuda::dense_forward(t1.data(), gX.data() + std::size_t(B - 1) * K, gW.data(), gb.data(), 1, K, N, L.relu,
                            stream.get(), prec, ws.data(), tk.data());
        CHECK(bitwise_equal(to_host(t1), to_host(y1)));
        CHECK(to_host(tk) == std::vector<unsigned>(tk.size(), 0u));
      }
    }
}

// The pipelined cp.async tile (kernels/dense.cu PipeTile) that the launchers pick for these sizes
// (Auto), and forced (dense_force_tile): 64x64 and 128x128 tiles, the forward's K split folded into
// the block or across blocks. Every element against the CPU twin with the same input rounding (the
// derived tolerance of the header), and bitwise against the single-buffered MmaTile (forced): same
// split points, same mma sequence per element, so the same bits. Layer 1 and 2 at 4096 rows (the
// forward, the data GEMM [4096 x 128 -> 784 / 64 -> 128] and the split weight GEMM), and the
// 16384-row weight GEMM of layer 1 (not in the sanitizers' quick selection).
struct TileOuts {
  std::vector<float> Y, dW, db, dX;
};

TEST_CASE("pipelined TF32/BF16 tile: every GEMM kind at 4096 rows and the 16384-row weight GEMM") {
  Stream stream;
  struct Shape {
    int B, K, N;
    bool all_kinds;
  };
  std::vector<Shape> shapes{{4096, 784, 128, true}, {4096, 128, 64, true}};
  if (!quick_tests()) shapes.push_back({16384, 784, 128, false});
  for (const Shape& sh : shapes)
    for (GemmPrecision prec : kTensorCore) {
      const int B = sh.B, K = sh.K, N = sh.N;
      INFO(B, "x", K, "->", N, std::string(prec == GemmPrecision::TF32 ? " tf32" : " bf16"));
      DeviceBuffer<float> ws(cuda::dense_workspace_floats(B, K, N));
      const auto X = random_vector(std::size_t(B) * K, 61), W = random_vector(std::size_t(N) * K, 62, -.5, .5);
      const auto b = random_vector(std::size_t(N), 63), dZ = random_vector(std::size_t(B) * N, 64);
      auto gX = to_device(X), gW = to_device(W), gb = to_device(b), gdZ = to_device(dZ);
      auto run = [&](cuda::GemmTileChoice choice) {
        cuda::dense_force_tile(choice);
        TileOuts o;
        auto dW = poisoned<float>(std::size_t(N) * K), db = poisoned<float>(N);
        if (sh.all_kinds) {
          auto Y = poisoned<float>(std::size_t(B) * N), dX = poisoned<float>(std::size_t(B) * K);
          cuda::dense_forward(Y.data(), gX.data(), gW.data(), gb.data(), B, K, N, true, stream.get(), prec, ws.data());
          cuda::dense_backward_fused(dW.data(), db.data(), dX.data(), gdZ.data(), gX.data(), gW.data(), nullptr, 1.0f,
                                     B, K, N, stream.get(), prec, ws.data());
          o.Y = to_host(Y), o.dX = to_host(dX);
        } else {
          cuda::dense_backward_weights(dW.data(), db.data(), gdZ.data(), gX.data(), B, K, N, stream.get(), prec,
                                       ws.data());
        }
        o.dW = to_host(dW), o.db = to_host(db);
        cuda::dense_force_tile({});
        return o;
      };
      const TileOuts mma = run({cuda::GemmTile::Mma, false});
      const TileOuts autom = run({});

      const auto Xr = rounded(X, prec), Wr = rounded(W, prec), dZr = rounded(dZ, prec);
      const auto aX = rounded(X, prec, true), aW = rounded(W, prec, true), adZ = rounded(dZ, prec, true);
      std::vector<double> rW(std::size_t(N) * K), mW(rW.size()), rb(N, 0.0), mb(N, 0.0);
      cpu::gemm_tn(rW.data(), dZr.data(), Xr.data(), N, K, B);
      cpu::gemm_tn(mW.data(), adZ.data(), aX.data(), N, K, B);
      for (std::size_t i = 0; i < dZr.size(); ++i) rb[i % N] += dZr[i], mb[i % N] += adZ[i];
      expect_within(autom.dW, rW, mW, B, 1.0, "dW");
      expect_within(autom.db, rb, mb, B, 1.0, "db");
      if (sh.all_kinds) {
        std::vector<double> ref(std::size_t(B) * N), mag(ref.size()), zero(N, 0.0);
        cpu::dense_forward(ref.data(), Xr.data(), Wr.data(), to_double(b).data(), B, K, N, true);
        cpu::dense_forward(mag.data(), aX.data(), aW.data(), zero.data(), B, K, N, false);
        for (std::size_t i = 0; i < mag.size(); ++i) mag[i] += std::fabs(b[i % N]);
        expect_within(autom.Y, ref, mag, K, 1.0, "Y");
        std::vector<double> rX(std::size_t(B) * K), mX(rX.size());
        cpu::gemm_nn(rX.data(), dZr.data(), Wr.data(), B, K, N);
        cpu::gemm_nn(mX.data(), adZ.data(), aW.data(), B, K, N);
        expect_within(autom.dX, rX, mX, N, 1.0, "dX");
      }
      const cuda::GemmTileChoice forced[] = {
          {},
          {cuda::GemmTile::Pipe64, false},
          {cuda::GemmTile::Pipe64, true},
          {cuda::GemmTile::Pipe64x8, false},
          {cuda::GemmTile::Pipe64x8, true},
          {cuda::GemmTile::Pipe128, true}};
      for (const cuda::GemmTileChoice& c : forced) {
        INFO("tile ", int(c.tile), std::string(c.fold_forward_split ? " folded" : ""));
        const TileOuts o = c.tile == cuda::GemmTile::Auto ? autom : run(c);
        CHECK(bitwise_equal(o.dW, mma.dW));
        CHECK(bitwise_equal(o.db, mma.db));
        CHECK(bitwise_equal(o.Y, mma.Y));
        CHECK(bitwise_equal(o.dX, mma.dX));
      }
    }
}

// The wgmma forward tiles (kernels/dense.cu WgmmaTile, dense_force_tile({Wgmma, Wgmma128 or
// WgmmaWide, fold}); 64x64 and 64x128 outputs by one warpgroup, 128x128 by two, sm_90a):
// every element against the CPU twin with the same input rounding (the derived tolerance of the
// header), on layer 1's 4096 x 784 -> 128 and odd shapes: 1000 rows (a row tail of 40), K = 784 and
// 200 (not multiples of the 32-deep slice), N = 72 (a column tail), K = 36 (one slice and a 4-deep
// tail); without a workspace (one chain over K), with the engine's workspace (K >= 512: the split
// across blocks, in one launch with tickets, or folded into the block), with ReLU and with dropout.
// Not claimed bitwise MmaTile's (the tensor core's order inside one wgmma is its own), but a row
// alone equals the row in the batch (bitwise: same split points, same instructions per row). On a
// device or build without sm_90a the forced tile falls back to PipeTile and the same checks hold.
// Quick mode runs in the host emulation too (run.sh tc: this file compiled for the host, this case only).
TEST_CASE("wgmma TF32/BF16 forward tile: layer 1 at 4096 rows and odd shapes, with and without dropout") {
  Stream stream;
  const std::string note = cuda::dense_wgmma_available() ? "wgmma tile: runs (sm_90a)"
                                                         : "wgmma tile: unavailable here, PipeTile ran";
  MESSAGE(note);
  struct Shape {
    int B, K, N;
  };
  // quick (the sanitizers, and the emulation: tests/gpu/emu/run.sh tc): a 784-deep split shape and a
  // one-slice one, both with row and column tails
  const std::vector<Shape> shapes = quick_tests() ? std::vector<Shape>{{129, 784, 72}, {129, 36, 64}}
                                                  : std::vector<Shape>{{4096, 784, 128}, {1000, 784, 128},
                                                                       {1000, 200, 72}, {129, 36, 64}};
  for (const cuda::GemmTile tile : {cuda::GemmTile::Wgmma, cuda::GemmTile::Wgmma128, cuda::GemmTile::WgmmaWide})
  for (const Shape& sh : shapes)
    for (GemmPrecision prec : kTensorCore)
      for (bool fold : {false, true}) {
        const int B = sh.B, K = sh.K, N = sh.N;
        INFO(B, "x", K, "->", N,
             std::string(tile == cuda::GemmTile::Wgmma      ? " 64x64 "
                         : tile == cuda::GemmTile::Wgmma128 ? " 64x128"
                                                            : " 128x128 (two warpgroups)"),
             (prec == GemmPrecision::TF32 ? " tf32" : " bf16"), (fold ? " fold" : " once"));
        const auto X = random_vector(std::size_t(B) * K, 71 + B), W = random_vector(std::size_t(N) * K, 72, -.5, .5);
        const auto b = random_vector(std::size_t(N), 73, -.5, .5);
        std::vector<double> lin(std::size_t(B) * N), relu(lin.size()), mag(lin.size()), zero(N, 0.0);
        cpu::dense_forward(lin.data(), to_double(X).data(), to_double(W).data(), to_double(b).data(), B, K, N, false,
                           prec);
        cpu::dense_forward(mag.data(), rounded(X, prec, true).data(), rounded(W, prec, true).data(), zero.data(), B, K,
                           N, false);
        for (std::size_t i = 0; i < mag.size(); ++i) mag[i] += std::fabs(b[i % N]), relu[i] = std::max(lin[i], 0.0);
        std::vector<double> drop(relu.size());
        cpu::dropout_forward(drop.data(), relu.data(), relu.size(), 0.2f, 42, 9, 1);
        auto gX = to_device(X), gW = to_device(W), gb = to_device(b);
        const std::size_t wsn = cuda::dense_workspace_floats(B, K, N);
        DeviceBuffer<float> ws(std::max<std::size_t>(wsn, 1));
        DeviceBuffer<unsigned> tk(std::max<std::size_t>(cuda::dense_ticket_count(B, K, N), 1));
        CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
        float* const w = wsn ? ws.data() : nullptr;
        cuda::dense_force_tile({tile, fold});
        auto Y = poisoned<float>(lin.size()), Yr = poisoned<float>(lin.size()), Yt = poisoned<float>(lin.size());
        auto D = poisoned<float>(lin.size()), y1 = poisoned<float>(N);
        cuda::dense_forward(Y.data(), gX.data(), gW.data(), gb.data(), B, K, N, false, stream.get(), prec);
        cuda::dense_forward(Yr.data(), gX.data(), gW.data(), gb.data(), B, K, N, true, stream.get(), prec, w);
        cuda::dense_forward(Yt.data(), gX.data(), gW.data(), gb.data(), B, K, N, true, stream.get(), prec, w,
                            wsn ? tk.data() : nullptr);
        cuda::dense_forward(y1.data(), gX.data() + std::size_t(B - 1) * K, gW.data(), gb.data(), 1, K, N, true,
                            stream.get(), prec, w);
        cuda::dense_relu_dropout_forward(D.data(), gX.data(), gW.data(), gb.data(), B, K, N,
                                         cuda::DropoutSpec{0.2f, 42, 9, 1, nullptr}, stream.get(), prec, w);
        cuda::dense_force_tile({});
        expect_within(to_host(Y), lin, mag, K, 1.0, "Y");
        const std::vector<float> hr = to_host(Yr);
        expect_within(hr, relu, mag, K, 1.0, "relu Y, engine workspace");
        CHECK(bitwise_equal(to_host(Yt), hr));
        CHECK(bitwise_equal(to_host(y1), std::vector<float>(hr.end() - N, hr.end())));
        expect_within(to_host(D), drop, mag, K, 1.25, "dropout D");
      }
}

// The Forward GEMM's K split summed across a thread block cluster (GemmTileChoice::cluster_split:
// a tile's pieces run as the blocks of one cluster and are summed from their shared memory, sm_90):
// bitwise the same tile's pieces summed by the second kernel and by the tickets, on every pipelined
// tile (TF32/BF16) and every FP32 vector tile (SimtVecTile), with ReLU and with dropout, with X as floats and read in place from uint8 images; the
// tickets stay 0. Layer 1's K = 784 is 4 pieces. Quick (the sanitizers, the emulation): two shapes
// with row and column tails; full adds 4096 rows and one row. Where the device launches no
// clusters the tiles run as without the choice (the same bits): the test says so.
TEST_CASE("clustered split-K forward: bitwise the second pass and the tickets, every pipelined and FP32 vector tile") {
  Stream stream;
  const bool clusters = cuda::dense_clusters_available();
  MESSAGE(std::string(clusters ? "thread block clusters: launched" : "no clusters on this device: the tiles ran as without"));
  struct Shape {
    int B, K, N;
  };
  const std::vector<Shape> shapes = quick_tests() ? std::vector<Shape>{{129, 784, 72}, {100, 544, 36}}
                                                  : std::vector<Shape>{{4096, 784, 128}, {1, 784, 128},
                                                                       {1000, 784, 64}, {100, 544, 36}};
  struct Tiles {
    GemmPrecision prec;
    cuda::GemmTile tile;
    cuda::SimtTileKind simt;
  };
  std::vector<Tiles> tiles;
  for (GemmPrecision prec : kTensorCore)
    for (const cuda::GemmTile tile : {cuda::GemmTile::Pipe128, cuda::GemmTile::Pipe64x8, cuda::GemmTile::Pipe64})
      tiles.push_back({prec, tile, cuda::SimtTileKind::Auto});
  for (const cuda::SimtTileKind simt : {cuda::SimtTileKind::Vec128, cuda::SimtTileKind::Vec64, cuda::SimtTileKind::Vec32})
    tiles.push_back({GemmPrecision::FP32, cuda::GemmTile::Auto, simt});
  for (const Shape& sh : shapes)
    for (const Tiles& t : tiles) {
        const GemmPrecision prec = t.prec;  // (not a structured binding: the lambdas below capture them)
        const cuda::GemmTile tile = t.tile;
        const cuda::SimtTileKind simt = t.simt;
        const int B = sh.B, K = sh.K, N = sh.N;
        const std::string what = cat(B, "x", K, "->", N, " tile ", int(tile), " simt ", int(simt), " ",
                                     prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16");
        INFO(what);
        const auto force = [&](bool cluster) {
          cuda::dense_force_tile({tile, false, cluster});
          cuda::dense_force_simt_tile({simt, false, cluster});
        };
        const auto X = random_vector(std::size_t(B) * K, 81 + B), W = random_vector(std::size_t(N) * K, 82, -.5, .5);
        const auto b = random_vector(std::size_t(N), 83, -.5, .5);
        std::vector<uint8_t> img(std::size_t(B) * K);
        for (std::size_t i = 0; i < img.size(); ++i) img[i] = uint8_t((i * 2654435761u) >> 24);
        auto gX = to_device(X), gW = to_device(W), gb = to_device(b);
        DeviceBuffer<uint8_t> gimg(img.size());
        CUDA_CHECK(cudaMemcpy(gimg.data(), img.data(), img.size(), cudaMemcpyHostToDevice));
        const auto in_images = cuda::DenseInput::images_by_index(gimg.data(), nullptr, 0);
        DeviceBuffer<float> ws(cuda::dense_workspace_floats(B, K, N));
        DeviceBuffer<unsigned> tk(cuda::dense_ticket_count(B, K, N));
        REQUIRE(ws.size() > 0);
        REQUIRE(tk.size() > 0);
        CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
        const std::size_t n = std::size_t(B) * N;
        const cuda::DropoutSpec drop{0.2f, 42, 9, 1, nullptr};
        // The four forwards (ReLU on floats, linear on the images, dropout, ReLU with tickets) with the
        // tile's split summed by the second kernel (or the tickets), or across the cluster.
        struct Outs {
          std::vector<float> Y, I, D, T;
        };
        const auto forwards = [&](bool cluster) {
          auto Y = poisoned<float>(n), I = poisoned<float>(n), D = poisoned<float>(n), T = poisoned<float>(n);
          force(cluster);
          const cudaStream_t st = stream.get();
          cuda::dense_forward(Y.data(), gX.data(), gW.data(), gb.data(), B, K, N, true, st, prec, ws.data());
          cuda::dense_forward(I.data(), in_images, gW.data(), gb.data(), B, K, N, false, st, prec, ws.data());
          cuda::dense_relu_dropout_forward(D.data(), gX.data(), gW.data(), gb.data(), B, K, N, drop, st, prec, ws.data());
          cuda::dense_forward(T.data(), gX.data(), gW.data(), gb.data(), B, K, N, true, st, prec, ws.data(), tk.data());
          cuda::dense_force_tile({});
          cuda::dense_force_simt_tile({});
          CUDA_CHECK(cudaStreamSynchronize(st));
          return Outs{to_host(Y), to_host(I), to_host(D), to_host(T)};
        };
        const Outs ref = forwards(false), got = forwards(true);
        const std::vector<float>& y0 = ref.Y;
        CHECK(bitwise_equal(ref.T, y0));  // (the tickets' finish, the same bits)
        CHECK(bitwise_equal(got.Y, y0));
        CHECK(bitwise_equal(got.T, y0));
        CHECK(bitwise_equal(got.I, ref.I));
        CHECK(bitwise_equal(got.D, ref.D));
        CHECK(to_host(tk) == std::vector<unsigned>(tk.size(), 0u));
        // and the values: the reference is the split's, held to the CPU twin by the cases above
        CHECK(std::none_of(y0.begin(), y0.end(), [](float v) { return std::isnan(v); }));
      }
}

// Layer 0's weight GEMM with Adam in its clustered finish (cuda::dense_weight_adam, the tail path's
// optimizer for layer 0; sm_90 clusters of up to 16 blocks, the non-portable size): bitwise what it
// replaces, dense_weight_partials' pieces then adam_reduce_update of that one segment (parameters,
// moments, the gradient and the rounded copy; the gaps around W and b untouched), on both tiles at
// every precision, X as floats and from the images. Shapes: quick 600 x 64 -> 40 (7 pieces of 96
// rows); full adds layer 0's 4096 x 784 -> 128 (16 pieces, the engine's) and 512 (8 pieces). Where
// the device holds no such cluster the case says so and is skipped (the engine then keeps the pieces).
TEST_CASE("weight GEMM with Adam across a cluster: bitwise the pieces and adam_reduce_update") {
  Stream stream;
  struct Shape {
    int B, K, N;
  };
  const std::vector<Shape> shapes = quick_tests() ? std::vector<Shape>{{600, 64, 40}}
                                                  : std::vector<Shape>{{600, 64, 40}, {4096, 784, 128}, {512, 784, 128}};
  int ran = 0, skipped = 0;
  for (const Shape& sh : shapes)
    for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
      for (const cuda::WeightAdamTile tile : {cuda::WeightAdamTile::Large, cuda::WeightAdamTile::Small})
        for (const bool images : {false, true}) {
          const int B = sh.B, K = sh.K, N = sh.N, slices = cuda::dense_weight_slices(B, K, N);
          const std::string what = cat(B, "x", K, "->", N, " ", slices, " pieces, tile ", int(tile), images ? " images " : " floats ",
                                       prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16");
          INFO(what);
          if (cuda::dense_weight_adam_tile(B, K, N, prec, images, tile) != tile) {
            ++skipped;
            continue;
          }
          ++ran;
          const std::size_t w_off = 5, b_off = w_off + std::size_t(N) * K + 3, total = b_off + N + 4;
          const auto p0 = random_vector(total, 201), m0 = random_vector(total, 202, -0.05, 0.05),
                     v0 = random_vector(total, 203, 0.0, 0.01), dZ = random_vector(std::size_t(B) * N, 204, -0.5, 0.5),
                     X = random_vector(std::size_t(B) * K, 205, 0.0, 1.0);
          std::vector<uint8_t> img(std::size_t(B) * K);
          for (std::size_t i = 0; i < img.size(); ++i) img[i] = uint8_t((i * 2654435761u) >> 24);
          auto gdZ = to_device(dZ), gX = to_device(X);
          DeviceBuffer<uint8_t> gimg(img.size());
          CUDA_CHECK(cudaMemcpy(gimg.data(), img.data(), img.size(), cudaMemcpyHostToDevice));
          const cuda::DenseInput in = images ? cuda::DenseInput::images_by_index(gimg.data(), nullptr, 0) : cuda::DenseInput(gX.data());
          cuda::TrainCounters c{};
          c.step = 7;
          c.lr = 1e-3f;
          DeviceBuffer<cuda::TrainCounters> ctr(1);
          CUDA_CHECK(cudaMemcpy(ctr.data(), &c, sizeof c, cudaMemcpyHostToDevice));
          const bool rq = prec != GemmPrecision::FP32;
          struct Outs {
            std::vector<float> p, m, v, g, q;
          };
          const auto run = [&](bool fused) {
            auto p = to_device(p0), m = to_device(m0), v = to_device(v0);
            auto g = poisoned<float>(total), q = poisoned<float>(total);
            const cudaStream_t st = stream.get();
            const cuda::RoundedParams r = rq ? cuda::RoundedParams{q.data(), prec} : cuda::RoundedParams{};
            if (fused) {
              cuda::WeightAdam a;
              a.p = p.data(), a.m = m.data(), a.v = v.data(), a.g_out = g.data();
              a.w_offset = w_off, a.b_offset = b_off, a.counters = ctr.data(), a.rounded = r;
              cuda::dense_weight_adam(a, gdZ.data(), in, B, K, N, st, prec, false, false, tile);
            } else {
              DeviceBuffer<float> partial(cuda::dense_weight_partial_floats(B, K, N));
              cuda::dense_weight_partials(partial.data(), gdZ.data(), in, B, K, N, st, prec);
              cuda::GradSlicesSet set;
              set.seg[set.count++] = {partial.data(), slices, std::size_t(N) * std::size_t(K + 1), N, K, w_off, b_off};
              cuda::adam_reduce_update(p.data(), m.data(), v.data(), g.data(), set, ctr.data(), 0.9f, 0.999f, 1e-7f, st,
                                       nullptr, {}, r);
              CUDA_CHECK(cudaStreamSynchronize(st));  // (partial is freed at the end of this scope)
            }
            CUDA_CHECK(cudaStreamSynchronize(st));
            return Outs{to_host(p), to_host(m), to_host(v), to_host(g), to_host(q)};
          };
          const Outs ref = run(false), got = run(true);
          CHECK(!bitwise_equal(ref.p, p0));  // (the step moved the parameters: the comparison below is not of copies)
          CHECK(bitwise_equal(got.p, ref.p));
          CHECK(bitwise_equal(got.m, ref.m));
          CHECK(bitwise_equal(got.v, ref.v));
          CHECK(bitwise_equal(got.g, ref.g));
          if (rq) CHECK(bitwise_equal(got.q, ref.q));
          CHECK(to_host(ctr)[0].step == 7);  // (the counters only read)
        }
  MESSAGE(cat("weight GEMM with Adam: ", ran, " cases ran, ", skipped,
              skipped ? " skipped (no such cluster on this device)" : " skipped"));
  if (cuda::dense_clusters_available()) CHECK(ran > 0);
}

// dense_weight_partials' dz_rounded / x_rounded (the tail path: dz0 from the tail kernel, X from
// gather_batch_overlapped, both written rounded to the precision): on inputs that are rounded, the
// same bits as without the promise, on every tile that can run the weight GEMM; and the promise is
// acted on: on raw inputs the TF32 PipeTiles, which then skip their rounding pass, give other bits,
// while BF16 (whose tiles convert at the fragment load, no pass) and the tiles without the pass
// (MmaTile, the wgmma weight tile: they round as before) give the same. Shapes: 129 x 36 -> 64 (one
// slice) and 600 x 64 -> 40 (two pieces of 320 / 280 rows); full mode adds layer 0's 4096 x 784 -> 128.
TEST_CASE("dense_weight_partials: inputs rounded by their writer give the same bits, and TF32 PipeTile skips its pass") {
  Stream stream;
  struct Shape {
    int B, K, N;
  };
  std::vector<Shape> shapes{{129, 36, 64}, {600, 64, 40}};
  if (!quick_tests()) shapes.push_back({4096, 784, 128});
  struct Tile {
    cuda::GemmTile tile;
    bool skips;  // the TF32 rounding pass skipped on the promise
  };
  const Tile tiles[] = {{cuda::GemmTile::Pipe64x8, true}, {cuda::GemmTile::Pipe128, true},
                        {cuda::GemmTile::Pipe64, true},   {cuda::GemmTile::Mma, false},
                        {cuda::GemmTile::Wgmma, !cuda::dense_wgmma_available()}};  // (no sm_90a: PipeTile ran)
  for (const Shape& sh : shapes)
    for (GemmPrecision prec : kTensorCore) {
      const int B = sh.B, K = sh.K, N = sh.N;
      const auto X = random_vector(std::size_t(B) * K, 91 + B), dZ = random_vector(std::size_t(B) * N, 92 + K);
      std::vector<float> Xr(X.size()), dZr(dZ.size());
      cpu::round_gemm_inputs(Xr.data(), X.data(), X.size(), prec);
      cpu::round_gemm_inputs(dZr.data(), dZ.data(), dZ.size(), prec);
      auto gX = to_device(X), gdZ = to_device(dZ), gXr = to_device(Xr), gdZr = to_device(dZr);
      const std::size_t n = cuda::dense_weight_partial_floats(B, K, N);
      for (const Tile& t : tiles) {
        INFO(B, "x", K, "->", N, (prec == GemmPrecision::TF32 ? " tf32" : " bf16"), ", tile ", int(t.tile));
        auto run = [&](const DeviceBuffer<float>& dz, const DeviceBuffer<float>& x, bool dz_rounded, bool x_rounded) {
          cuda::dense_force_tile({t.tile, false});
          auto part = poisoned<float>(n);
          cuda::dense_weight_partials(part.data(), dz.data(), x.data(), B, K, N, stream.get(), prec, dz_rounded,
                                      x_rounded);
          cuda::dense_force_tile({});
          return to_host(part);
        };
        const std::vector<float> base = run(gdZr, gXr, false, false);
        CHECK(bitwise_equal(run(gdZr, gXr, true, true), base));
        CHECK(bitwise_equal(run(gdZr, gXr, true, false), base));
        CHECK(bitwise_equal(run(gdZr, gXr, false, true), base));
        // raw inputs: the promise broken on purpose shows whether the pass was skipped
        const std::vector<float> raw = run(gdZ, gX, false, false);
        const bool differs = !bitwise_equal(run(gdZ, gX, true, true), raw);
        CHECK(differs == (t.skips && prec == GemmPrecision::TF32));
        if (prec == GemmPrecision::TF32 && t.skips) {
          CHECK_FALSE(bitwise_equal(run(gdZ, gX, true, false), raw));  // each flag alone is acted on
          CHECK_FALSE(bitwise_equal(run(gdZ, gX, false, true), raw));
        }
      }
    }
}

// dense_forward's and dense_backward_data's w_rounded (the engine's W read from the optimizer's
// rounded copy, kernels/adam.cuh RoundedParams): with W rounded, the same bits as without the
// promise, on every tile that runs the GEMM, with the engine's split-K workspace (the forward over
// K = 784 is split) and without; and the promise is acted on: with raw W the TF32 PipeTiles and
// wgmma tiles, which then skip their pass over W, give other bits, while BF16 (PipeTile converts at
// the fragment load; the wgmma tile's BF16 pass writes the copy it reads, never skipped) and
// MmaTile (no pass) give the same. X, dZ and the mask stay raw: the promise is W's only.
TEST_CASE("dense_forward / dense_backward_data: W rounded by its writer gives the same bits, and TF32 skips its pass") {
  Stream stream;
  struct Shape {
    int B, K, N;
  };
  std::vector<Shape> shapes{{129, 36, 64}, {129, 784, 72}};
  if (!quick_tests()) shapes.push_back({4096, 784, 128});
  struct Tile {
    cuda::GemmTile tile;
    bool skips, data;  // the TF32 pass over W skipped on the promise; the tile runs the data GEMM too
  };
  // (the wgmma tiles fall back to PipeTile without sm_90a, which skips as well)
  const Tile tiles[] = {{cuda::GemmTile::Pipe64x8, true, true}, {cuda::GemmTile::Pipe128, true, true},
                        {cuda::GemmTile::Pipe64, true, true},   {cuda::GemmTile::Mma, false, true},
                        {cuda::GemmTile::Wgmma, true, false},   {cuda::GemmTile::WgmmaWide, true, false}};
  for (const Shape& sh : shapes)
    for (GemmPrecision prec : kTensorCore) {
      const int B = sh.B, K = sh.K, N = sh.N;
      const auto X = random_vector(std::size_t(B) * K, 81 + B), W = random_vector(std::size_t(N) * K, 82, -.5, .5);
      const auto b = random_vector(std::size_t(N), 83, -.5, .5), dZ = random_vector(std::size_t(B) * N, 84);
      const auto mask = random_vector(std::size_t(B) * K, 85, -1.0, 1.0);
      std::vector<float> Wr(W.size());
      cpu::round_gemm_inputs(Wr.data(), W.data(), W.size(), prec);
      auto gX = to_device(X), gW = to_device(W), gWr = to_device(Wr), gb = to_device(b), gdZ = to_device(dZ),
           gmask = to_device(mask);
      const std::size_t wsn = cuda::dense_workspace_floats(B, K, N);
      DeviceBuffer<float> ws(std::max<std::size_t>(wsn, 1));
      for (const Tile& t : tiles) {
        INFO(B, "x", K, "->", N, (prec == GemmPrecision::TF32 ? " tf32" : " bf16"), ", tile ", int(t.tile));
        auto forward = [&](const DeviceBuffer<float>& w, bool promise, bool split) {
          cuda::dense_force_tile({t.tile, false});
          auto Y = poisoned<float>(std::size_t(B) * N);
          cuda::dense_forward(Y.data(), gX.data(), w.data(), gb.data(), B, K, N, true, stream.get(), prec,
                              split && wsn ? ws.data() : nullptr, nullptr, promise);
          cuda::dense_force_tile({});
          return to_host(Y);
        };
        auto data = [&](const DeviceBuffer<float>& w, bool promise) {
          cuda::dense_force_tile({t.tile, false});
          auto dX = poisoned<float>(std::size_t(B) * K);
          cuda::dense_backward_data(dX.data(), gdZ.data(), w.data(), gmask.data(), 1.25f, B, K, N, stream.get(), prec,
                                    promise);
          cuda::dense_force_tile({});
          return to_host(dX);
        };
        const bool acted = t.skips && prec == GemmPrecision::TF32;
        for (const bool split : {false, true}) {
          const std::string how = split ? "engine workspace" : "no workspace";
          INFO(how);
          const std::vector<float> base = forward(gWr, false, split);
          CHECK(std::none_of(base.begin(), base.end(), [](float v) { return std::isnan(v); }));
          CHECK(bitwise_equal(forward(gWr, true, split), base));
          // raw W: the promise broken on purpose shows whether the pass was skipped
          CHECK(bitwise_equal(forward(gW, true, split), forward(gW, false, split)) == !acted);
        }
        if (t.data) {
          INFO("data GEMM");
          const std::vector<float> base = data(gWr, false);
          CHECK(bitwise_equal(data(gWr, true), base));
          CHECK(bitwise_equal(data(gW, true), data(gW, false)) == !acted);
        }
      }
    }
}

// The wgmma weight tiles (kernels/dense.cu WgmmaWeightTile: dense_force_tile({Wgmma}) 128x64,
// {Wgmma128} 128x128 outputs, two warpgroups, operands transposed into wgmma's K-major layout on
// chip; sm_90a) on the weight GEMM dW = dZᵀ·[X | 1]: every element of dW and db against the CPU twin
// with the same input rounding (the header's tolerance, K = the rows summed), without a workspace
// (one chain over all rows), with the workspace (split pieces across blocks, then the reduction
// kernel or, with tickets, the last block; bitwise each other), and dense_weight_partials: every
// slice against the CPU GEMM over its own rows, and their sum in slice order bitwise the
// workspace's dW/db. Shapes: 129 rows x 36 -> 64 (an output-row tail inside the 128-row tile, a
// column tail at 37, a 1-row K tail, no split), 1000 x 200 -> 72 (11 pieces of 96 rows, the last
// 40: a K tail in the last piece; columns 201 = a tail at both tile widths), and (full mode only)
// layer 0's 4096 x 784 -> 128 (16 pieces of 256 rows). On a device or build without sm_90a the forced tile
// falls back to PipeTile and the same checks hold. Quick mode runs in the host emulation too.
TEST_CASE("wgmma TF32/BF16 weight tile: dW/db and the split pieces of dense_weight_partials") {
  Stream stream;
  const std::string note = cuda::dense_wgmma_available() ? "wgmma weight tile: runs (sm_90a)"
                                                         : "wgmma weight tile: unavailable here, PipeTile ran";
  MESSAGE(note);
  struct Shape {
    int B, K, N;
  };
  const std::vector<Shape> shapes = quick_tests() ? std::vector<Shape>{{129, 36, 64}, {1000, 200, 72}}
                                                  : std::vector<Shape>{{129, 36, 64}, {1000, 200, 72}, {4096, 784, 128}};
  for (const cuda::GemmTile tile : {cuda::GemmTile::Wgmma, cuda::GemmTile::Wgmma128})
  for (const Shape& sh : shapes)
    for (GemmPrecision prec : kTensorCore) {
      const int B = sh.B, K = sh.K, N = sh.N;
      INFO(B, "x", K, "->", N, std::string(tile == cuda::GemmTile::Wgmma ? " 128x64 " : " 128x128"),
           (prec == GemmPrecision::TF32 ? " tf32" : " bf16"));
      const auto X = random_vector(std::size_t(B) * K, 81 + B), dZ = random_vector(std::size_t(B) * N, 82 + K);
      const auto Xr = rounded(X, prec), dZr = rounded(dZ, prec), aX = rounded(X, prec, true),
                 adZ = rounded(dZ, prec, true);
      // The CPU twin over rows [r0, r1): dW [N,K] and db [N] (Σ of rounded dZ; the ones are exact),
      // and their magnitudes (the same sums of absolute values) for the tolerance.
      auto twin = [&](int r0, int r1, std::vector<double>& rW, std::vector<double>& rb, std::vector<double>& mW,
                      std::vector<double>& mb) {
        const std::size_t o = std::size_t(r0);
        rW.assign(std::size_t(N) * K, 0.0), mW.assign(rW.size(), 0.0), rb.assign(N, 0.0), mb.assign(N, 0.0);
        cpu::gemm_tn(rW.data(), dZr.data() + o * N, Xr.data() + o * K, N, K, r1 - r0);
        cpu::gemm_tn(mW.data(), adZ.data() + o * N, aX.data() + o * K, N, K, r1 - r0);
        for (std::size_t i = o * N; i < std::size_t(r1) * N; ++i) rb[i % N] += dZr[i], mb[i % N] += adZ[i];
      };
      std::vector<double> rW, rb, mW, mb;
      twin(0, B, rW, rb, mW, mb);
      auto gX = to_device(X), gdZ = to_device(dZ);
      const std::size_t wsn = cuda::dense_workspace_floats(B, K, N);
      DeviceBuffer<float> ws(std::max<std::size_t>(wsn, 1));
      DeviceBuffer<unsigned> tk(std::max<std::size_t>(cuda::dense_ticket_count(B, K, N), 1));
      CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
      const int S = cuda::dense_weight_slices(B, K, N);
      const std::size_t per = std::size_t(N) * std::size_t(K + 1);
      CHECK(S == (B >= 512 ? (B == 1000 ? 11 : 16) : 1));
      cuda::dense_force_tile({tile, false});
      auto dW = poisoned<float>(rW.size()), db = poisoned<float>(N);
      auto sW = poisoned<float>(rW.size()), sb = poisoned<float>(N), tW = poisoned<float>(rW.size()),
           tb = poisoned<float>(N);
      auto part = poisoned<float>(std::size_t(S) * per);
      cuda::dense_backward_weights(dW.data(), db.data(), gdZ.data(), gX.data(), B, K, N, stream.get(), prec);
      cuda::dense_backward_weights(sW.data(), sb.data(), gdZ.data(), gX.data(), B, K, N, stream.get(), prec,
                                   wsn ? ws.data() : nullptr);
      cuda::dense_backward_weights(tW.data(), tb.data(), gdZ.data(), gX.data(), B, K, N, stream.get(), prec,
                                   wsn ? ws.data() : nullptr, wsn ? tk.data() : nullptr);
      cuda::dense_weight_partials(part.data(), gdZ.data(), gX.data(), B, K, N, stream.get(), prec);
      cuda::dense_force_tile({});
      expect_within(to_host(dW), rW, mW, B, 1.0, "dW, no workspace");
      expect_within(to_host(db), rb, mb, B, 1.0, "db, no workspace");
      const std::vector<float> hW = to_host(sW), hb = to_host(sb);
      expect_within(hW, rW, mW, B, 1.0, "dW, workspace");
      expect_within(hb, rb, mb, B, 1.0, "db, workspace");
      CHECK(bitwise_equal(to_host(tW), hW));
      CHECK(bitwise_equal(to_host(tb), hb));
      // The slices: slice z covers rows [z·R, min(B, (z+1)·R)), R = ceil(B/S) rounded up to 32.
      const std::vector<float> hp = to_host(part);
      const int R = S > 1 ? ((B + S - 1) / S + 31) / 32 * 32 : B;
      std::vector<float> sumW(rW.size(), 0.0f), sumb(N, 0.0f);
      for (int z = 0; z < S; ++z) {
        INFO("slice ", z);
        const int r0 = z * R, r1 = std::min(B, r0 + R);
        std::vector<double> zW, zb, zmW, zmb;
        twin(r0, r1, zW, zb, zmW, zmb);
        std::vector<float> pW(zW.size()), pb(N);
        for (int n = 0; n < N; ++n)
          for (int k = 0; k <= K; ++k) {
            const float v = hp[std::size_t(z) * per + std::size_t(n) * (K + 1) + k];
            (k < K ? pW[std::size_t(n) * K + k] : pb[n]) = v;
            (k < K ? sumW[std::size_t(n) * K + k] : sumb[n]) += v;
          }
        expect_within(pW, zW, zmW, r1 - r0, 1.0, "partials dW slice");
        expect_within(pb, zb, zmb, r1 - r0, 1.0, "partials db slice");
      }
      if (S > 1) {  // the workspace's reduction sums the same slices in the same order
        CHECK(bitwise_equal(sumW, hW));
        CHECK(bitwise_equal(sumb, hb));
      }
    }
}

}  // namespace
}  // namespace mnist::test
