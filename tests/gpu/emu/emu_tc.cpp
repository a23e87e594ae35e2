// Emulated checks of the tensor-core (TF32 / BF16) dense GEMMs (kernels/dense.cu with
// ov/kernels/mma.cuh): every GEMM kind of the model, at every precision, on the op-case shapes
// (row and column tails, one row, one column, K not a multiple of the 8/16-deep mma or the 32-deep
// slice), every output element against the CPU reference with the same input rounding.
//
// Tolerance, derived: with the inputs rounded identically, every product a·b is exact in float
// (TF32 11-bit x 11-bit and BF16 8-bit x 8-bit significands fit in 24 bits), so kernel and
// reference differ only in how the K products are summed. Any order of float32 additions, each
// rounded (or truncated, as a tensor core may do inside one mma) with relative error <= 2^-23,
// stays within K·2^-23·Σ_k |a_k·b_k| of the exact sum (Higham's γ_K bound with u = 2^-23). The
// reference is computed in double from the rounded inputs; epilogues add at most two more
// roundings (bias, dropout scale), and ReLU and the masks are 1-Lipschitz, so each element is
// checked as |out - ref| <= (K+2)·2^-23·scale·(Σ_k |a_k b_k| + |bias|) + 1e-30.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dense.cuh"
#include "tests/gpu/dense_backward_ref.cuh"
#include "kernels/cp_async.cuh"
#include "kernels/mma.cuh"
#include "kernels/wgmma.cuh"
#include "kernels/op_cases.hpp"
#include "layers/cpu_ops.hpp"
#include "runtime/error.hpp"


using namespace mnist;
using Vec = std::vector<float>;
using DVec = std::vector<double>;
static int failures = 0, checks = 0;

Vec rnd(std::size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  Vec v(n);
  for (auto& x : v) x = float(d(g));
  return v;
}
Vec poison(std::size_t n) {
  Vec v(n);
  std::memset(v.data(), 0xFF, n * sizeof(float));
  return v;
}
DVec rounded_dbl(const Vec& v, GemmPrecision p) {
  DVec o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = double(round_input(p, v[i]));
  return o;
}
DVec absd(DVec v) {
  for (auto& x : v) x = std::fabs(x);
  return v;
}

// Every element: |out - ref| <= (K+2)·2^-23·scale·mag (see the header), mag = Σ|a b| (+|bias|).
// Returns the largest |out - ref| / tolerance.
double check(const Vec& out, const DVec& ref, const DVec& mag, int K, double scale, const std::string& what) {
  ++checks;
  double worst = 0;
  std::size_t bad = out.size() == ref.size() ? 0 : 1;
  for (std::size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    const double tol = double(K + 2) * std::ldexp(1.0, -23) * scale * mag[i] + 1e-30;
    const double err = std::fabs(double(out[i]) - ref[i]);
    if (!(err <= tol)) ++bad;  // NaN (an unwritten, poisoned element) fails too
    worst = std::max(worst, err / tol);
  }
  if (bad) {
    ++failures;
    std::printf("FAIL %s: %zu elements out of tolerance (worst %.3g x tol)\n", what.c_str(), bad, worst);
  }
  return worst;
}
void same(const Vec& a, const Vec& b, const std::string& what) {
  ++checks;
  if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) {
    ++failures;
    std::printf("FAIL %s: not bitwise equal\n", what.c_str());
  }
}
void expect(bool c, const std::string& what) {
  ++checks;
  if (!c) {
    ++failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

// Y [B,N] = X [B,K]·W [N,K]ᵀ, in double from already rounded inputs.
DVec gemm_xwt(const DVec& X, const DVec& W, int B, int K, int N) {
  DVec Y(std::size_t(B) * N);
  cpu::gemm_nt(Y.data(), X.data(), W.data(), B, N, K, false);
  return Y;
}

// The rounding functions themselves: the TF32 and BF16 rules on hand-picked ties and limits.
void rounding_cases() {
  const float tie_tf32 = bits_float(0x3F801000u);  // 1 + 2^-11: exactly half a TF32 ulp above 1
  expect(round_tf32(tie_tf32) == bits_float(0x3F802000u), "tf32 tie rounds away from zero");
  expect(round_tf32(-tie_tf32) == -bits_float(0x3F802000u), "tf32 negative tie rounds away from zero");
  expect(round_tf32(bits_float(0x3F800FFFu)) == 1.0f, "tf32 below the tie rounds down");
  const float tie_bf16_even = bits_float(0x3F808000u);  // 1 + 2^-8: tie, kept LSB 0 -> stays
  const float tie_bf16_odd = bits_float(0x3F818000u);   // kept LSB 1 -> rounds up
  expect(round_bf16(tie_bf16_even) == 1.0f, "bf16 tie to even (down)");
  expect(round_bf16(tie_bf16_odd) == bits_float(0x3F820000u), "bf16 tie to even (up)");
  expect(std::isinf(round_bf16(3.4e38f)) && std::isinf(round_tf32(3.4028235e38f)), "overflow rounds to inf");
  expect(std::isnan(round_tf32(NAN)) && std::isnan(round_bf16(NAN)), "nan stays nan");
  // The emulated instruction wrappers use the same rules.
  expect(cuda::to_tf32(tie_tf32) == 0x3F802000u, "to_tf32 = round_tf32");
  expect(cuda::pack_bf16x2(tie_bf16_odd, -1.0f) == 0xBF803F82u, "pack_bf16x2 order and rounding");
}

void layer_cases(GemmPrecision prec, int B, const cases::LayerShape& L, bool relu) {
  const int K = L.in, N = L.out;
  const char* pn = prec == GemmPrecision::TF32 ? "tf32" : "bf16";
  const std::string tag = cat(pn, " B=", B, " K=", K, " N=", N, relu ? " relu" : "");
  const Vec X = rnd(std::size_t(B) * K, 1 + B + K), W = rnd(std::size_t(N) * K, 2 + N, -.5, .5), b = rnd(N, 3);
  const Vec dY = rnd(std::size_t(B) * N, 4 + B), Y = rnd(std::size_t(B) * N, 5 + N);
  const DVec Xr = rounded_dbl(X, prec), Wr = rounded_dbl(W, prec);

  // Forward: the CPU twin with the same rounding (in double: exact products, exact-ish sums).
  DVec ref(std::size_t(B) * N), mag = gemm_xwt(absd(Xr), absd(Wr), B, K, N);
  cpu::dense_forward(ref.data(), DVec(X.begin(), X.end()).data(), DVec(W.begin(), W.end()).data(),
                     DVec(b.begin(), b.end()).data(), B, K, N, relu, prec);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) mag[std::size_t(r) * N + j] += std::fabs(b[j]);
  Vec out = poison(ref.size());
  cuda::dense_forward(out.data(), X.data(), W.data(), b.data(), B, K, N, relu, nullptr, prec);
  check(out, ref, mag, K, 1.0, "forward " + tag);
  if (K <= 129 && B >= 7) {  // the rounding really happens: the unrounded product is out of tolerance
    DVec full(ref.size());
    cpu::dense_forward(full.data(), DVec(X.begin(), X.end()).data(), DVec(W.begin(), W.end()).data(),
                       DVec(b.begin(), b.end()).data(), B, K, N, relu, GemmPrecision::FP32);
    double worst = 0;
    for (std::size_t i = 0; i < full.size(); ++i)
      worst = std::max(worst, std::fabs(double(out[i]) - full[i]) /
                                  (double(K + 2) * std::ldexp(1.0, -23) * mag[i] + 1e-30));
    expect(worst > 1.0, "inputs are rounded (differs from float32 beyond the tolerance) " + tag);
  }
  if (relu) {
    DVec d(ref.size());
    cpu::dropout_forward(d.data(), ref.data(), ref.size(), 0.2f, 42, 17, 1);
    Vec D = poison(ref.size());
    cuda::dense_relu_dropout_forward(D.data(), X.data(), W.data(), b.data(), B, K, N,
                                     cuda::DropoutSpec{0.2f, 42, 17, 1, nullptr}, nullptr, prec);
    check(D, d, mag, K, 1.25, "fwd+dropout " + tag);
  }

  // Backward twin (ReLU mask on dY when relu): dW, db, dX against cpu::dense_backward(prec).
  DVec dX(std::size_t(B) * K), dW(std::size_t(N) * K), db(N), dZ(std::size_t(B) * N);
  cpu::dense_backward(dX.data(), dW.data(), db.data(), dZ.data(), DVec(dY.begin(), dY.end()).data(),
                      DVec(X.begin(), X.end()).data(), DVec(W.begin(), W.end()).data(),
                      DVec(Y.begin(), Y.end()).data(), B, K, N, relu, prec);
  // dZ now holds the rounded, masked gradient: the magnitudes of each GEMM.
  DVec mdW(dW.size()), mdb(N, 0.0), mdX(dX.size());
  cpu::gemm_tn(mdW.data(), absd(dZ).data(), absd(Xr).data(), N, K, B);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) mdb[j] += std::fabs(dZ[std::size_t(r) * N + j]);
  cpu::gemm_nn(mdX.data(), absd(dZ).data(), absd(Wr).data(), B, K, N);
  Vec gdX = poison(dX.size()), gdW = poison(dW.size()), gdb = poison(N);
  test::dense_backward(gdX.data(), gdW.data(), gdb.data(), dY.data(), X.data(), W.data(), Y.data(), B, K,
                       N, relu, nullptr, prec);
  check(gdX, dX, mdX, N, 1.0, "dX " + tag);
  check(gdW, dW, mdW, B, 1.0, "dW " + tag);
  check(gdb, db, mdb, B, 1.0, "db " + tag);

  // The engine's pieces: weights + masked data gradient in one launch, and each alone (bitwise
  // the same: the same tiles, the same mma sequence per element).
  if (!relu) {
    const Vec Dm = rnd(std::size_t(B) * K, 9);
    DVec rdX(dX.size());
    const DVec dYr = rounded_dbl(dY, prec);
    cpu::gemm_nn(rdX.data(), dYr.data(), Wr.data(), B, K, N);
    DVec mX(dX.size());
    cpu::gemm_nn(mX.data(), absd(dYr).data(), absd(Wr).data(), B, K, N);
    for (std::size_t i = 0; i < rdX.size(); ++i) rdX[i] = Dm[i] > 0 ? rdX[i] * 1.25 : 0.0;
    Vec f1 = poison(dX.size()), f2 = poison(dW.size()), f3 = poison(N);
    cuda::dense_backward_fused(f2.data(), f3.data(), f1.data(), dY.data(), X.data(), W.data(), Dm.data(), 1.25f, B,
                               K, N, nullptr, prec);
    check(f1, rdX, mX, N, 1.25, "fused bwd dX masked " + tag);
    check(f2, dW, mdW, B, 1.0, "fused bwd dW " + tag);
    check(f3, db, mdb, B, 1.0, "fused bwd db " + tag);
    Vec g1 = poison(dX.size()), g2 = poison(dW.size()), g3 = poison(N);
    cuda::dense_backward_data(g1.data(), dY.data(), W.data(), Dm.data(), 1.25f, B, K, N, nullptr, prec);
    cuda::dense_backward_weights(g2.data(), g3.data(), dY.data(), X.data(), B, K, N, nullptr, prec);
    same(g1, f1, "bwd data alone = fused " + tag);
    same(g2, f2, "bwd weights alone = fused " + tag);
    same(g3, f3, "bwd bias alone = fused " + tag);
  }
}

