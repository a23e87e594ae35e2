#include <cstdio>
#include <random>
#include <numeric>
#include <vector>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <array>
#include "kernels/adam.cuh"
#include "kernels/dense.cuh"
#include "tests/gpu/dense_backward_ref.cuh"
#include "kernels/dropout.cuh"
#include "kernels/gather.cuh"
#include "kernels/head.cuh"
#include "kernels/pdl.cuh"
#include "kernels/softmax_xent.cuh"
#include "kernels/tail.cuh"
#include "kernels/step_math.cuh"
#include "tests/gpu/xent_order.hpp"
#include "tests/gpu/head_ref.hpp"
#include "tests/gpu/scattered_labels.hpp"
#include "tests/gpu/shuffle_ref.hpp"
#include "kernels/op_cases.hpp"
#include "layers/cpu_ops.hpp"
#include "runtime/error.hpp"

using namespace mnist;
static int failures = 0, checks = 0;
std::vector<float> rnd(std::size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 g(seed); std::uniform_real_distribution<double> d(lo, hi); std::vector<float> v(n); for (auto& x : v) x = float(d(g)); return v;
}
std::vector<uint8_t> rbytes(std::size_t n, uint64_t seed, int lo = 0, int hi = 255) {
  std::mt19937_64 g(seed); std::uniform_int_distribution<int> d(lo, hi); std::vector<uint8_t> v(n); for (auto& x : v) x = uint8_t(d(g)); return v;
}
template <class T> std::vector<double> dbl(const std::vector<T>& v) { return {v.begin(), v.end()}; }
template <class A, class B> void close(const std::vector<A>& o, const std::vector<B>& r, double tol, const std::string& what) {
  ++checks;
  double num = 0, den = 0; bool finite = o.size() == r.size();
  for (std::size_t i = 0; i < o.size() && finite; ++i) { if (!std::isfinite(double(o[i]))) { finite = false; break; } double d = double(o[i]) - double(r[i]); num += d * d; den += double(r[i]) * double(r[i]); }
  double err = finite ? std::sqrt(num) / std::max(std::sqrt(den), 1e-30) : INFINITY;
  if (!(err <= tol)) { ++failures; std::printf("FAIL %s: err %g\n", what.c_str(), err); }
}
template <class T> void same(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  ++checks;
  if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T))) { ++failures; std::printf("FAIL %s: not bitwise equal\n", what.c_str()); }
}
std::string hexf(double x) { char b[40]; std::snprintf(b, sizeof b, "%a", x); return b; }
void expect(bool c, const std::string& what) { ++checks; if (!c) { ++failures; std::printf("FAIL %s\n", what.c_str()); } }
template <class T> std::vector<T> poison(std::size_t n) { std::vector<T> v(n); std::memset(v.data(), 0xFF, n * sizeof(T)); return v; }

// ---- Programmatic launches: the model itself (ov/cooperative_groups.h, launch_programmatic) ----
// Toy kernels (one element a thread): what a read or write on either side of pdl_wait() sees when
// the launch is programmatic, against the same launches made ordinarily.
namespace pdl_toy {
int index() { return int(blockIdx.x * blockDim.x + threadIdx.x); }
// a[i] = 2i + 1, after its wait
void write_after(float* a, int n) {
  cuda::pdl_start();
  if (index() < n) a[index()] = float(2 * index() + 1);
}
// out[i] = a[i] + 1, a read after the wait
void copy_after(float* out, const float* a, int n) {
  cuda::pdl_start();
  if (index() < n) out[index()] = a[index()] + 1.0f;
}
// out[i] = a[i] + 1, a read BEFORE the wait (a contract breach when the launch before writes a)
void copy_before(float* out, const float* a, int n) {
  const float v = index() < n ? a[index()] : 0.0f;
  cuda::pdl_start();
  if (index() < n) out[index()] = v + 1.0f;
}
// a[i] = -7, a write BEFORE the wait (a breach when the launch before reads a)
void write_before(float* a, int n) {
  if (index() < n) a[index()] = -7.0f;
  cuda::pdl_start();
}
// no wait at all / a trigger before the wait
void no_wait(float* a, int n) {
  if (index() < n) a[index()] = 1.0f;
}
void trigger_first(float* a, int n) {
  cuda::pdl_trigger();
  cuda::pdl_wait();
  if (index() < n) a[index()] = 1.0f;
}
// out[block] = the sum of a over the block's 64 elements, through a static __shared__ array (its
// own per block while the blocks are in flight together)
void block_sum(float* out, const float* a) {
  auto& s = emu::shared_obj<float[64], 1>();  // `__shared__ float s[64];` as transform.py rewrites it
  cuda::pdl_start();
  s[threadIdx.x] = a[index()];
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0;
    for (int i = 0; i < 64; ++i) t += s[i];
    out[blockIdx.x] = t;
  }
}
}  // namespace pdl_toy