// A row's result does not depend on the batch it is computed in (64x64 tiles for the big batch,
// 32x32 for one row: the same 32-deep slices and mma sequence per element).
void batch_independence(GemmPrecision prec) {
  const int B = 1000, K = 40, N = 1000;  // 16 x 16 = 256 tiles of 64x64: the big-tile path
  const Vec X = rnd(std::size_t(B) * K, 61), W = rnd(std::size_t(N) * K, 62), b = rnd(N, 63);
  Vec out = poison(std::size_t(B) * N);
  cuda::dense_forward(out.data(), X.data(), W.data(), b.data(), B, K, N, false, nullptr, prec);
  const DVec Xr = rounded_dbl(X, prec), Wr = rounded_dbl(W, prec);
  DVec ref = gemm_xwt(Xr, Wr, B, K, N), mag = gemm_xwt(absd(Xr), absd(Wr), B, K, N);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) ref[std::size_t(r) * N + j] += b[j], mag[std::size_t(r) * N + j] += std::fabs(b[j]);
  check(out, ref, mag, K, 1.0, "forward big tiles");
  for (int r : {0, 63, 64, 999}) {
    Vec one = poison(N);
    cuda::dense_forward(one.data(), X.data() + std::size_t(r) * K, W.data(), b.data(), 1, K, N, false, nullptr,
                        prec);
    same(one, Vec(out.begin() + std::size_t(r) * N, out.begin() + std::size_t(r + 1) * N), cat("row ", r, " alone"));
  }
}

// Split-K of the weight GEMM (dense_backward_weights / dense_backward_fused with a workspace): the
// split really happens (the bits differ from the unsplit chain), stays within the derived
// tolerance, and is bitwise the same alone and fused with the data GEMM, even where the two
// launches pick different tiles (see main): the split points depend on (B, K, N) only.
void split_k(GemmPrecision prec, int B, int K, int N) {
  const std::string tag = cat(prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              " split-K B=", B, " K=", K, " N=", N);
  const std::size_t ws_floats = cuda::dense_workspace_floats(B, K, N);
  expect(ws_floats > 0, "the shape is split " + tag);
  const Vec X = rnd(std::size_t(B) * K, 71), dZ = rnd(std::size_t(B) * N, 72), W = rnd(std::size_t(N) * K, 73);
  const Vec mask = rnd(std::size_t(B) * K, 74);
  Vec ws = poison(ws_floats);
  const DVec Xr = rounded_dbl(X, prec), dZr = rounded_dbl(dZ, prec);
  DVec ref(std::size_t(N) * K), mag(ref.size()), rdb(N, 0.0), mdb(N, 0.0);
  cpu::gemm_tn(ref.data(), dZr.data(), Xr.data(), N, K, B);
  cpu::gemm_tn(mag.data(), absd(dZr).data(), absd(Xr).data(), N, K, B);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) rdb[j] += dZr[std::size_t(r) * N + j], mdb[j] += std::fabs(dZr[std::size_t(r) * N + j]);
  Vec dW = poison(ref.size()), db = poison(N);
  cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, ws.data());
  check(dW, ref, mag, B, 1.0, "dW " + tag);
  check(db, rdb, mdb, B, 1.0, "db " + tag);
  Vec dW1 = poison(ref.size()), db1 = poison(N);
  cuda::dense_backward_weights(dW1.data(), db1.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, nullptr);
  expect(std::memcmp(dW1.data(), dW.data(), dW.size() * sizeof(float)) != 0, "split changes the summation " + tag);
  Vec fW = poison(ref.size()), fb = poison(N), fX = poison(std::size_t(B) * K);
  cuda::dense_backward_fused(fW.data(), fb.data(), fX.data(), dZ.data(), X.data(), W.data(), mask.data(), 1.25f, B, K,
                             N, nullptr, prec, ws.data());
  same(fW, dW, "fused = alone, dW " + tag);
  same(fb, db, "fused = alone, db " + tag);
}

// dense_force_weight_pieces (bench_kernels' pieces sweep): the count asked for (5 pieces of 128 rows
// at 600 rows, where the model cuts 7 of 96), every size following it, the split GEMM still the CPU twin's
// (split_k's checks), and the model's count back after 0.
void forced_pieces(GemmPrecision prec) {
  const int B = 600, K = 33, N = 10;
  const int model = cuda::dense_weight_slices(B, K, N);
  expect(model == 7, "the model cuts 600 rows in 7");
  cuda::dense_force_weight_pieces(5);
  expect(cuda::dense_weight_slices(B, K, N) == 5, "five pieces forced");
  expect(cuda::dense_weight_partial_floats(B, K, N) == std::size_t(5) * N * (K + 1), "the pieces' floats follow");
  expect(cuda::dense_workspace_floats(B, K, N) == std::size_t(5) * N * (K + 1), "the workspace follows");
  split_k(prec, B, K, N);
  cuda::dense_force_weight_pieces(0);
  expect(cuda::dense_weight_slices(B, K, N) == model, "the model's count back");
}

// Split-K of a deep forward GEMM (dense_forward / dense_relu_dropout_forward with a workspace, K >=
// 512): split points depend on K only, so it still holds that a row's result does not depend on
// its batch (bitwise), the split really happens, and the reduction applies bias, ReLU and the
// dropout mask (step read from the device counters) within the derived tolerance.
void forward_split(GemmPrecision prec, int B, int K, int N) {
  const std::string tag = cat(prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              " forward split-K B=", B, " K=", K, " N=", N);
  const std::size_t ws_floats = cuda::dense_workspace_floats(B, K, N);
  expect(ws_floats >= std::size_t(2) * B * N, "the forward is split " + tag);
  Vec ws = poison(ws_floats);
  const Vec X = rnd(std::size_t(B) * K, 81), W = rnd(std::size_t(N) * K, 82, -.5, .5), b = rnd(N, 83);
  const DVec Xr = rounded_dbl(X, prec), Wr = rounded_dbl(W, prec);
  DVec ref = gemm_xwt(Xr, Wr, B, K, N), mag = gemm_xwt(absd(Xr), absd(Wr), B, K, N);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) {
      const std::size_t i = std::size_t(r) * N + j;
      ref[i] = std::max(ref[i] + b[j], 0.0);
      mag[i] += std::fabs(b[j]);
    }
  Vec Y = poison(ref.size());
  cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data());
  check(Y, ref, mag, K, 1.0, "Y " + tag);
  Vec Y0 = poison(ref.size());
  cuda::dense_forward(Y0.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, nullptr);
  expect(std::memcmp(Y0.data(), Y.data(), Y.size() * sizeof(float)) != 0, "split changes the summation " + tag);
  for (int r : {0, B - 1}) {
    Vec one = poison(N);
    cuda::dense_forward(one.data(), X.data() + std::size_t(r) * K, W.data(), b.data(), 1, K, N, true, nullptr, prec,
                        ws.data());
    same(one, Vec(Y.begin() + std::size_t(r) * N, Y.begin() + std::size_t(r + 1) * N), cat("row ", r, " alone ", tag));
  }
  DVec d(ref.size());
  cpu::dropout_forward(d.data(), ref.data(), ref.size(), 0.2f, 42, 23, 0);
  cuda::TrainCounters c;
  c.step = 23;
  Vec D = poison(ref.size());
  cuda::dense_relu_dropout_forward(D.data(), X.data(), W.data(), b.data(), B, K, N,
                                   cuda::DropoutSpec{0.2f, 42, 0, 0, &c}, nullptr, prec, ws.data());
  check(D, d, mag, K, 1.25, "D " + tag);
}

// Split-K in one launch (tickets, finish_split_tile): under every block order (index, reversed,
// shuffled: the last block of a tile differs), the weight GEMM alone and fused with the data GEMM
// and a forward GEMM split across blocks give bitwise the two-pass results (same pieces, the same
// additions in the order z = 0, 1, ...), in one launch instead of two, and leave every ticket 0
// (so the next launch, or graph replay, starts clean). tile: the tile forced for the TF32/BF16
// GEMMs (Auto: the launchers' choice; FP32 always runs SimtTile).
void split_tickets(GemmPrecision prec, int B, int K, int N, cuda::GemmTile tile) {
  const std::string tag = cat(prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              " tickets B=", B, " K=", K, " N=", N, " tile ", int(tile));
  const std::size_t ws_floats = cuda::dense_workspace_floats(B, K, N), nt = cuda::dense_ticket_count(B, K, N);
  expect(ws_floats > 0 && nt > 0, "the shape splits and needs tickets " + tag);
  const bool fwd_split = K >= 512;  // forward_split_cols: K only
  const Vec X = rnd(std::size_t(B) * K, 101), dZ = rnd(std::size_t(B) * N, 102), W = rnd(std::size_t(N) * K, 103);
  const Vec mask = rnd(std::size_t(B) * K, 104), b = rnd(N, 105);
  const std::size_t nk = std::size_t(N) * K, bk = std::size_t(B) * K, bn = std::size_t(B) * N;
  cuda::dense_force_tile({tile, false});
  Vec ws = poison(ws_floats);
  Vec dW0 = poison(nk), db0 = poison(N), fW0 = poison(nk), fb0 = poison(N), fX0 = poison(bk), Y0 = poison(bn);
  cuda::dense_backward_weights(dW0.data(), db0.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, ws.data());
  cuda::dense_backward_fused(fW0.data(), fb0.data(), fX0.data(), dZ.data(), X.data(), W.data(), mask.data(), 1.25f, B,
                             K, N, nullptr, prec, ws.data());
  // (the forward also with dropout: the tickets' last block and the reduction kernel both draw one
  // Philox block per quad where rows are whole quads, dense_units, one per output at N % 4 != 0;
  // the quads against per-output draws: the CPU twin's dropout in forward_split and layer_cases)
  cuda::TrainCounters ctr{};
  ctr.step = 5;
  const cuda::DropoutSpec drop{0.2f, 42, 0, 1, &ctr};
  Vec D0 = poison(bn);
  if (fwd_split) {
    cuda::dense_forward(Y0.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data());
    cuda::dense_relu_dropout_forward(D0.data(), X.data(), W.data(), b.data(), B, K, N, drop, nullptr, prec, ws.data());
  }
  for (emu::BlockOrder order : {emu::BlockOrder::Index, emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
    emu::g_block_order = order;
    const std::string t = cat(tag, " order ", int(order));
    std::vector<unsigned> tk(nt, 0u);
    Vec dW = poison(nk), db = poison(N), fW = poison(nk), fb = poison(N), fX = poison(bk), Y = poison(bn);
    long long l0 = g_emu_launches;
    cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, ws.data(),
                                 tk.data());
    expect(g_emu_launches - l0 == 1, "weight GEMM in one launch " + t);
    same(dW, dW0, "dW = two passes, " + t);
    same(db, db0, "db = two passes, " + t);
    l0 = g_emu_launches;
    cuda::dense_backward_fused(fW.data(), fb.data(), fX.data(), dZ.data(), X.data(), W.data(), mask.data(), 1.25f, B, K,
                               N, nullptr, prec, ws.data(), tk.data());
    expect(g_emu_launches - l0 == 1, "fused backward in one launch " + t);
    same(fW, fW0, "fused dW = two passes, " + t);
    same(fb, fb0, "fused db = two passes, " + t);
    same(fX, fX0, "fused dX = two passes, " + t);
    if (fwd_split) {
      l0 = g_emu_launches;
      cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data(), tk.data());
      expect(g_emu_launches - l0 == 1, "split forward in one launch " + t);
      same(Y, Y0, "forward = two passes, " + t);
      Vec D = poison(bn);
      cuda::dense_relu_dropout_forward(D.data(), X.data(), W.data(), b.data(), B, K, N, drop, nullptr, prec, ws.data(),
                                       tk.data());
      same(D, D0, "dropout forward = two passes, " + t);
    }
    bool zero = true;
    for (unsigned v : tk) zero = zero && v == 0u;
    expect(zero, "every ticket back to 0 " + t);
  }
  emu::g_block_order = emu::BlockOrder::Index;
  cuda::dense_force_tile({});
}

// The Forward GEMM's split summed across a thread block cluster (GemmTileChoice::cluster_split,
// dense_pipe_cluster_kernel): each tile's pieces as the blocks of one cluster, summed from the
// peers' shared memory. Under every cluster order (index, reversed, shuffled), bitwise the two-pass
// result of the same tile (same pieces, the same additions in the order z = 0, 1, ...), with ReLU
// and with dropout, in ONE cluster launch (no second pass, no tickets: the tickets given stay 0).
// Where the pieces are more than 8 (`fallback`) the tile runs as without cluster_split (the same
// code path as a device that launches no clusters, whose answer cluster_split_ok keeps for the
// process: not switched here).
// FP32: `simt` the SimtVecTile forced (its own clustered kernel, dense_simt_cluster_kernel).
void cluster_split(GemmPrecision prec, int B, int K, int N, cuda::GemmTile tile, bool fallback = false,
                   cuda::SimtTileKind simt = cuda::SimtTileKind::Auto) {
  const std::string tag = cat(prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              " cluster B=", B, " K=", K, " N=", N, " tile ", int(tile), " simt ", int(simt));
  auto force = [&](bool cluster) {
    cuda::dense_force_tile({tile, false, cluster});
    cuda::dense_force_simt_tile({simt, false, cluster});
  };
  const std::size_t ws_floats = cuda::dense_workspace_floats(B, K, N), nt = cuda::dense_ticket_count(B, K, N);
  expect(ws_floats > 0 && nt > 0, "the forward splits across blocks " + tag);
  const Vec X = rnd(std::size_t(B) * K, 111), W = rnd(std::size_t(N) * K, 112), b = rnd(N, 113);
  const std::size_t bn = std::size_t(B) * N;
  cuda::TrainCounters ctr{};
  ctr.step = 3;
  const cuda::DropoutSpec drop{0.2f, 7, 0, 1, &ctr};
  force(false);
  Vec ws = poison(ws_floats), Y0 = poison(bn), D0 = poison(bn);
  cuda::dense_forward(Y0.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data());
  cuda::dense_relu_dropout_forward(D0.data(), X.data(), W.data(), b.data(), B, K, N, drop, nullptr, prec, ws.data());
  force(true);
  for (emu::BlockOrder order : {emu::BlockOrder::Index, emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
    emu::g_block_order = order;
    const std::string t = cat(tag, " order ", int(order));
    std::vector<unsigned> tk(nt, 0u);
    Vec Y = poison(bn), D = poison(bn);
    const long long l0 = g_emu_launches, c0 = emu::g_emu_cluster_launches;
    cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data(), tk.data());
    if (fallback)
      expect(emu::g_emu_cluster_launches == c0, "more than 8 pieces: no cluster launch " + t);
    else
      expect(g_emu_launches - l0 == 1 && emu::g_emu_cluster_launches - c0 == 1, "one cluster launch " + t);
    same(Y, Y0, "forward = two passes, " + t);
    cuda::dense_relu_dropout_forward(D.data(), X.data(), W.data(), b.data(), B, K, N, drop, nullptr, prec, ws.data());
    same(D, D0, "dropout forward = two passes, " + t);
    bool zero = true;
    for (unsigned v : tk) zero = zero && v == 0u;
    expect(zero, "the tickets untouched " + t);
  }
  emu::g_block_order = emu::BlockOrder::Index;
  cuda::dense_force_tile({});
  cuda::dense_force_simt_tile({});
}