void programmatic_launch_model() {
  using namespace pdl_toy;
  constexpr int n = 200, threads = 64;
  const dim3 grid((n + threads - 1) / threads), block(threads);
  const auto run = [&](bool pdl, auto&& body) {
    cuda::ProgrammaticLaunches scope(pdl);
    body();
    cudaDeviceSynchronize();  // (ends the launch in flight)
  };
  std::vector<float> a(n), out(n);
  for (bool pdl : {false, true}) {
    const std::string tag = pdl ? "programmatic: " : "ordinary: ";
    // A read before the wait of what the launch before writes: the old value, only when programmatic.
    std::fill(a.begin(), a.end(), 5.0f);
    run(pdl, [&] {
      cuda::launch_kernel(write_after, grid, block, 0, nullptr, a.data(), n);
      cuda::launch_kernel(copy_before, grid, block, 0, nullptr, out.data(), a.data(), n);
    });
    bool old = true, fresh = true;
    for (int i = 0; i < n; ++i) {
      old = old && out[i] == 6.0f;
      fresh = fresh && out[i] == float(2 * i + 2);
    }
    expect(pdl ? old : fresh, tag + "a read before pdl_wait sees " + (pdl ? "the value before" : "the launch before's"));
    // After the wait: always the launch before's.
    std::fill(a.begin(), a.end(), 5.0f);
    run(pdl, [&] {
      cuda::launch_kernel(write_after, grid, block, 0, nullptr, a.data(), n);
      cuda::launch_kernel(copy_after, grid, block, 0, nullptr, out.data(), a.data(), n);
    });
    fresh = true;
    for (int i = 0; i < n; ++i) fresh = fresh && out[i] == float(2 * i + 2);
    expect(fresh, tag + "a read after pdl_wait sees the launch before's writes");
    // A write before the wait into what the launch before reads: that launch sees it (programmatic).
    std::fill(a.begin(), a.end(), 5.0f);
    run(pdl, [&] {
      cuda::launch_kernel(copy_after, grid, block, 0, nullptr, out.data(), a.data(), n);
      cuda::launch_kernel(write_before, grid, block, 0, nullptr, a.data(), n);
    });
    bool early = true, late = true;
    for (int i = 0; i < n; ++i) {
      early = early && out[i] == -6.0f;
      late = late && out[i] == 6.0f;
    }
    expect(pdl ? early : late, tag + "a write before pdl_wait is " + (pdl ? "seen by" : "after") + " the launch before");
    // Two launches back: complete before a launch starts (the one between triggered after its wait).
    std::fill(a.begin(), a.end(), 5.0f);
    std::vector<float> mid(n);
    run(pdl, [&] {
      cuda::launch_kernel(write_after, grid, block, 0, nullptr, a.data(), n);
      cuda::launch_kernel(copy_after, grid, block, 0, nullptr, mid.data(), mid.data(), n);
      cuda::launch_kernel(copy_before, grid, block, 0, nullptr, out.data(), a.data(), n);
    });
    fresh = true;
    for (int i = 0; i < n; ++i) fresh = fresh && out[i] == float(2 * i + 2);
    expect(fresh, tag + "a read before pdl_wait sees the writes of two launches back");
    // Static shared memory, blocks in flight together.
    std::vector<float> v(4 * 64), sums(4, -1.0f);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i % 13);
    run(pdl, [&] {
      cuda::launch_kernel(write_after, grid, block, 0, nullptr, out.data(), n);
      cuda::launch_kernel(block_sum, dim3(4), block, 0, nullptr, sums.data(), static_cast<const float*>(v.data()));
    });
    for (int b = 0; b < 4; ++b) {
      float t = 0;
      for (int i = 0; i < 64; ++i) t += v[std::size_t(b) * 64 + i];
      expect(sums[b] == t, cat(tag, "block ", b, "'s static __shared__ sum"));
    }
    // A copy orders after the launch in flight.
    std::fill(a.begin(), a.end(), 5.0f);
    std::vector<float> copy(n);
    {
      cuda::ProgrammaticLaunches scope(pdl);
      cuda::launch_kernel(write_after, grid, block, 0, nullptr, a.data(), n);
      cudaMemcpy(copy.data(), a.data(), n * sizeof(float), cudaMemcpyDeviceToHost);
    }
    fresh = true;
    for (int i = 0; i < n; ++i) fresh = fresh && copy[i] == float(2 * i + 1);
    expect(fresh, tag + "cudaMemcpy after a launch copies its output");
  }
  // The contract's breaches stop the launch with an error naming the rule.
  for (auto* k : {no_wait, trigger_first}) {
    std::string what;
    try {
      run(true, [&] { cuda::launch_kernel(k, grid, block, 0, nullptr, a.data(), n); });
    } catch (const std::exception& e) {
      what = e.what();
    }
    expect(what.find(k == no_wait ? "ended without pdl_wait" : "pdl_trigger() before pdl_wait") != std::string::npos,
           cat("a programmatic launch that ", k == no_wait ? "never waits" : "triggers first", " fails: '", what, "'"));
  }
  // The engine's kernels keep it: each launched programmatically after a writer, its output equal to
  // the ordinary launch's (a read before its wait of X, W or b would see the poison).
  for (bool pdl : {false, true}) {
    const int B = 129, K = 70, N = 33;
    const auto X = rnd(std::size_t(B) * K, 11), W = rnd(std::size_t(N) * K, 12, -.5, .5), b = rnd(N, 13);
    std::vector<float> Xd(X.size(), 0.0f), Y(std::size_t(B) * N);
    run(pdl, [&] {
      cuda::launch_kernel(copy_after, dim3((X.size() + 63) / 64), block, 0, nullptr, Xd.data(), X.data(), int(X.size()));
      cuda::dense_forward(Y.data(), Xd.data(), W.data(), b.data(), B, K, N, true, nullptr);
    });
    std::vector<float> X1(X.size()), ref(Y.size());
    for (std::size_t i = 0; i < X.size(); ++i) X1[i] = X[i] + 1.0f;
    cuda::dense_forward(ref.data(), X1.data(), W.data(), b.data(), B, K, N, true, nullptr);
    same(Y, ref, pdl ? "programmatic dense_forward after its input's writer" : "ordinary dense_forward");
  }
  std::printf("programmatic launches: %lld modelled\n", g_emu_programmatic_launches);
}