// Layer 0's weight GEMM with Adam in its clustered finish (dense_weight_adam, the tail path's): each
// [dW | db] tile's pieces the blocks of one cluster (up to 16: the non-portable size), summed from
// the peers' shared memory and applied by Adam in the same launch. Under every cluster order, in ONE
// cluster launch, bitwise what it replaces: dense_weight_partials' pieces, then adam_reduce_update of
// that one segment (p, m, v; the gradient, g_out; the rounded copy), every element outside the
// segment (the gaps around W and b) untouched in all of them. X as floats or from the images by
// index; `pieces` forced (dense_force_weight_pieces) or the model's (0). The layer's span sits at odd
// offsets (W at 5, b after a gap of 3), so a quad's parameters are not 16-byte aligned.
void weight_adam(GemmPrecision prec, int B, int K, int N, cuda::WeightAdamTile tile, int pieces, bool images,
                 bool rounded) {
  const std::string tag = cat(prec == GemmPrecision::FP32 ? "fp32" : prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              " weight+adam B=", B, " K=", K, " N=", N, " tile ", int(tile), " pieces ", pieces,
                              images ? " images" : " floats", rounded ? " rounded" : "");
  cuda::dense_force_weight_pieces(pieces);
  const int slices = cuda::dense_weight_slices(B, K, N);
  expect(pieces == 0 || slices == pieces, "the pieces forced " + tag);
  expect(cuda::dense_weight_adam_tile(B, K, N, prec, images, tile) == tile, "the tile runs here " + tag);
  const std::size_t w_off = 5, b_off = w_off + std::size_t(N) * K + 3, total = b_off + N + 4;
  const Vec p0 = rnd(total, 201), m0 = rnd(total, 202, -0.05, 0.05), v0 = rnd(total, 203, 0.0, 0.01);
  const Vec dZ = rnd(std::size_t(B) * N, 204, -0.5, 0.5);
  // X: floats, or 600 images of K pixels read through a permutation
  const int n_img = 600;
  std::vector<uint8_t> pix(std::size_t(n_img) * K);
  std::mt19937_64 g(205);
  for (auto& x : pix) x = uint8_t(g() % 256);
  std::vector<int32_t> idx(n_img);
  for (int i = 0; i < n_img; ++i) idx[i] = (i * 37 + 11) % n_img;
  const Vec Xf = rnd(std::size_t(B) * K, 206, 0, 1);
  const cuda::DenseInput X = images ? cuda::DenseInput::images_by_index(pix.data(), idx.data(), 7) : cuda::DenseInput(Xf.data());
  cuda::TrainCounters ctr{};
  ctr.step = 7;
  ctr.lr = 1e-3f;
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
  // What it replaces: the pieces in memory, then their segment of the optimizer's pass.
  Vec partial = poison(cuda::dense_weight_partial_floats(B, K, N));
  cuda::dense_weight_partials(partial.data(), dZ.data(), X, B, K, N, nullptr, prec);
  cuda::GradSlicesSet set;
  set.seg[set.count++] = {partial.data(), slices, std::size_t(N) * std::size_t(K + 1), N, K, w_off, b_off};
  Vec pr = p0, mr = m0, vr = v0, gr = poison(total), qr = poison(total);
  const cuda::RoundedParams rq_ref = rounded ? cuda::RoundedParams{qr.data(), prec} : cuda::RoundedParams{};
  cuda::adam_reduce_update(pr.data(), mr.data(), vr.data(), gr.data(), set, &ctr, b1, b2, eps, nullptr, nullptr, {},
                           rq_ref);
  expect(std::memcmp(pr.data(), p0.data(), total * sizeof(float)) != 0, "the reference moved the parameters " + tag);
  for (emu::BlockOrder order : {emu::BlockOrder::Index, emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
    emu::g_block_order = order;
    const std::string t = cat(tag, " order ", int(order));
    Vec p = p0, m = m0, v = v0, gv = poison(total), q = poison(total);
    cuda::WeightAdam a;
    a.p = p.data(), a.m = m.data(), a.v = v.data(), a.g_out = gv.data();
    a.w_offset = w_off, a.b_offset = b_off;
    a.counters = &ctr;
    a.b1 = b1, a.b2 = b2, a.eps = eps;
    if (rounded) a.rounded = {q.data(), prec};
    const long long l0 = g_emu_launches, c0 = emu::g_emu_cluster_launches;
    cuda::dense_weight_adam(a, dZ.data(), X, B, K, N, nullptr, prec, false, false, tile);
    expect(g_emu_launches - l0 == 1 && emu::g_emu_cluster_launches - c0 == 1, "one cluster launch " + t);
    same(p, pr, "parameters = pieces + adam_reduce_update, " + t);
    same(m, mr, "first moments, " + t);
    same(v, vr, "second moments, " + t);
    same(gv, gr, "gradient, " + t);
    if (rounded) same(q, qr, "rounded copy, " + t);
  }
  emu::g_block_order = emu::BlockOrder::Index;
  cuda::dense_force_weight_pieces(0);
}

// More pieces than a cluster holds (17 forced): no tile, and dense_weight_adam refuses in one line
// naming the count, having launched nothing; the same for no rows.
void weight_adam_refusals() {
  const int B = 17 * 32, K = 20, N = 8;
  cuda::dense_force_weight_pieces(17);
  expect(cuda::dense_weight_slices(B, K, N) == 17, "17 pieces forced");
  expect(cuda::dense_weight_adam_tile(B, K, N, GemmPrecision::TF32, false) == cuda::WeightAdamTile::None,
         "17 pieces: no tile");
  const Vec dZ = rnd(std::size_t(B) * N, 1), X = rnd(std::size_t(B) * K, 2);
  Vec p = rnd(N * K + N, 3), m(p.size(), 0.0f), v(p.size(), 0.0f);
  cuda::TrainCounters ctr{};
  ctr.step = 1;
  cuda::WeightAdam a;
  a.p = p.data(), a.m = m.data(), a.v = v.data(), a.b_offset = std::size_t(N) * K, a.counters = &ctr;
  const auto refused = [&](int rows, const std::string& want) {
    const long long l0 = g_emu_launches;
    std::string what;
    try {
      cuda::dense_weight_adam(a, dZ.data(), X.data(), rows, K, N, nullptr, GemmPrecision::TF32);
    } catch (const Error& e) {
      what = e.what();
    }
    expect(what.find("dense_weight_adam") != std::string::npos && what.find(want) != std::string::npos &&
               g_emu_launches == l0,
           cat("dense_weight_adam refused at ", rows, " rows: '", what, "'"));
  };
  refused(B, "17 pieces");
  cuda::dense_force_weight_pieces(0);
  expect(cuda::dense_weight_adam_tile(64, 22, N, GemmPrecision::TF32, false) == cuda::WeightAdamTile::None &&
             cuda::dense_weight_adam_tile(64, 22, N, GemmPrecision::FP32, false) != cuda::WeightAdamTile::None,
         "K = 22: no tensor-core tile, an FP32 one");
  refused(0, "no rows");
}

// dense_force_ablation (bench_kernels' ablation rows) on the tiles it applies to, TF32 PipeTile
// 128x128 and 64x64 x 8 warps and the wide wgmma forward tile: without the prepare pass, inputs already rounded to TF32 give the
// whole loop's bits and unrounded ones do not (the pass was skipped, so the ablated kernel ran);
// without the mma (alone, or the skeleton without copies too) every sum is 0, so the forward is
// exactly its epilogue of 0 (ReLU(b)) and the weight GEMM's dW and db are 0; another tile
// (PipeTile 64x64 x 4 warps) and BF16 run whole; an uninstantiated set of bits is refused; 0 restores.
void ablation_cases() {
  const GemmPrecision tf32 = GemmPrecision::TF32;
  const int B = 100, K = 544, N = 36;  // the forward split across blocks in 3 pieces (tickets), 2 row tiles
  const std::size_t bn = std::size_t(B) * N, nk = std::size_t(N) * K;
  auto rounded = [](Vec v, GemmPrecision p) {
    for (auto& x : v) x = round_input(p, x);
    return v;
  };
  const Vec X = rnd(std::size_t(B) * K, 111, 0, 1), W = rnd(nk, 112, -.5, .5), b = rnd(N, 113), dZ = rnd(bn, 114);
  const Vec Xr = rounded(X, tf32), Wr = rounded(W, tf32), dZr = rounded(dZ, tf32);
  Vec ws = poison(cuda::dense_workspace_floats(B, K, N));
  std::vector<unsigned> tk(cuda::dense_ticket_count(B, K, N), 0u);
  auto forward = [&](cuda::GemmTileChoice tile, unsigned bits, const Vec& x, const Vec& w, GemmPrecision p) {
    cuda::dense_force_tile(tile);
    cuda::dense_force_ablation(bits);
    Vec Y = poison(bn);
    cuda::dense_forward(Y.data(), x.data(), w.data(), b.data(), B, K, N, true, nullptr, p, ws.data(), tk.data());
    cuda::dense_force_ablation(0);
    cuda::dense_force_tile({});
    return Y;
  };
  Vec relu_b(bn);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) relu_b[std::size_t(r) * N + j] = std::max(b[j], 0.0f);
  std::vector<cuda::GemmTileChoice> tiles{{cuda::GemmTile::Pipe128, false}, {cuda::GemmTile::Pipe64x8, true}};
  if (cuda::dense_wgmma_available()) tiles.push_back({cuda::GemmTile::WgmmaWide, true});
  expect(tiles.size() == 3, "the emulation runs the wgmma tiles");
  for (const auto& tile : tiles) {
    const std::string tag = cat("ablation forward tile ", int(tile.tile), tile.fold_forward_split ? " fold" : "");
    const Vec whole_r = forward(tile, 0, Xr, Wr, tf32), whole = forward(tile, 0, X, W, tf32);
    same(forward(tile, cuda::kAblatePrepare, Xr, Wr, tf32), whole_r, "no prepare on rounded inputs = whole, " + tag);
    expect(forward(tile, cuda::kAblatePrepare, X, W, tf32) != whole, "no prepare on raw inputs differs, " + tag);
    same(forward(tile, cuda::kAblateMath, X, W, tf32), relu_b, "no mma: the epilogue of 0, " + tag);
    same(forward(tile, cuda::kAblateCopies | cuda::kAblatePrepare | cuda::kAblateMath, X, W, tf32), relu_b,
         "skeleton: the epilogue of 0, " + tag);
    same(forward(tile, 0, X, W, tf32), whole, "0 restores the whole loop, " + tag);
    forward(tile, cuda::kAblateCopies, X, W, tf32);  // (stale stages: no check of its values; the tickets below)
  }
  // not ablated: the 4-warp 64x64 tile, and BF16 on the 8-warp one
  const cuda::GemmTileChoice p64{cuda::GemmTile::Pipe64, true}, p64x8{cuda::GemmTile::Pipe64x8, true};
  same(forward(p64, cuda::kAblateMath, X, W, tf32), forward(p64, 0, X, W, tf32), "Pipe64 runs whole");
  same(forward(p64x8, cuda::kAblateMath, X, W, GemmPrecision::BF16), forward(p64x8, 0, X, W, GemmPrecision::BF16),
       "bf16 runs whole");
  // the weight GEMM's pieces (dense_weight_partials, as the tail path) and the split weight GEMM,
  // on both weight tiles the ablation rows time (64x64 x 8 warps, 128x128)
  for (const cuda::GemmTile wtile : {cuda::GemmTile::Pipe64x8, cuda::GemmTile::Pipe128}) {
    const std::string wtag = cat(" (tile ", int(wtile), ")");
    auto weight = [&](unsigned bits, const Vec& dz, const Vec& x) {
      cuda::dense_force_tile({wtile, false});
      cuda::dense_force_ablation(bits);
      Vec dW = poison(nk), db = poison(N);
      cuda::dense_backward_weights(dW.data(), db.data(), dz.data(), x.data(), B, K, N, nullptr, tf32, ws.data(),
                                   tk.data());
      cuda::dense_force_ablation(0);
      cuda::dense_force_tile({});
      dW.insert(dW.end(), db.begin(), db.end());
      return dW;
    };
    const Vec wr = weight(0, dZr, Xr);
    same(weight(cuda::kAblatePrepare, dZr, Xr), wr, "weight: no prepare on rounded inputs = whole" + wtag);
    expect(weight(cuda::kAblatePrepare, dZ, X) != weight(0, dZ, X), "weight: no prepare on raw inputs differs" + wtag);
    same(weight(cuda::kAblateMath, dZ, X), Vec(nk + N, 0.0f), "weight: no mma gives 0" + wtag);
  }
  bool refused = false;
  try {
    cuda::dense_force_ablation(cuda::kAblateCopies | cuda::kAblateMath);
  } catch (const mnist::Error&) {
    refused = true;
  }
  expect(refused, "an uninstantiated set of ablation bits is refused");
  bool zero = true;
  for (unsigned v : tk) zero = zero && v == 0u;
  expect(zero, "ablation: every ticket back to 0");
}

// The pipelined cp.async tile (PipeTile, forced with dense_force_tile) on every GEMM kind against
// the CPU twins with the same input rounding (every element, the derived tolerance of the header),
// and bitwise against the single-buffered MmaTile (forced) wherever the split points are the same:
// the forward alone, split across blocks (+ reduction) and folded into the block (same pieces,
// same order of the float additions, so also bitwise); the weight GEMM alone, split, and fused
// with the data GEMM; the data GEMM with its mask. The emulated cp.async (ov/kernels/cp_async.cuh)
// poisons each destination until the issuing thread's wait lets the copy land, so a missing wait
// or barrier shows as NaN; the copy counter proves the pipelined path ran (and MmaTile's did not).
struct GemmOuts {
  Vec Y, Ys, D, dW, db, dWs, dbs, fW, fb, fX, dX;
};
GemmOuts run_gemms(GemmPrecision prec, int B, int K, int N, cuda::GemmTileChoice choice, const Vec& X, const Vec& W,
                   const Vec& b, const Vec& dZ, const Vec& mask) {
  cuda::dense_force_tile(choice);
  GemmOuts o;
  const std::size_t bn = std::size_t(B) * N, nk = std::size_t(N) * K, bk = std::size_t(B) * K;
  Vec ws = poison(std::max<std::size_t>(cuda::dense_workspace_floats(B, K, N), 1));
  o.Y = poison(bn), o.Ys = poison(bn), o.D = poison(bn);
  cuda::dense_forward(o.Y.data(), X.data(), W.data(), b.data(), B, K, N, false, nullptr, prec);
  cuda::dense_forward(o.Ys.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data());
  cuda::dense_relu_dropout_forward(o.D.data(), X.data(), W.data(), b.data(), B, K, N,
                                   cuda::DropoutSpec{0.2f, 42, 17, 1, nullptr}, nullptr, prec, ws.data());
  o.dW = poison(nk), o.db = poison(N), o.dWs = poison(nk), o.dbs = poison(N);
  cuda::dense_backward_weights(o.dW.data(), o.db.data(), dZ.data(), X.data(), B, K, N, nullptr, prec);
  cuda::dense_backward_weights(o.dWs.data(), o.dbs.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, ws.data());
  o.fW = poison(nk), o.fb = poison(N), o.fX = poison(bk), o.dX = poison(bk);
  cuda::dense_backward_fused(o.fW.data(), o.fb.data(), o.fX.data(), dZ.data(), X.data(), W.data(), mask.data(), 1.25f,
                             B, K, N, nullptr, prec, ws.data());
  cuda::dense_backward_data(o.dX.data(), dZ.data(), W.data(), mask.data(), 1.25f, B, K, N, nullptr, prec);
  cuda::dense_force_tile({});
  return o;
}

void pipe_cases(GemmPrecision prec, int B, int K, int N, cuda::GemmTile tile) {
  const std::string tag = cat(prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              tile == cuda::GemmTile::Pipe128    ? " pipe128"
                              : tile == cuda::GemmTile::Pipe64x8 ? " pipe64x8"
                                                                 : " pipe64",
                              " B=", B, " K=", K, " N=", N);
  const Vec X = rnd(std::size_t(B) * K, 91 + B), W = rnd(std::size_t(N) * K, 92 + K, -.5, .5), b = rnd(N, 93);
  const Vec dZ = rnd(std::size_t(B) * N, 94 + N), mask = rnd(std::size_t(B) * K, 95);
  const long long c0 = cuda::g_emu_cp_async_copies, l0 = cuda::g_emu_ldmatrix_calls;
  const GemmOuts mma = run_gemms(prec, B, K, N, {cuda::GemmTile::Mma, false}, X, W, b, dZ, mask);
  expect(cuda::g_emu_cp_async_copies == c0, "MmaTile issues no cp.async " + tag);
  expect(cuda::g_emu_ldmatrix_calls == l0, "MmaTile issues no ldmatrix " + tag);
  const GemmOuts pipe = run_gemms(prec, B, K, N, {tile, false}, X, W, b, dZ, mask);
  const long long c1 = cuda::g_emu_cp_async_copies;
  expect(c1 > c0, "the pipelined tile ran (cp.async copies landed) " + tag);
  // TF32 reads its k-fast operands (Forward's A and B, Data's A) with ldmatrix; BF16 never does.
  expect((cuda::g_emu_ldmatrix_calls > l0) == (prec == GemmPrecision::TF32), "ldmatrix used iff TF32 " + tag);
  const GemmOuts fold = run_gemms(prec, B, K, N, {tile, true}, X, W, b, dZ, mask);
  expect(cuda::g_emu_cp_async_copies > c1, "the folded forward ran pipelined " + tag);

  // CPU twins from the rounded inputs, in double, and the magnitudes Σ|a·b| of the tolerance.
  const DVec Xr = rounded_dbl(X, prec), Wr = rounded_dbl(W, prec), dZr = rounded_dbl(dZ, prec);
  DVec Y = gemm_xwt(Xr, Wr, B, K, N), mY = gemm_xwt(absd(Xr), absd(Wr), B, K, N), R(Y.size());
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) {
      const std::size_t i = std::size_t(r) * N + j;
      Y[i] += b[j], mY[i] += std::fabs(b[j]);
      R[i] = std::max(Y[i], 0.0);
    }
  DVec D(R.size());
  cpu::dropout_forward(D.data(), R.data(), R.size(), 0.2f, 42, 17, 1);
  DVec dW(std::size_t(N) * K), mdW(dW.size()), db(N, 0.0), mdb(N, 0.0), dX(std::size_t(B) * K), mdX(dX.size());
  cpu::gemm_tn(dW.data(), dZr.data(), Xr.data(), N, K, B);
  cpu::gemm_tn(mdW.data(), absd(dZr).data(), absd(Xr).data(), N, K, B);
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) db[j] += dZr[std::size_t(r) * N + j], mdb[j] += std::fabs(dZr[std::size_t(r) * N + j]);
  cpu::gemm_nn(dX.data(), dZr.data(), Wr.data(), B, K, N);
  cpu::gemm_nn(mdX.data(), absd(dZr).data(), absd(Wr).data(), B, K, N);
  for (std::size_t i = 0; i < dX.size(); ++i) dX[i] = mask[i] > 0 ? dX[i] * 1.25 : 0.0;

  for (const GemmOuts* o : {&pipe, &fold}) {
    const std::string t = (o == &fold ? "folded " : "") + tag;
    check(o->Y, Y, mY, K, 1.0, "Y " + t);
    check(o->Ys, R, mY, K, 1.0, "relu Y, split " + t);
    check(o->D, D, mY, K, 1.25, "dropout D, split " + t);
    check(o->dW, dW, mdW, B, 1.0, "dW " + t);
    check(o->db, db, mdb, B, 1.0, "db " + t);
    check(o->dWs, dW, mdW, B, 1.0, "dW split " + t);
    check(o->dbs, db, mdb, B, 1.0, "db split " + t);
    check(o->fW, dW, mdW, B, 1.0, "fused dW " + t);
    check(o->fb, db, mdb, B, 1.0, "fused db " + t);
    check(o->fX, dX, mdX, N, 1.25, "fused dX " + t);
    check(o->dX, dX, mdX, N, 1.25, "dX " + t);
    const std::pair<const Vec*, const Vec*> pairs[] = {
        {&o->Y, &mma.Y},     {&o->Ys, &mma.Ys}, {&o->D, &mma.D},   {&o->dW, &mma.dW}, {&o->db, &mma.db},
        {&o->dWs, &mma.dWs}, {&o->dbs, &mma.dbs}, {&o->fW, &mma.fW}, {&o->fb, &mma.fb}, {&o->fX, &mma.fX},
        {&o->dX, &mma.dX}};
    const char* names[] = {"Y", "relu Y split", "D split", "dW", "db", "dW split", "db split",
                           "fused dW", "fused db", "fused dX", "dX"};
    for (int i = 0; i < 11; ++i) same(*pairs[i].first, *pairs[i].second, cat(names[i], " = MmaTile's, ", t));
  }
}