int main(int argc, char** argv) {
  const bool quick = argc > 1;
  programmatic_launch_model();
  std::vector<cases::LayerShape> layers = cases::model_layers();
  layers.insert(layers.end(), cases::odd_layers().begin(), cases::odd_layers().end());
  std::vector<int> rows{1, 7, 127, 128, 129, 300};
  if (quick) rows = {7, 129};
  for (int B : rows) for (auto L : layers) for (bool relu : {false, true}) {
    const int K = L.in, N = L.out;
    std::string tag = cat("B=", B, " K=", K, " N=", N, relu ? " relu" : "");
    auto X = rnd(std::size_t(B) * K, 1 + B), W = rnd(std::size_t(N) * K, 2, -.5, .5), b = rnd(N, 3), dY = rnd(std::size_t(B) * N, 4), Y = rnd(std::size_t(B) * N, 5);
    // forward
    std::vector<double> ref(std::size_t(B) * N);
    cpu::dense_forward(ref.data(), dbl(X).data(), dbl(W).data(), dbl(b).data(), B, K, N, relu);
    auto out = poison<float>(ref.size());
    cuda::dense_forward(out.data(), X.data(), W.data(), b.data(), B, K, N, relu, nullptr);
    close(out, ref, 1e-5, "forward " + tag);
    if (relu) {
      std::vector<double> d(ref.size());
      cpu::dropout_forward(d.data(), ref.data(), ref.size(), 0.2f, 42, 17, 1);
      auto D = poison<float>(ref.size());
      cuda::dense_relu_dropout_forward(D.data(), X.data(), W.data(), b.data(), B, K, N, cuda::DropoutSpec{0.2f, 42, 17, 1, nullptr}, nullptr);
      close(D, d, 1e-5, "fwd+dropout " + tag);
      cuda::TrainCounters c; c.step = 17;
      auto D2 = poison<float>(ref.size());
      cuda::dense_relu_dropout_forward(D2.data(), X.data(), W.data(), b.data(), B, K, N, cuda::DropoutSpec{0.2f, 42, 0, 1, &c}, nullptr);
      same(D2, D, "fwd+dropout counters " + tag);
    }
    // backward twin
    std::vector<double> dX(std::size_t(B) * K), dW(std::size_t(N) * K), db(N), dZ(std::size_t(B) * N);
    cpu::dense_backward(dX.data(), dW.data(), db.data(), dZ.data(), dbl(dY).data(), dbl(X).data(), dbl(W).data(), dbl(Y).data(), B, K, N, relu);
    auto gdX = poison<float>(dX.size()), gdW = poison<float>(dW.size()), gdb = poison<float>(db.size());
    test::dense_backward(gdX.data(), gdW.data(), gdb.data(), dY.data(), X.data(), W.data(), Y.data(), B, K, N, relu,
                         nullptr);
    close(gdX, dX, 1e-5, "dX " + tag); close(gdW, dW, 1e-5, "dW " + tag); close(gdb, db, 1e-5, "db " + tag);
    // engine pieces
    if (!relu) {
      auto D = rnd(std::size_t(B) * K, 9);
      std::vector<double> rdX(dX.size());
      cpu::gemm_nn(rdX.data(), dbl(dY).data(), dbl(W).data(), B, K, N);
      for (std::size_t i = 0; i < rdX.size(); ++i) rdX[i] = D[i] > 0 ? rdX[i] * 1.25 : 0.0;
      std::vector<double> rdW(dW.size()), rdb(N, 0.0);
      cpu::gemm_tn(rdW.data(), dbl(dY).data(), dbl(X).data(), N, K, B);
      for (int r = 0; r < B; ++r) for (int j = 0; j < N; ++j) rdb[j] += dY[std::size_t(r) * N + j];
      auto g1 = poison<float>(dX.size()), g2 = poison<float>(dW.size()), g3 = poison<float>(N);
      cuda::dense_backward_data(g1.data(), dY.data(), W.data(), D.data(), 1.25f, B, K, N, nullptr);
      cuda::dense_backward_weights(g2.data(), g3.data(), dY.data(), X.data(), B, K, N, nullptr);
      close(g1, rdX, 1e-5, "bwd data masked " + tag); close(g2, rdW, 1e-5, "bwd weights " + tag); close(g3, rdb, 1e-5, "bwd bias " + tag);
      auto f1 = poison<float>(dX.size()), f2 = poison<float>(dW.size()), f3 = poison<float>(N);
      cuda::dense_backward_fused(f2.data(), f3.data(), f1.data(), dY.data(), X.data(), W.data(), D.data(), 1.25f, B, K, N, nullptr);
      same(f1, g1, "fused bwd dX " + tag); same(f2, g2, "fused bwd dW " + tag); same(f3, g3, "fused bwd db " + tag);
      auto h2 = poison<float>(dW.size()), h3 = poison<float>(N);
      cuda::dense_backward_fused(h2.data(), h3.data(), nullptr, dY.data(), X.data(), W.data(), nullptr, 1.0f, B, K, N, nullptr);
      same(h2, g2, "fused bwd (no dX) dW " + tag); same(h3, g3, "fused bwd (no dX) db " + tag);
    }
  }
  if (!quick) {  // 64x64 tiles, and batch independence
    const int B = 4096, K = 784, N = 128;
    auto X = rnd(std::size_t(B) * K, 11), W = rnd(std::size_t(N) * K, 12, -.5, .5), b = rnd(N, 13);
    std::vector<double> ref(std::size_t(B) * N);
    cpu::dense_forward(ref.data(), dbl(X).data(), dbl(W).data(), dbl(b).data(), B, K, N, true);
    auto out = poison<float>(ref.size());
    cuda::dense_forward(out.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr);
    close(out, ref, 1e-5, "forward 4096");
    for (int r : {0, 63, 64, 4095}) {
      auto one = poison<float>(N);
      cuda::dense_forward(one.data(), X.data() + std::size_t(r) * K, W.data(), b.data(), 1, K, N, true, nullptr);
      same(one, std::vector<float>(out.begin() + std::size_t(r) * N, out.begin() + std::size_t(r + 1) * N), cat("row ", r));
    }
    // weight grad with 64 tiles: M=N_out=256? use N=1024 out, K=784 -> 16*13 blocks
    const int Bw = 64, Kw = 300, Nw = 1024;
    auto dZ = rnd(std::size_t(Bw) * Nw, 14), Xw = rnd(std::size_t(Bw) * Kw, 15);
    std::vector<double> rdW(std::size_t(Nw) * Kw), rdb(Nw, 0.0);
    cpu::gemm_tn(rdW.data(), dbl(dZ).data(), dbl(Xw).data(), Nw, Kw, Bw);
    for (int r = 0; r < Bw; ++r) for (int j = 0; j < Nw; ++j) rdb[j] += dZ[std::size_t(r) * Nw + j];
    auto g2 = poison<float>(rdW.size()), g3 = poison<float>(Nw);
    cuda::dense_backward_weights(g2.data(), g3.data(), dZ.data(), Xw.data(), Bw, Kw, Nw, nullptr);
    close(g2, rdW, 1e-5, "bwd weights big"); close(g3, rdb, 1e-5, "bwd bias big");
  }
  // dropout
  for (std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(127 * 64), std::size_t(1000 * 33 + 1)}) {
    auto in = rnd(n, 21); std::vector<float> ref(n);
    cpu::dropout_forward(ref.data(), in.data(), n, 0.3f, 5, 99, 2);
    auto out = poison<float>(n);
    cuda::dropout_forward(out.data(), in.data(), n, 0.3f, 5, 99, 2, nullptr);
    same(out, ref, cat("dropout n=", n));
    auto D = rnd(n, 22), dD = rnd(n, 23); std::vector<float> r2(n);
    for (std::size_t i = 0; i < n; ++i) r2[i] = D[i] > 0 ? dD[i] * 1.25f : 0.0f;
    auto o2 = poison<float>(n);
    cuda::relu_dropout_backward(o2.data(), dD.data(), D.data(), n, 1.25f, nullptr);
    same(o2, r2, cat("relu_dropout_backward n=", n));
  }
  // gather
  for (int D : {784, 33, 7, 1}) for (int B : {1, 7, 129}) {
    const int n = 500;
    auto images = rbytes(std::size_t(n) * D, D), labels = rbytes(n, 2, 0, 9);
    std::vector<int32_t> idx(n); std::iota(idx.begin(), idx.end(), 0); std::shuffle(idx.begin(), idx.end(), std::mt19937(B));
    std::vector<float> X(std::size_t(B) * D); std::vector<uint8_t> y(B);
    cpu::gather_batch(X.data(), y.data(), images.data(), labels.data(), idx.data(), B, D);
    auto gX = poison<float>(X.size()); auto gy = poison<uint8_t>(B);
    // align X to 16 for the vector path
    cuda::gather_batch(gX.data(), gy.data(), images.data(), labels.data(), idx.data(), B, D, nullptr);
    same(gX, X, cat("gather D=", D, " B=", B)); same(gy, y, cat("gather y D=", D, " B=", B));
    cuda::TrainCounters c; c.batch = 2;
    std::vector<float> X2(std::size_t(B) * D); std::vector<uint8_t> y2(B);
    cpu::gather_batch(X2.data(), y2.data(), images.data(), labels.data(), idx.data() + 2 * 150, B, D);
    auto hX = poison<float>(X2.size()); auto hy = poison<uint8_t>(B);
    cuda::gather_batch(hX.data(), hy.data(), images.data(), labels.data(), idx.data(), &c, 150, B, D, nullptr);
    same(hX, X2, cat("gather ctr D=", D, " B=", B)); same(hy, y2, "gather ctr y");
    std::vector<int32_t> seq(B); std::iota(seq.begin(), seq.end(), 300);
    cpu::gather_batch(X2.data(), y2.data(), images.data(), labels.data(), seq.data(), B, D);
    auto iX = poison<float>(X2.size()); auto iy = poison<uint8_t>(B);
    cuda::gather_rows(iX.data(), iy.data(), images.data(), labels.data(), 300, B, D, nullptr);
    same(iX, X2, cat("gather_rows D=", D, " B=", B)); same(iy, y2, "gather_rows y");
  }
  // shuffle_order: the bucket shuffle and CUB's sort, each against cpu::shuffle_order (and the masked
  // keys' stable sort), with the blocks in index, reversed and shuffled order (the slots inside a
  // bucket then fill in other orders), over one scratch zeroed once per n: a count the last call
  // left behind would misplace the next call's indices.
  for (int n : {1, 2, 7, 1000, 4099, 48000}) {
    std::vector<unsigned char> temp(cuda::shuffle_temp_bytes(n));  // zero-filled
    for (uint64_t e : {0ull, 3ull}) {
      std::vector<int32_t> ref(n); cpu::shuffle_order(ref.data(), n, 42, e);
      same(test::shuffle_reference(n, 42, e, 0xffffffffu), ref, cat("shuffle reference n=", n));
      for (bool cub : {false, true}) for (uint32_t mask : test::shuffle_test_masks()) {
        if (n == 48000 && mask != 0xffffffffu) continue;  // (a bucket of 48,000 keys: 2.3e9 comparisons)
        const std::vector<int32_t> want = mask == 0xffffffffu ? ref : test::shuffle_reference(n, 42, e, mask);
        cuda::shuffle_set_test_hooks({cub, mask});
        for (emu::BlockOrder order : {emu::BlockOrder::Index, emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
          emu::g_block_order = order;
          auto got = poison<int32_t>(n);
          cuda::shuffle_order(got.data(), temp.data(), temp.size(), n, 42, e, nullptr);
          same(got, want, cat("shuffle n=", n, " epoch ", e, cub ? " cub" : " buckets", " mask ", mask, " order ", int(order)));
        }
        emu::g_block_order = emu::BlockOrder::Index;
        cuda::shuffle_set_test_hooks({});
      }
    }
    auto id = poison<int32_t>(n); std::vector<int32_t> iref(n); std::iota(iref.begin(), iref.end(), 0);
    cuda::identity_order(id.data(), n, nullptr); same(id, iref, "iota");
  }
  // adam
  for (std::size_t n : {std::size_t(1), std::size_t(1000), std::size_t(70001)}) {
    auto p = rnd(n, 31), m = rnd(n, 32, -.1, .1), v = rnd(n, 33, 0, .01);
    auto gp = p, gm = m, gv = v, hp = p, hm = m, hv = v;
    for (int t = 1; t <= 3; ++t) {
      auto g = rnd(n, 40 + t);
      cpu::adam_update(p.data(), m.data(), v.data(), g.data(), n, 1e-2f, 0.9f, 0.999f, 1e-7f, t);
      cuda::adam_update(gp.data(), gm.data(), gv.data(), g.data(), n, 1e-2f, 0.9f, 0.999f, 1e-7f, t, nullptr);
      cuda::TrainCounters c; c.step = t; c.batch = 5; c.lr = 1e-2f;
      cuda::adam_update(hp.data(), hm.data(), hv.data(), g.data(), n, &c, 0.9f, 0.999f, 1e-7f, nullptr);
      expect(c.step == t && c.batch == 5 && c.lr == 1e-2f, cat("adam reads the counters only, n=", n));
      cuda::advance_train_counters(&c, nullptr);
      expect(c.step == t + 1 && c.batch == 6 && c.lr == 1e-2f, cat("counters advanced once, n=", n));
    }
    close(gp, p, 1e-6, cat("adam p n=", n)); close(gm, m, 1e-6, "adam m"); close(gv, v, 1e-6, "adam v");
    same(hp, gp, "adam ctr p"); same(hm, gm, "adam ctr m"); same(hv, gv, "adam ctr v");
  }
  // softmax xent
  for (int B : {1, 7, 129, 1000}) for (int C : {10, 2, 33}) {
    auto z = rnd(std::size_t(B) * C, B + C, -80, 80); auto lab = rbytes(B, 3, 0, C - 1);
    std::vector<double> ref(z.size()); int rc = -1;
    double rl = cpu::softmax_xent(ref.data(), &rc, dbl(z).data(), lab.data(), B, C, 1.0 / B);
    auto g = poison<float>(z.size()); cuda::Metrics m;
    auto slots = poison<cuda::Metrics>(std::size_t(cuda::softmax_xent_blocks(B))); unsigned done = 0;
    cuda::softmax_xent(g.data(), &m, {slots.data(), &done, int(slots.size())}, z.data(), lab.data(), B, C, 1.0f / B, nullptr);
    close(g, ref, 1e-6, cat("xent grad B=", B, " C=", C));
    expect(std::fabs(m.loss_sum - rl) <= 1e-5 * std::fabs(rl) && m.correct == (unsigned long long)rc, cat("xent metrics B=", B, " C=", C, " ", m.loss_sum, " vs ", rl, " ", m.correct, " vs ", rc));
    {  // the labels read by index (the training step's LabelInput::by_index): the same bits
      const test::ScatteredLabels sl = test::scatter_labels(lab, uint64_t(B) * 7 + C);
      cuda::TrainCounters c; c.batch = sl.batch;
      auto gi = poison<float>(z.size()); cuda::Metrics mi;
      cuda::softmax_xent(gi.data(), &mi, {slots.data(), &done, int(slots.size())}, z.data(),
                         cuda::LabelInput::by_index(sl.labels.data(), sl.idx.data(), sl.first, &c, sl.stride), B, C,
                         1.0f / B, nullptr);
      same(gi, g, cat("xent by index grad B=", B, " C=", C));
      expect(std::memcmp(&mi.loss_sum, &m.loss_sum, sizeof(double)) == 0 && mi.correct == m.correct && done == 0,
             cat("xent by index metrics B=", B, " C=", C));
    }
    std::vector<double> pr(z.size()); cpu::softmax(pr.data(), dbl(z).data(), B, C);
    auto p = poison<float>(z.size()); cuda::softmax(p.data(), z.data(), B, C, nullptr);
    close(p, pr, 1e-6, cat("softmax B=", B, " C=", C));
  }
  // softmax_xent over several blocks (256 rows a block; the last block to finish adds the blocks'
  // sums in block order). The emulation runs blocks one after another, so the last to finish is the
  // last to run: each case runs with the blocks in index, reversed and shuffled order, and the loss
  // sum must be, bit for bit, the order the header states (xent_order.hpp) over the rows' losses
  // as the kernel computes them (xent_row of step_math.cuh run here on the host; a few one-row
  // launches confirm those bits). A kernel that added the blocks in finishing order fails the
  // reversed run (the data tells the two orders apart: checked).
  const double u = 1.0 / 16777216.0;
  for (int B : {1, 129, 1000, 4096}) for (int C : {10, 33}) {
    const std::string tag = cat("xent blocks B=", B, " C=", C);
    const int nb = cuda::softmax_xent_blocks(B);
    auto bits_eq = [](double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; };
    // Every third row confident (the label's logit 3 .. 30 above the rest): losses from 1e-13 up
    // to 40, so the double sums round (float losses of one magnitude add exactly in double, in any
    // order). A few block sums can still round alike in both orders: the first seed whose data
    // tells block order from reversed is taken (3+ blocks; with 2, 0 + S0 + S1 = 0 + S1 + S0).
    std::vector<float> z; std::vector<uint8_t> lab;
    std::vector<double> rowl(B); std::vector<unsigned> rowhit(B); std::vector<float> rowg(std::size_t(B) * C);
    unsigned long long rowh = 0;
    double want = 0;
    bool sensitive = nb <= 2;
    for (int seed = 7; seed < 27; ++seed) {
      z = rnd(std::size_t(B) * C, seed + B + C, -20, 20); lab = rbytes(B, seed + 1 + B, 0, C - 1);
      const auto gap = rnd(B, seed + 2 + B, 3, 30);
      for (int r = 0; r < B; r += 3) {
        float* row = z.data() + std::size_t(r) * C;
        row[lab[r]] = *std::max_element(row, row + C) + gap[r];
      }
      rowh = 0;
      for (int r = 0; r < B; ++r) {  // the rows as the kernel computes them: xent_row, here on the host
        const std::size_t o = std::size_t(r) * C;
        const cuda::XentRow x = cuda::xent_row(z.data() + o, C, lab[r], 1.0f / B, rowg.data() + o, nullptr);
        rowl[r] = x.loss; rowhit[r] = x.hit ? 1 : 0; rowh += rowhit[r];
      }
      const std::vector<double> S = test::xent_block_sums(rowl, cuda::kXentRowsPerBlock);
      want = test::xent_launch_sum(S);
      if (nb <= 2) break;
      if (!bits_eq(want, test::xent_launch_sum(S, true))) { sensitive = true; break; }
    }
    expect(sensitive, tag + ": data that tells block order from reversed");
    std::vector<double> ref(z.size()); int rc = -1;
    const double rl = cpu::softmax_xent(ref.data(), &rc, dbl(z).data(), lab.data(), B, C, 1.0 / B);
    for (int r : {0, B / 2, B - 1}) {  // one-row launches (one block, no scratch): the row's bits
      cuda::Metrics m1; auto g1 = poison<float>(C);
      cuda::softmax_xent(g1.data(), &m1, {}, z.data() + std::size_t(r) * C, lab.data() + r, 1, C, 1.0f / B, nullptr);
      expect(std::memcmp(&m1.loss_sum, &rowl[r], sizeof(double)) == 0 && m1.correct == rowhit[r], cat(tag, " row ", r, " loss bits"));
      same(g1, std::vector<float>(rowg.begin() + std::size_t(r) * C, rowg.begin() + std::size_t(r + 1) * C), cat(tag, " row ", r, " grad bits"));
    }
    // Derived bounds (tests/gpu/test_softmax.cu's header): (2C + 12)u·|ref| + 2^-126 per gradient
    // element; the loss sum (C + 6)u per row, summed in double: 1e-5 relative for C <= 100.
    auto within = [&](const std::vector<float>& g, const std::string& what) {
      ++checks; std::size_t bad = 0;
      for (std::size_t i = 0; i < g.size(); ++i)
        if (!(std::fabs(double(g[i]) - ref[i]) <= (2 * C + 12) * u * std::fabs(ref[i]) + std::ldexp(1.0, -126))) ++bad;
      if (bad) { ++failures; std::printf("FAIL %s: %zu of %zu elements outside their bound\n", what.c_str(), bad, g.size()); }
    };
    auto slots = poison<cuda::Metrics>(std::size_t(nb)); unsigned done = 0;
    const cuda::XentScratch sc{slots.data(), &done, nb};
    for (emu::BlockOrder order : {emu::BlockOrder::Index, emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
      emu::g_block_order = order;
      const std::string t = cat(tag, " order ", int(order));
      auto g = poison<float>(z.size()); cuda::Metrics m;
      cuda::softmax_xent(g.data(), &m, sc, z.data(), lab.data(), B, C, 1.0f / B, nullptr);
      within(g, t + " dlogits vs cpu");
      same(g, rowg, t + " dlogits = xent_row's");
      expect(bits_eq(m.loss_sum, want), cat(t, " loss bits ", hexf(m.loss_sum), " vs ", hexf(want)));
      expect(std::fabs(m.loss_sum - rl) <= 1e-5 * rl, cat(t, " loss vs cpu ", m.loss_sum, " vs ", rl));
      expect(m.correct == (unsigned long long)rc && m.correct == rowh, cat(t, " correct ", m.correct, " vs ", rc));
      expect(done == 0, cat(t, " counter back to 0"));
      cuda::Metrics acc; double w = 0;  // replays into one accumulator (a captured step, batch after batch)
      for (int k = 1; k <= 3 && order == emu::BlockOrder::Shuffled; ++k) {
        cuda::softmax_xent(nullptr, &acc, sc, z.data(), lab.data(), B, C, 0.0f, nullptr);
        w += want;
        expect(bits_eq(acc.loss_sum, w) && acc.correct == k * rowh && done == 0, cat(t, " replay ", k));
      }
    }
    emu::g_block_order = emu::BlockOrder::Index;
  }
  // head_train (kernels/head.cuh): the last layer, its loss and its backward in one launch. Against
  // the CPU reference (tests/gpu/head_ref.hpp: every element within its derived bound) and, bit for
  // bit, against the order its header states, written out here on the host from the kernel's own
  // dZ: each block's rows in one fmaf chain per dW/db element, the blocks' partials added in block
  // order from 0; the loss sum in softmax_xent's order over xent_row's row losses. The blocks run in
  // index, reversed and shuffled order (the last to run is the last to finish, which adds the
  // partials and the group sums): a kernel that added them as the blocks finish fails the reversed
  // run; each case checks that its data tells block order from reversed for some dW element.
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
    for (const std::array<int, 3>& shape : {std::array<int, 3>{1, 64, 10}, {129, 64, 10}, {1000, 33, 7}, {4096, 64, 10}}) {
      const int B = shape[0], K = shape[1], N = shape[2];
      if (quick && B == 4096 && prec != GemmPrecision::FP32) continue;
      const std::string tag = cat("head B=", B, " K=", K, " N=", N, " prec=", int(prec));
      // Every other row confident: input 0 in [7, 9.5] there, and only class 0 reads it (weight 4),
      // so that row's label 0 leads by ≈ 30-37 and its loss (≈ 1e-16 .. 1e-13) rounds when the double
      // sums add it to the others' (≈ 0.1 .. 10). The first seed whose losses tell the stated order
      // from a flat sum inside a 32-row group, and the 256-row sums from reversed (3+ of them), is
      // taken; the losses come from the head's logits written out on the host (the kernel's FMA
      // chain, checked bitwise below) through xent_row.
      std::vector<float> A, W, b, zh(std::size_t(B) * N);
      std::vector<uint8_t> lab;
      bool loss_sensitive = false;
      for (uint64_t seed = 61; seed < 81 && !loss_sensitive; ++seed) {
        A = rnd(std::size_t(B) * K, seed + B);
        for (float& a : A) a = a > 0.0f ? a * 1.25f : 0.0f;  // a hidden activation: ReLU + dropout scale
        W = rnd(std::size_t(N) * K, seed + 1, -.5, .5);
        b = rnd(N, seed + 2, -.5, .5);
        lab = rbytes(B, seed + 3 + B, 0, N - 1);
        const auto boost = rnd(B, seed + 4 + B, 7, 9.5);
        for (int n = 0; n < N; ++n) W[std::size_t(n) * K] = n == 0 ? 4.0f : 0.0f;
        for (int r = 0; r < B; r += 2) { A[std::size_t(r) * K] = boost[r]; lab[r] = 0; }
        std::vector<double> l(B);
        for (int r = 0; r < B; ++r) {
          for (int n = 0; n < N; ++n) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k)
              acc = std::fma(round_input(prec, A[std::size_t(r) * K + k]), round_input(prec, W[std::size_t(n) * K + k]), acc);
            zh[std::size_t(r) * N + n] = acc + b[n];
          }
          l[r] = cuda::xent_row(zh.data() + std::size_t(r) * N, N, lab[r], 1.0f, nullptr, nullptr).loss;
        }
        const std::vector<double> S = test::xent_block_sums(l, cuda::kXentRowsPerBlock);
        bool groups_differ = B < 32;
        for (int g = 0; g + 32 <= B && !groups_differ; g += 32) {
          double flat = 0;
          for (int i = 0; i < 32; ++i) flat += l[g + i];
          groups_differ = flat != test::xent_block_sums(std::vector<double>(l.begin() + g, l.begin() + g + 32), 32)[0];
        }
        loss_sensitive = groups_differ && (S.size() <= 2 || test::xent_launch_sum(S, true) != test::xent_launch_sum(S));
      }
      expect(loss_sensitive, tag + ": loss data that tells the stated order from others");
      const int R = cuda::head_rows_per_block(B, true), nb = cuda::head_blocks(B, true);
      auto slots = poison<cuda::Metrics>(std::size_t(cuda::head_xent_slots(B)));
      auto part = poison<float>(cuda::head_partial_floats(B, K, N));
      unsigned done = 0;
      const cuda::HeadScratch sc{{slots.data(), &done, int(slots.size())}, part.data(), part.size()};
      auto run = [&](std::vector<float>& gW, std::vector<float>& gb, std::vector<float>& gA, std::vector<float>& z,
                     std::vector<float>& dz, cuda::Metrics& m) {
        gW = poison<float>(W.size()); gb = poison<float>(N); gA = poison<float>(A.size());
        z = poison<float>(std::size_t(B) * N); dz = poison<float>(std::size_t(B) * N); m = cuda::Metrics{};
        cuda::head_train(gW.data(), gb.data(), gA.data(), &m, sc, A.data(), W.data(), b.data(), lab.data(), 1.25f,
                         1.0f / B, B, K, N, nullptr, prec, z.data(), dz.data());
      };
      std::vector<float> gW, gb, gA, z, dz; cuda::Metrics m;
      emu::g_block_order = emu::BlockOrder::Index;
      run(gW, gb, gA, z, dz, m);
      expect(done == 0, tag + " counter back to 0");
      const test::HeadReference ref = test::head_reference(A, W, b, dz, B, K, N, 1.25f, prec);
      auto within = [&](const std::vector<float>& g, const std::vector<double>& r, const std::vector<double>& bound, const std::string& what) {
        ++checks; std::size_t bad = 0;
        for (std::size_t i = 0; i < g.size(); ++i) if (!(std::fabs(double(g[i]) - r[i]) <= bound[i])) ++bad;
        if (bad || g.size() != r.size()) { ++failures; std::printf("FAIL %s %s: %zu of %zu elements outside their bound\n", tag.c_str(), what.c_str(), bad, g.size()); }
      };
      within(z, ref.logits, ref.logits_bound, "logits");
      within(gA, ref.dA, ref.dA_bound, "dA");
      within(gW, ref.dW, ref.dW_bound, "dW");
      within(gb, ref.db, ref.db_bound, "db");
      // dZ, loss and hits as softmax_xent computes them from the same logits (xent_row, here on the host).
      std::vector<double> rowl(B); std::vector<float> rowg(std::size_t(B) * N); unsigned long long hits = 0;
      for (int r = 0; r < B; ++r) {
        const cuda::XentRow x = cuda::xent_row(z.data() + std::size_t(r) * N, N, lab[r], 1.0f / B, rowg.data() + std::size_t(r) * N, nullptr);
        rowl[r] = x.loss; hits += x.hit ? 1 : 0;
      }
      same(dz, rowg, tag + " dZ = xent_row's");
      same(z, zh, tag + " logits = the stated FMA chain");
      const std::vector<double> S = test::xent_block_sums(rowl, cuda::kXentRowsPerBlock);
      const double want_loss = test::xent_launch_sum(S);
      // dW/db in the stated order: per block a chain over its rows, then 0 + P_0 + P_1 + ... (one block: P_0).
      std::vector<float> rdz(dz.size()), ra(A.size());
      for (std::size_t i = 0; i < dz.size(); ++i) rdz[i] = round_input(prec, dz[i]);
      for (std::size_t i = 0; i < A.size(); ++i) ra[i] = round_input(prec, A[i]);
      std::vector<float> wW(W.size()), wb(N);
      bool sensitive = nb <= 2;
      for (int n = 0; n < N; ++n)
        for (int c = 0; c <= K; ++c) {
          std::vector<float> P(std::size_t(nb), 0.0f);
          for (int q = 0; q < nb; ++q)
            for (int r = q * R; r < std::min(B, (q + 1) * R); ++r)
              P[q] = std::fma(rdz[std::size_t(r) * N + n], c == K ? 1.0f : ra[std::size_t(r) * K + c], P[q]);
          float tot = 0.0f, rev = 0.0f;
          for (int q = 0; q < nb; ++q) { tot += P[q]; rev += P[nb - 1 - q]; }
          if (nb == 1) tot = P[0];
          if (tot != rev) sensitive = true;
          (c == K ? wb[n] : wW[std::size_t(n) * K + c]) = tot;
        }
      expect(sensitive, tag + ": data that tells block order from reversed");
      same(gW, wW, tag + " dW in the stated order");
      same(gb, wb, tag + " db in the stated order");
      expect(std::memcmp(&m.loss_sum, &want_loss, sizeof(double)) == 0 && m.correct == hits,
             cat(tag, " loss bits ", hexf(m.loss_sum), " vs ", hexf(want_loss), " hits ", m.correct, " vs ", hits));
      for (emu::BlockOrder order : {emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
        emu::g_block_order = order;
        std::vector<float> oW, ob, oA, oz, odz; cuda::Metrics om;
        run(oW, ob, oA, oz, odz, om);
        const std::string t = cat(tag, " order ", int(order));
        same(oW, gW, t + " dW"); same(ob, gb, t + " db"); same(oA, gA, t + " dA"); same(odz, dz, t + " dZ");
        expect(std::memcmp(&om.loss_sum, &m.loss_sum, sizeof(double)) == 0 && om.correct == m.correct, t + " metrics");
        expect(done == 0, t + " counter back to 0");
        cuda::Metrics em;  // evaluation: the same sums from the forward alone (32-row blocks)
        cuda::head_evaluate(&em, sc.xent, A.data(), W.data(), b.data(), lab.data(), B, K, N, nullptr, prec);
        expect(std::memcmp(&em.loss_sum, &m.loss_sum, sizeof(double)) == 0 && em.correct == m.correct && done == 0,
               t + " head_evaluate metrics");
      }
      emu::g_block_order = emu::BlockOrder::Index;
      {  // the labels read by index (the training step's LabelInput::by_index): the same bits
        const test::ScatteredLabels sl = test::scatter_labels(lab, uint64_t(B) * 5 + K);
        cuda::TrainCounters c; c.batch = sl.batch;
        const cuda::LabelInput by_index = cuda::LabelInput::by_index(sl.labels.data(), sl.idx.data(), sl.first, &c, sl.stride);
        auto iW = poison<float>(W.size()), ib = poison<float>(N), iA = poison<float>(A.size());
        cuda::Metrics im;
        cuda::head_train(iW.data(), ib.data(), iA.data(), &im, sc, A.data(), W.data(), b.data(), by_index, 1.25f,
                         1.0f / B, B, K, N, nullptr, prec);
        const std::string t = tag + " labels by index";
        same(iW, gW, t + " dW"); same(ib, gb, t + " db"); same(iA, gA, t + " dA");
        expect(std::memcmp(&im.loss_sum, &m.loss_sum, sizeof(double)) == 0 && im.correct == m.correct && done == 0,
               t + " metrics");
        cuda::Metrics em, ei;
        cuda::head_evaluate(&em, sc.xent, A.data(), W.data(), b.data(), lab.data(), B, K, N, nullptr, prec);
        cuda::head_evaluate(&ei, sc.xent, A.data(), W.data(), b.data(), by_index, B, K, N, nullptr, prec);
        expect(std::memcmp(&em.loss_sum, &ei.loss_sum, sizeof(double)) == 0 && em.correct == ei.correct && done == 0,
               t + " head_evaluate metrics");
      }
    }
  // tail_train (kernels/tail.cuh): layers 1..L-1 in one launch of row blocks. Its elements are
  // checked against the CPU reference by tests/gpu/test_tail.cu (run by gpu_tests); here what only
  // the emulation can vary: the blocks in index, reversed and shuffled order give the same bits
  // (slices, dz0, metrics, the counter back to 0), and the loss sum is softmax_xent's stated order
  // over the rows' xent_row losses (tests/gpu/xent_order.hpp), on more than one 256-row group.
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32})
    for (const std::vector<int>& w : {std::vector<int>{128, 64, 10}, std::vector<int>{20, 12, 5}}) {
      const int B = w[0] == 128 ? 300 : 8193, T = int(w.size()) - 1, C = w.back();
      // The 8193-row case (blocks of 2-3 row groups) at fp32 only: the block partition and the
      // loss order do not depend on the precision, and test_tail (gpu_tests) runs its mma paths.
      if (B > 4096 && prec != GemmPrecision::FP32) continue;
      const std::string tag = cat("tail ", w[0], "..", C, " B=", B, prec == GemmPrecision::TF32 ? " tf32" : " fp32");
      std::vector<std::vector<float>> W, bias;
      for (int i = 1; i <= T; ++i) {  // the last layer's logits far apart: losses from ~1e-15 to ~50,
        const double lim = (i == T ? 40.0 : 1.5) / std::sqrt(w[i - 1]);  // whose double sums depend on the order
        W.push_back(rnd(std::size_t(w[i]) * w[i - 1], 500 + i, -lim, lim));
        bias.push_back(rnd(std::size_t(w[i]), 510 + i, -0.2, 0.2));
      }
      cuda::TailNet net;
      net.layers = T;
      for (int i = 0; i <= T; ++i) net.width[i] = w[i];
      for (int i = 0; i < T; ++i) net.layer[i] = {W[i].data(), bias[i].data()};
      std::vector<float> A0 = rnd(std::size_t(B) * w[0], 520);
      for (float& x : A0) x = x > 0 ? x * 1.25f : 0.0f;
      const auto lab = rbytes(std::size_t(B), 521, 0, C - 1);
      const int nb = cuda::tail_blocks(B);
      auto slots = poison<cuda::Metrics>(std::size_t(cuda::tail_xent_slots(B)));
      unsigned done = 0;
      const cuda::XentScratch sc{slots.data(), &done, int(slots.size())};
      const cuda::DropoutSpec drop{0.2f, 42, 3, 0, nullptr};
      auto run = [&](std::vector<float>& part, std::vector<float>& dz0, std::vector<float>& logits, cuda::Metrics& m) {
        part = poison<float>(std::size_t(nb) * cuda::tail_slice_floats(w));
        dz0 = poison<float>(A0.size());
        logits = poison<float>(std::size_t(B) * C);
        m = cuda::Metrics{};
        cuda::TailTrace tr;
        tr.act[T - 1] = logits.data();
        cuda::tail_train(part.data(), dz0.data(), &m, sc, net, A0.data(), lab.data(), drop, 1.25f, 1.0f / B, B, nullptr,
                         prec, &tr);
      };
      std::vector<float> part, dz0, logits;
      cuda::Metrics m;
      emu::g_block_order = emu::BlockOrder::Index;
      run(part, dz0, logits, m);
      expect(done == 0, tag + " counter back to 0");
      std::vector<double> rowl(static_cast<std::size_t>(B));
      unsigned long long hits = 0;
      for (int r = 0; r < B; ++r) {
        const cuda::XentRow x = cuda::xent_row(logits.data() + std::size_t(r) * C, C, lab[r], 1.0f / B, nullptr, nullptr);
        rowl[r] = x.loss;
        hits += x.hit ? 1 : 0;
      }
      const std::vector<double> S = test::xent_block_sums(rowl, cuda::kXentRowsPerBlock);
      const double want = test::xent_launch_sum(S);
      expect(S.size() <= 2 || test::xent_launch_sum(S, true) != want, tag + ": loss data that tells the stated order from others");
      expect(std::memcmp(&m.loss_sum, &want, sizeof(double)) == 0 && m.correct == hits,
             cat(tag, " loss bits ", hexf(m.loss_sum), " vs ", hexf(want), " hits ", m.correct, " vs ", hits));
      cuda::Metrics e0;  // evaluation (no dropout: other losses), index order
      cuda::tail_evaluate(&e0, sc, net, A0.data(), lab.data(), B, nullptr, prec);
      expect(done == 0 && e0.correct <= (unsigned long long)B && std::isfinite(e0.loss_sum), tag + " tail_evaluate");
      for (emu::BlockOrder order : {emu::BlockOrder::Reverse, emu::BlockOrder::Shuffled}) {
        emu::g_block_order = order;
        std::vector<float> op, od, ol;
        cuda::Metrics om;
        run(op, od, ol, om);
        const std::string t = cat(tag, " order ", int(order));
        same(op, part, t + " slices");
        same(od, dz0, t + " dz0");
        same(ol, logits, t + " logits");
        expect(std::memcmp(&om.loss_sum, &m.loss_sum, sizeof(double)) == 0 && om.correct == m.correct, t + " metrics");
        expect(done == 0, t + " counter back to 0");
        cuda::Metrics em;
        cuda::tail_evaluate(&em, sc, net, A0.data(), lab.data(), B, nullptr, prec);
        expect(done == 0 && std::memcmp(&em.loss_sum, &e0.loss_sum, sizeof(double)) == 0 && em.correct == e0.correct,
               t + " tail_evaluate metrics");
      }
      emu::g_block_order = emu::BlockOrder::Index;
      {  // the labels read by index (the training step's LabelInput::by_index): the same bits
        const test::ScatteredLabels sl = test::scatter_labels(lab, uint64_t(B) * 3 + T);
        cuda::TrainCounters c; c.batch = sl.batch;
        const cuda::LabelInput by_index = cuda::LabelInput::by_index(sl.labels.data(), sl.idx.data(), sl.first, &c, sl.stride);
        auto ip = poison<float>(part.size()), id = poison<float>(dz0.size());
        cuda::Metrics im;
        cuda::tail_train(ip.data(), id.data(), &im, sc, net, A0.data(), by_index, drop, 1.25f, 1.0f / B, B, nullptr, prec);
        const std::string t = tag + " labels by index";
        same(ip, part, t + " slices"); same(id, dz0, t + " dz0");
        expect(std::memcmp(&im.loss_sum, &m.loss_sum, sizeof(double)) == 0 && im.correct == m.correct && done == 0,
               t + " metrics");
        cuda::Metrics ei;
        cuda::tail_evaluate(&ei, sc, net, A0.data(), by_index, B, nullptr, prec);
        expect(done == 0 && std::memcmp(&ei.loss_sum, &e0.loss_sum, sizeof(double)) == 0 && ei.correct == e0.correct,
               t + " tail_evaluate metrics");
      }
      // 16-row blocks (TailRows::Half: twice the blocks, half groups split between blocks), in index
      // and reversed order: the same dz0, logits and loss bits (the stated order). (Their slices:
      // test_tail, against the CPU reference block by block.)
      for (emu::BlockOrder order : {emu::BlockOrder::Index, emu::BlockOrder::Reverse}) {
        emu::g_block_order = order;
        const int nh = cuda::tail_blocks(B, cuda::TailRows::Half);
        auto hp = poison<float>(std::size_t(nh) * cuda::tail_slice_floats(w)), hd = poison<float>(dz0.size()),
             hl = poison<float>(logits.size());
        cuda::Metrics hm;
        cuda::TailTrace tr;
        tr.act[T - 1] = hl.data();
        cuda::tail_train(hp.data(), hd.data(), &hm, sc, net, A0.data(), lab.data(), drop, 1.25f, 1.0f / B, B, nullptr,
                         prec, &tr, cuda::TailRows::Half);
        const std::string t = cat(tag, " 16-row blocks (", nh, ") order ", int(order));
        expect(nh > nb, t + ": more blocks than 32-row groups give");
        same(hd, dz0, t + " dz0");
        same(hl, logits, t + " logits");
        expect(std::memcmp(&hm.loss_sum, &want, sizeof(double)) == 0 && hm.correct == hits && done == 0, t + " metrics");
      }
      emu::g_block_order = emu::BlockOrder::Index;
    }
  {  // a scratch too small for the grid is refused
    const int B = cuda::kXentRowsPerBlock + 1;
    const auto z = rnd(std::size_t(B) * 10, 9); const auto lab = rbytes(B, 9, 0, 9);
    cuda::Metrics m; auto slots = poison<cuda::Metrics>(1); unsigned done = 0;
    for (const cuda::XentScratch& sc : {cuda::XentScratch{}, cuda::XentScratch{slots.data(), &done, 1}}) {
      bool threw = false;
      try { cuda::softmax_xent(nullptr, &m, sc, z.data(), lab.data(), B, 10, 0.0f, nullptr); } catch (const Error&) { threw = true; }
      expect(threw, cat("xent scratch of ", sc.capacity, " slots refused"));
    }
  }
  std::printf("%d checks, %d failures, %lld launches\n", checks, failures, g_emu_launches);
  return failures != 0;
}