// The wgmma model itself (ov/kernels/wgmma.cuh), against a naive GEMM on random data: one
// warpgroup multiplies a 64 x 32 A by an N x 32 B (N = 64 or 128; both K-major, stored as
// no-swizzle core matrices with the LBO/SBO given) in KSTEP-deep m64nN instructions, the first with
// scale-d 0 over accumulators filled with garbage, into D [64 x N] (every element, the tolerance of the header); the
// accumulators do not change before the wait; and the same data under a descriptor with LBO and
// SBO swapped, or core matrices written at the other offsets, gives wrong results (the model
// decodes the descriptor rather than assume a layout). Two layouts: core matrices adjacent along
// k (LBO 128, SBO = a row group's worth) and the transpose (adjacent along m/n).
template <int N>
void wgmma_model(GemmPrecision prec, bool k_adjacent) {
  const bool bf16 = prec == GemmPrecision::BF16;
  const int E = bf16 ? 2 : 4, KSTEP = bf16 ? 16 : 8, K = 32, M = 64;
  const int per_row = K * E / 16;                      // core matrices along k
  // (the transposed arrangement: core matrices along m/n adjacent, a k step N/8 of them apart)
  const uint32_t lbo = k_adjacent ? 128 : 128 * (N / 8), sbo = k_adjacent ? 128 * per_row : 128;
  const std::string tag =
      cat("wgmma model m64n", N, bf16 ? " bf16" : " tf32", k_adjacent ? " lbo 128" : " sbo 128");
  const Vec A = rnd(std::size_t(M) * K, 201), B = rnd(std::size_t(N) * K, 202);
  const DVec Ar = rounded_dbl(A, prec), Br = rounded_dbl(B, prec);
  // byte offset of element (x, k) in an operand's region (the layout the descriptor describes)
  auto at = [&](int x, int k) { return (x / 8) * sbo + (k * E / 16) * lbo + (x % 8) * 16 + (k * E) % 16; };
  const std::size_t region = std::size_t(N) * K * E;  // bytes of the larger operand
  DVec ref(std::size_t(M) * N, 0.0), mag(ref.size(), 0.0);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) {
        ref[std::size_t(m) * N + n] += Ar[std::size_t(m) * K + k] * Br[std::size_t(n) * K + k];
        mag[std::size_t(m) * N + n] += std::fabs(Ar[std::size_t(m) * K + k] * Br[std::size_t(n) * K + k]);
      }
  for (int variant = 0; variant < 2; ++variant) {  // 0: as stored; 1: LBO and SBO swapped
    Vec D = poison(ref.size());
    std::atomic<bool> unchanged_before_wait{true};
    const long long ops0 = cuda::g_emu_wgmma_ops;
    // (8 regions: the swapped descriptors reach past the two operands, up to ≈ 5.3 regions for the
    // transposed BF16 m64n128 layout; 4 regions had been too few there, hidden by the emulator's
    // rounded-up allocation until it ended each block's memory at a guard page. Above 48 KB, so
    // allowed as cudaFuncSetAttribute would)
    static const int launch_key = 0;
    emu::max_dynamic_smem()[&launch_key] = int(8 * region);
    emu::launch_dynamic(dim3(1), 128, 8 * region, &launch_key, [&] {
      unsigned char* smem = emu::dynamic_shared<unsigned char>();
      const int tid = int(threadIdx.x);
      for (int e = tid; e < N * K; e += 128) {  // store both operands rounded, in the layout
        const int x = e / K, k = e % K;
        for (int op = 0; op < 2; ++op) {
          if (op == 0 && x >= M) continue;
          const float v = float(op ? Br[e] : Ar[e]);
          unsigned char* p = smem + op * region + at(x, k);
          if (bf16) {
            const uint16_t h = uint16_t(float_bits(v) >> 16);
            std::memcpy(p, &h, 2);
          } else {
            std::memcpy(p, &v, 4);
          }
        }
      }
      cuda::fence_proxy_async();
      __syncthreads();
      float d[N / 2];
      for (float& x : d) x = 12345.0f;  // garbage that scale-d 0 must ignore
      cuda::wgmma_fence();
      const uint32_t l = variant ? sbo : lbo, s = variant ? lbo : sbo;
      for (int ks = 0; ks < K; ks += KSTEP) {
        const uint32_t off = uint32_t(ks * E / 16) * lbo;  // the step's first core matrix along k
        const uint64_t da = cuda::wgmma_desc(smem + off, l, s), db = cuda::wgmma_desc(smem + region + off, l, s);
        if (bf16)
          cuda::wgmma_bf16<N>(d, da, db, ks > 0);
        else
          cuda::wgmma_tf32<N>(d, da, db, ks > 0);
      }
      cuda::wgmma_commit();
      if (d[0] != 12345.0f || d[N / 2 - 1] != 12345.0f) unchanged_before_wait = false;
      cuda::wgmma_wait<0>();
      // D fragment (PTX ISA): thread 32w + 4g + t, d[4j + 2h + c] = D[16w + g + 8h][8j + 2t + c]
      const int w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
      for (int v = 0; v < N / 2; ++v)
        D[std::size_t(16 * w + g + 8 * ((v / 2) % 2)) * N + 8 * (v / 4) + 2 * t + v % 2] = d[v];
    });
    expect(cuda::g_emu_wgmma_ops - ops0 == 128 * (K / KSTEP), "every thread performed each wgmma once, " + tag);
    expect(unchanged_before_wait, "accumulators unchanged before wgmma_wait, " + tag);
    if (variant == 0) {
      check(D, ref, mag, K, 1.0, tag);
    } else {
      int off = 0;  // the swapped descriptor reads other elements: most results are wrong
      for (std::size_t i = 0; i < D.size(); ++i)
        off += !(std::fabs(double(D[i]) - ref[i]) <= double(K + 2) * std::ldexp(1.0, -23) * mag[i]);
      expect(off > int(D.size()) / 2, "LBO/SBO swapped reads other elements, " + tag);
    }
  }
}

// The wgmma forward tile (WgmmaTile, dense_force_tile({Wgmma, fold})) against the CPU twin with the
// same input rounding, every element, the derived tolerance of the header: the forward alone (one
// chain over K), with the engine's workspace (K >= 512: split across blocks, reduced by the second
// kernel, or with tickets in the same launch, or folded into the block), ReLU and dropout (mask
// step read from the device counters), on row tails (B not a multiple of 64), column tails (N not
// a multiple of 64) and K tails (K not a multiple of the 32-deep slice). The wgmma operation counter
// proves the tile ran; a row alone equals the row in the batch (bitwise, same split points); a K
// that breaks cp.async's 16-byte alignment (K % 4 != 0) falls back to PipeTile (no wgmma) and is
// still right.
void wgmma_cases(GemmPrecision prec, int B, int K, int N, cuda::GemmTile tile) {
  const std::string tag = cat(prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              tile == cuda::GemmTile::Wgmma      ? " wgmma 64x64"
                              : tile == cuda::GemmTile::Wgmma128 ? " wgmma 64x128"
                                                                 : " wgmma 128x128 (two warpgroups)",
                              " B=", B, " K=", K,
                              " N=", N);
  const Vec X = rnd(std::size_t(B) * K, 111 + B), W = rnd(std::size_t(N) * K, 112 + K, -.5, .5), b = rnd(N, 113);
  const DVec Xr = rounded_dbl(X, prec), Wr = rounded_dbl(W, prec);
  DVec lin = gemm_xwt(Xr, Wr, B, K, N), mag = gemm_xwt(absd(Xr), absd(Wr), B, K, N), relu(lin.size());
  for (int r = 0; r < B; ++r)
    for (int j = 0; j < N; ++j) {
      const std::size_t i = std::size_t(r) * N + j;
      lin[i] += b[j], mag[i] += std::fabs(b[j]);
      relu[i] = std::max(lin[i], 0.0);
    }
  DVec drop(relu.size());
  cpu::dropout_forward(drop.data(), relu.data(), relu.size(), 0.2f, 42, 29, 1);
  const std::size_t wsn = cuda::dense_workspace_floats(B, K, N), ntk = cuda::dense_ticket_count(B, K, N);
  const bool aligned = K % 4 == 0;
  Vec ws = poison(std::max<std::size_t>(wsn, 1));
  for (bool fold : {false, true}) {
    const std::string t = cat(tag, fold ? " fold" : "");
    cuda::dense_force_tile({tile, fold});
    const long long ops0 = cuda::g_emu_wgmma_ops;
    Vec Y = poison(lin.size());
    cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, false, nullptr, prec);
    check(Y, lin, mag, K, 1.0, "Y " + t);
    expect((cuda::g_emu_wgmma_ops > ops0) == aligned, "wgmma ran iff K % 4 == 0, " + t);
    if (wsn) {
      Vec Ys = poison(lin.size());
      cuda::dense_forward(Ys.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data());
      check(Ys, relu, mag, K, 1.0, "relu Y, engine workspace " + t);
      std::vector<unsigned> tk(ntk, 0u);
      Vec Yt = poison(lin.size());
      cuda::dense_forward(Yt.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, prec, ws.data(),
                          tk.data());
      same(Yt, Ys, "tickets = two passes / fold, " + t);
      bool zero = true;
      for (unsigned v : tk) zero = zero && v == 0u;
      expect(zero, "every ticket back to 0, " + t);
      Vec one = poison(N);
      cuda::dense_forward(one.data(), X.data() + std::size_t(B - 1) * K, W.data(), b.data(), 1, K, N, true, nullptr,
                          prec, ws.data());
      same(one, Vec(Ys.end() - N, Ys.end()), "last row alone = in the batch, " + t);
    }
    cuda::TrainCounters c;
    c.step = 29;
    Vec D = poison(lin.size());
    cuda::dense_relu_dropout_forward(D.data(), X.data(), W.data(), b.data(), B, K, N,
                                     cuda::DropoutSpec{0.2f, 42, 0, 1, &c}, nullptr, prec, wsn ? ws.data() : nullptr);
    check(D, drop, mag, K, 1.25, "dropout D " + t);
    cuda::dense_force_tile({});
  }
}

// The wgmma weight tile (WgmmaWeightTile, dense_force_tile({Wgmma or Wgmma128}) on the weight GEMM
// dW = dZᵀ·[X | 1]) against the CPU twin with the same input rounding, every element of dW and db,
// the header's tolerance with K = B rows: without a workspace (one chain over B), with the workspace
// (split pieces across blocks; reduced by the second kernel, or with tickets in the same launch:
// bitwise the same, every ticket back to 0). Row tails (N outputs not a multiple of 64 or 128),
// column tails (K+1 inputs), K tails (B rows not a multiple of 32, also in the last piece). The
// wgmma operation counter proves the tile ran (a K % 4 != 0 input width falls back to PipeTile).
void wgmma_weight_cases(GemmPrecision prec, int B, int K, int N, cuda::GemmTile tile) {
  const std::string tag = cat(prec == GemmPrecision::TF32 ? "tf32" : "bf16",
                              tile == cuda::GemmTile::Wgmma ? " wgmma weight 128x64" : " wgmma weight 128x128", " B=", B,
                              " K=", K, " N=", N);
  const Vec X = rnd(std::size_t(B) * K, 121 + B), dZ = rnd(std::size_t(B) * N, 122 + K);
  const DVec Xr = rounded_dbl(X, prec), dZr = rounded_dbl(dZ, prec);
  DVec rW(std::size_t(N) * K), mW(rW.size()), rb(N, 0.0), mb(N, 0.0);
  cpu::gemm_tn(rW.data(), dZr.data(), Xr.data(), N, K, B);
  cpu::gemm_tn(mW.data(), absd(dZr).data(), absd(Xr).data(), N, K, B);
  for (std::size_t i = 0; i < dZr.size(); ++i) rb[i % N] += dZr[i], mb[i % N] += std::fabs(dZr[i]);
  const std::size_t wsn = cuda::dense_workspace_floats(B, K, N), ntk = cuda::dense_ticket_count(B, K, N);
  cuda::dense_force_tile({tile, false});
  const long long ops0 = cuda::g_emu_wgmma_ops;
  Vec dW = poison(rW.size()), db = poison(N);
  cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, nullptr, prec);
  check(dW, rW, mW, B, 1.0, "dW " + tag);
  check(db, rb, mb, B, 1.0, "db " + tag);
  expect((cuda::g_emu_wgmma_ops > ops0) == (K % 4 == 0), "wgmma ran iff K % 4 == 0, " + tag);
  if (wsn) {
    Vec ws = poison(wsn), sW = poison(rW.size()), sb = poison(N), tW = poison(rW.size()), tb = poison(N);
    cuda::dense_backward_weights(sW.data(), sb.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, ws.data());
    check(sW, rW, mW, B, 1.0, "dW, workspace " + tag);
    check(sb, rb, mb, B, 1.0, "db, workspace " + tag);
    std::vector<unsigned> tk(ntk, 0u);
    cuda::dense_backward_weights(tW.data(), tb.data(), dZ.data(), X.data(), B, K, N, nullptr, prec, ws.data(),
                                 tk.data());
    same(tW, sW, "tickets = two passes, dW " + tag);
    same(tb, sb, "tickets = two passes, db " + tag);
    bool zero = true;
    for (unsigned v : tk) zero = zero && v == 0u;
    expect(zero, "every ticket back to 0, " + tag);
  }
  cuda::dense_force_tile({});
}

// The model at both shapes and arrangements, then both wgmma tiles on: row, column and K tails
// (129 x 200 -> 72: 6.25 slices; 129 x 200 -> 136 for 64x128: two column tiles, the second 8 wide),
// K = 36 (one slice and a 4-deep tail), a 784-deep K split in 4 pieces (the last 3.5 slices: layer
// 1's, folded or across blocks), and K = 33 (misaligned: falls back to PipeTile).
void wgmma_all(GemmPrecision prec, bool quick) {
  wgmma_model<64>(prec, true);
  wgmma_model<64>(prec, false);
  wgmma_model<128>(prec, true);
  wgmma_model<128>(prec, false);
  wgmma_cases(prec, 129, 200, 72, cuda::GemmTile::Wgmma);
  wgmma_cases(prec, 70, 36, 64, cuda::GemmTile::Wgmma);
  wgmma_cases(prec, 100, 784, quick ? 40 : 128, cuda::GemmTile::Wgmma);
  wgmma_cases(prec, 65, 33, 10, cuda::GemmTile::Wgmma);
  wgmma_cases(prec, 129, 200, 136, cuda::GemmTile::Wgmma128);
  wgmma_cases(prec, 100, 784, quick ? 40 : 128, cuda::GemmTile::Wgmma128);
  // Two warpgroups (128x128): a row tail in the first warpgroup's rows (129) and in the second's
  // (200, 70), a column tail (136), K tails, the 784-deep split
  wgmma_cases(prec, 129, 200, 136, cuda::GemmTile::WgmmaWide);
  wgmma_cases(prec, 200, 784, quick ? 40 : 128, cuda::GemmTile::WgmmaWide);
  wgmma_cases(prec, 70, 36, 64, cuda::GemmTile::WgmmaWide);
  // The weight tile: 129 rows (a 1-row K tail) x 36 -> 64 (64 of 128 output rows, 37 columns), 600
  // rows x 200 -> 72 (7 pieces of 96 rows, the last 24: a K tail; 201 columns), 70 x 33 -> 10
  // (falls back).
  for (cuda::GemmTile t : {cuda::GemmTile::Wgmma, cuda::GemmTile::Wgmma128}) {
    wgmma_weight_cases(prec, 129, 36, 64, t);
    wgmma_weight_cases(prec, 600, 200, 72, t);
  }
  wgmma_weight_cases(prec, 70, 33, 10, cuda::GemmTile::Wgmma);
}

// The weight GEMM with Adam's cases (dense_weight_adam).
void weight_adam_all(bool quick) {
  // Layer 0's weight GEMM with Adam across the cluster: 16 pieces (the non-portable size) on
  // 128x128 with a row tail (40 of 128 outputs) and two column tiles, db alone in the last quad
  // (K + 1 = 149); 4 pieces of 64 rows on 64x64 x 8 warps, the last of 58 (a part slice), X from
  // the images, with the rounded copy; the unsplit GEMM (a cluster of one) at bf16; FP32's vector
  // tiles, whose rows need not be whole 16-byte chunks: K + 1 = 151 ends in a quad shared by W's
  // last columns and db. (The tensor-core tiles refuse K or N not a multiple of 4: the refusals.)
  weight_adam(GemmPrecision::TF32, 16 * 32, 148, 40, cuda::WeightAdamTile::Large, 16, false, true);
  weight_adam(GemmPrecision::TF32, 250, 152, 72, cuda::WeightAdamTile::Small, 4, true, true);
  weight_adam(GemmPrecision::BF16, 100, 60, 12, cuda::WeightAdamTile::Large, 0, false, true);
  if (!quick) weight_adam(GemmPrecision::BF16, 4 * 32, 784, 20, cuda::WeightAdamTile::Small, 4, true, false);
  weight_adam(GemmPrecision::FP32, 16 * 32, 150, 40, cuda::WeightAdamTile::Large, 16, true, false);
  weight_adam(GemmPrecision::FP32, 6 * 32, 70, 70, cuda::WeightAdamTile::Small, 6, false, false);
  weight_adam_refusals();
}

// Quick mode (run.sh without --full, about a minute on two cores: each emulated mma is a 32-thread
// rendezvous) keeps every GEMM kind x precision on the tails that matter: rows 1, 7 and 33 (one
// row, a partial tile, a tile plus one row), every layer shape (784-deep only at 7 rows: K = 784
// has a 16-deep tail in every slice walk), one big-tile case (BF16) and split-K at both
// precisions; --full adds rows 127, 129, 300, the 784-deep layer everywhere and the rest.
int main(int argc, char** argv) {
  const bool quick = argc > 1;
  rounding_cases();
  if (argc > 1 && std::string(argv[1]) == "wgmma") {  // the wgmma model and tile alone (quick)
    for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) wgmma_all(prec, true);
    std::printf("wgmma: %d checks, %d failures, %lld launches\n", checks, failures, g_emu_launches);
    return failures != 0;
  }
  if (argc > 1 && std::string(argv[1]) == "weight_adam") {  // the weight GEMM with Adam alone
    weight_adam_all(false);
    std::printf("weight GEMM with Adam: %d checks, %d failures, %lld launches\n", checks, failures, g_emu_launches);
    return failures != 0;
  }
  std::vector<cases::LayerShape> layers = cases::model_layers();
  layers.insert(layers.end(), cases::odd_layers().begin(), cases::odd_layers().end());
  std::vector<int> rows{1, 7, 127, 129, 300};
  if (quick) rows = {1, 7, 33};
  auto t0 = std::chrono::steady_clock::now();
  auto lap = [&](const std::string& what) {
    const auto t1 = std::chrono::steady_clock::now();
    if (std::getenv("EMU_TC_TIMES"))
      std::printf("  %-40s %.1f s\n", what.c_str(), std::chrono::duration<double>(t1 - t0).count());
    t0 = t1;
  };
  for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) {
    for (int B : rows)
      for (const auto& L : layers) {
        if (quick && L.in == 784 && B != 7) continue;
        for (bool relu : {false, true}) layer_cases(prec, B, L, relu);
        lap(cat("B=", B, " ", L.in, "->", L.out));
      }
    if (!quick || prec == GemmPrecision::BF16) batch_independence(prec);
    lap("batch independence");
  }
  // 2048x200 data tiles fill the GPU, so the fused launch takes 64x64 tiles while the weight GEMM
  // alone takes 32x32: the split result must not care (full mode). 1024x33->10: both take 32x32.
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
    forced_pieces(prec);
    if (quick)
      split_k(prec, 1024, 33, 10);
    else
      split_k(prec, 2048, 200, 10), split_k(prec, 1000, 33, 64);
    lap("split-K");
  }
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
    forward_split(prec, quick ? 7 : 40, 600, quick ? 40 : 72);
  lap("forward split-K");
  // One-launch split-K: the weight GEMM's 16 pieces of 64 rows (four rounds of the last block's
  // pieces; every tile kind: SimtTile in FP32,
  // MmaTile at 33 inputs, PipeTile 64x64 x 8 warps and 128x128 forced at 36), the forward's 3
  // pieces over K = 544 (across blocks: 40 rows do not fill the GPU; SimtTile, PipeTile 64x64).
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
    split_tickets(prec, 1024, 33, 10, cuda::GemmTile::Auto);
    if (prec != GemmPrecision::FP32) {
      split_tickets(prec, 1024, 36, 12, cuda::GemmTile::Pipe64x8);
      if (!quick) split_tickets(prec, 1024, 36, 12, cuda::GemmTile::Pipe128);
    }
  }
  split_tickets(GemmPrecision::FP32, 40, 544, 8, cuda::GemmTile::Auto);
  split_tickets(GemmPrecision::TF32, 40, 544, 8, cuda::GemmTile::Pipe64);
  // the last block's quads cut by the row's end and unaligned rows (N % 4 != 0), and a second
  // column tile of 4 outputs
  split_tickets(GemmPrecision::TF32, 40, 544, 10, cuda::GemmTile::Pipe64);
  split_tickets(GemmPrecision::FP32, 70, 600, 132, cuda::GemmTile::Auto);
  // the forward's last block staging the pieces through the stages' shared memory: 128x128 (12
  // quads a thread a round, two rounds for its 16; rows 96-99 in the second) and 64x64 x 8 warps
  // over three column tiles (the last of 4 columns)
  split_tickets(GemmPrecision::TF32, 100, 544, 36, cuda::GemmTile::Pipe128);
  split_tickets(GemmPrecision::BF16, 70, 600, 132, cuda::GemmTile::Pipe64x8);
  // the weight GEMM in 25 pieces (a last round of one piece) with its ones column (db) inside a
  // whole quad (K + 1 = 36 columns)
  split_tickets(GemmPrecision::FP32, 1600, 35, 10, cuda::GemmTile::Auto);
  split_tickets(GemmPrecision::TF32, 1600, 35, 12, cuda::GemmTile::Auto);
  lap("split-K tickets");
  // The split summed across a cluster: 3 pieces over K = 544 on 128x128 with a row tail (100 of
  // 128) and quads cut by the row's end (N = 36); 4 pieces (layer 1's K = 784) on 64x64 x 8 warps
  // over three column tiles (the last of 4 columns); 64x64 x 4 warps with rows of N % 4 != 0
  // (unaligned quads); 9 pieces (K = 2148): more than a portable cluster, the tile as without it.
  cluster_split(GemmPrecision::TF32, 100, 544, 36, cuda::GemmTile::Pipe128);
  cluster_split(GemmPrecision::BF16, 70, 784, 132, cuda::GemmTile::Pipe64x8);
  cluster_split(GemmPrecision::TF32, 40, 544, 10, cuda::GemmTile::Pipe64);
  if (!quick) cluster_split(GemmPrecision::BF16, 130, 784, 64, cuda::GemmTile::Pipe128);
  cluster_split(GemmPrecision::TF32, 20, 2148, 8, cuda::GemmTile::Pipe64, true);
  // FP32's vector tiles: 128x128 (row tail, N % 4 != 0), 64x64 over three column tiles, 32x32
  cluster_split(GemmPrecision::FP32, 100, 544, 36, cuda::GemmTile::Auto, false, cuda::SimtTileKind::Vec128);
  cluster_split(GemmPrecision::FP32, 70, 784, 132, cuda::GemmTile::Auto, false, cuda::SimtTileKind::Vec64);
  cluster_split(GemmPrecision::FP32, 40, 544, 10, cuda::GemmTile::Auto, false, cuda::SimtTileKind::Vec32);
  lap("split-K across a cluster");
  weight_adam_all(quick);
  lap("weight GEMM with Adam across a cluster");
  // The pipelined tile: row, column and K tails, the ones column, several stages (7 slices); the
  // weight GEMM's row split (512 rows: 8 pieces of 64); 8 warps with a 3-piece folded forward
  // split (K = 544: pieces of 192, the last 160 deep) and a row tail (100 of 128). --full adds the
  // model's first layer (25 slices, 4 pieces) at 512 rows (tf32, 64x64) and 256 rows (bf16, 128x128).
  for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) {
    pipe_cases(prec, 129, 200, 72, cuda::GemmTile::Pipe64);
    pipe_cases(prec, 512, 36, 8, cuda::GemmTile::Pipe64);
    lap("pipelined 64x64");
    // 8 warps of 32x16: tails, the ones column; TF32 with a 3-piece folded split whose last piece
    // ends in a half slice (K = 560: pieces of 192, 192, 176 = 5.5 slices), as layer 1's K = 784 does
    pipe_cases(prec, 129, prec == GemmPrecision::TF32 ? 560 : 200, 72, cuda::GemmTile::Pipe64x8);
    lap("pipelined 64x64, 8 warps");
  }
  pipe_cases(quick ? GemmPrecision::TF32 : GemmPrecision::BF16, 100, 544, 36, cuda::GemmTile::Pipe128);
  lap("pipelined 128x128");
  ablation_cases();
  lap("ablation");
  // The wgmma model against a naive GEMM, then the wgmma forward tiles (wgmma_all).
  for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) wgmma_all(prec, quick);
  lap("wgmma");
  if (!quick) {  // about 8 and 4 minutes on two cores
    pipe_cases(GemmPrecision::TF32, 512, 784, 128, cuda::GemmTile::Pipe64);
    pipe_cases(GemmPrecision::BF16, 256, 784, 128, cuda::GemmTile::Pipe128);
    lap("pipelined, 784 -> 128");
  }
  std::printf("tensor-core GEMMs: %d checks, %d failures, %lld launches\n", checks, failures, g_emu_launches);
  return failures != 0;
}
