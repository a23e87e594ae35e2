// The tail kernel (kernels/tail.cuh: layers 1..L-1 of a training step, forward, softmax +
// cross-entropy and backward, in one launch) against the CPU reference at fp32, tf32 and bf16,
// every output element checked, and against the separate kernels it replaces, bit for bit where the
// arithmetic is the same.
//
// The reference is built layer by layer from the kernel's own intermediates (its TailTrace test
// outputs: each hidden activation, the logits and every dZ_i), as test_head.cu builds the head's
// from its dlogits: at TF32/BF16 a hidden activation one float ulp apart can round to another
// TF32/BF16 value and move a product by 2⁻¹¹ / 2⁻⁸ relative, far outside a float32 summation bound.
// So each GEMM output is compared with the double-precision product of the SAME rounded inputs, and
// may differ only by its float32 sum (tests/gpu/head_ref.hpp's γ_n = n·u/(1 - n·u), u = 2⁻²⁴ at
// fp32; at tf32/bf16 the GEMMs run on tensor cores, whose adds inside one mma may truncate rather
// than round (undocumented), so u = 2⁻²³ there, test_dense_tc.cu's bound for any order):
//   forward (pre-activation)  γ_{K+1}·(Σ_k |x·w| + |b|); hidden: ReLU is 1-Lipschitz, the dropout
//                             scale one more rounding: · scale + u·|ref|; dropped units exactly 0;
//   dZ_{i-1}, dz0              γ_{N+1}·scale·Σ_n |dz·w| + u·|ref| where the mask keeps, else exactly 0;
//   slice of block j, layer i  γ_{rows_j+1}·Σ_{rows of j} |dz·x| (db: the ones column, |dz|);
//   summed slices (on the host, in double): the sum of the blocks' bounds;
//   dZ_T                       cpu::softmax_xent on the kernel's logits, test_softmax.cu's (2C+12)·u.
// Each intermediate the reference takes from the kernel is itself checked by the step before it,
// so the chain is checked end to end. Bitwise: dZ_T, loss sum and hits = cuda::softmax_xent's over
// the kernel's logits (every precision); at fp32 every GEMM output = the stated fmaf chain
// (forward_chain, data_chain, slice_chain), the hidden activation = dense_relu_dropout_forward, the
// logits = dense_forward, each dZ_{i-1} and dz0 = dense_backward_data (the same FMA chains). At
// tf32/bf16 no chain is checked bit for bit: the sums are mma.sync's, whose order and rounding
// inside one mma the PTX ISA does not document (the emulation's model adds in ascending k, which
// would equal the chains there and prove nothing about the hardware); what is checked is the bound
// above and that a second launch repeats the bits (and, in emu_kernels, any block order).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/adam.cuh"
#include "kernels/dense.cuh"
#include "kernels/gather.cuh"
#include "kernels/metrics.cuh"
#include "kernels/philox.hpp"
#include "kernels/softmax_xent.cuh"
#include "kernels/tail.cuh"
#include "kernels/train_counters.cuh"
#include "layers/cpu_ops.hpp"
#include "runtime/error.hpp"
#include "tests/gpu/gpu_test.cuh"
#include "tests/gpu/head_ref.hpp"
#ifdef MNIST_HOST_EMULATION  // (defined by the emulation's cuda_runtime.h, included above)
#include <cooperative_groups.h>  // (g_emu_sm_count, emu::g_emu_cluster_launches)
#endif

namespace mnist::test {
namespace {

struct TailShape {
  std::vector<int> widths;
  int rows;
};

// The model's tail (128 -> 64 -> 10) at one row, a 32-row group minus one, one group, a tail of
// rows, and the batch-4096 step (128 blocks of 32 rows); a deeper tail of odd widths (T = 3: 100 ->
// 48 -> 30 -> 7) and a one-layer tail (64 -> 10, no hidden layer); narrow widths at 4097 rows (128
// blocks, the last of 33 rows) and 8193 rows (2 or 3 groups a block: a 96-row block is a 64-row
// and a 32-row chunk, the running slice in shared memory); five layers of 64 (8 -> 64 x 4 ->
// 10: more biases than threads). Quick mode: fewer row counts.
std::vector<TailShape> tail_shapes() {
  const bool quick = quick_tests();
  std::vector<TailShape> v;
  for (int B : quick ? std::vector<int>{1, 100} : std::vector<int>{1, 31, 32, 100, 4096}) v.push_back({{128, 64, 10}, B});
  for (int B : quick ? std::vector<int>{1, 100} : std::vector<int>{1, 31, 100, 1000}) v.push_back({{100, 48, 30, 7}, B});
  for (int B : quick ? std::vector<int>{33} : std::vector<int>{1, 32, 100}) v.push_back({{64, 10}, B});
  v.push_back({{20, 12, 5}, 4097});
  v.push_back({{20, 12, 5}, 8193});
  if (!quick) v.push_back({{33, 17, 9, 3}, 16384});
  v.push_back({{8, 64, 64, 64, 64, 10}, 100});  // 266 biases: more than one a thread (the staging's second pass)
  return v;
}

const char* prec_name(GemmPrecision p) {
  return p == GemmPrecision::TF32 ? "tf32" : p == GemmPrecision::BF16 ? "bf16" : "fp32";
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// γ_n of a float32 sum of n terms in the kernel's GEMMs: u = 2⁻²⁴ at fp32 (fmaf chains, rounded);
// 2⁻²³ at tf32/bf16 (mma.sync: each add rounded or truncated, relative error <= 2⁻²³).
double sum_gamma(int n, GemmPrecision prec) {
  if (prec == GemmPrecision::FP32) return head_gamma(n);
  const double u = std::ldexp(1.0, -23);
  return n * u / (1.0 - n * u);
}

// A hidden layer's output as layer 0 hands it over: ReLU'd (about half exactly 0), dropout-scaled,
// with every 37th element a positive denormal that TF32 and BF16 round to 0 (1e-42 < 2^-137): its
// dz0 mask must stay the raw value's (the kernel keeps it as -0 in its staged A0: staged_input).
std::vector<float> activation(std::size_t n, uint64_t seed) {
  std::vector<float> a = random_vector(n, seed, -1.0, 1.0);
  for (float& x : a) x = x > 0.0f ? x * 1.25f : 0.0f;
  for (std::size_t i = 5; i < n; i += 37) a[i] = 1e-42f;
  return a;
}

std::vector<double> rounded(const std::vector<float>& v, GemmPrecision prec) {
  std::vector<double> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = double(round_input(prec, v[i]));
  return o;
}

// The tail's parameters and their device copies.
struct TailModel {
  std::vector<int> w;
  std::vector<std::vector<float>> W, b;
  std::vector<DeviceBuffer<float>> dW, db;
  TailModel(const std::vector<int>& widths, uint64_t seed) : w(widths) {
    const int T = int(w.size()) - 1;
    for (int i = 1; i <= T; ++i) {
      const double lim = 1.5 / std::sqrt(double(w[std::size_t(i - 1)]));  // logits of order 1
      W.push_back(random_vector(std::size_t(w[std::size_t(i)]) * std::size_t(w[std::size_t(i - 1)]), seed + 10 * i,
                                -lim, lim));
      b.push_back(random_vector(std::size_t(w[std::size_t(i)]), seed + 10 * i + 1, -0.2, 0.2));
      dW.push_back(to_device(W.back()));
      db.push_back(to_device(b.back()));
    }
  }
  int layers() const { return int(w.size()) - 1; }
  cuda::TailNet net() const {
    cuda::TailNet n;
    n.layers = layers();
    for (int i = 0; i <= n.layers; ++i) n.width[i] = w[std::size_t(i)];
    for (int i = 0; i < n.layers; ++i) n.layer[i] = {dW[std::size_t(i)].data(), db[std::size_t(i)].data()};
    return n;
  }
};

// The traced intermediates of one launch.
struct Trace {
  std::vector<DeviceBuffer<float>> act, dz;
  cuda::TailTrace t;
  Trace(const std::vector<int>& w, int B) {
    const int T = int(w.size()) - 1;
    for (int i = 1; i <= T; ++i) {
      act.push_back(poisoned<float>(std::size_t(B) * std::size_t(w[std::size_t(i)])));
      dz.push_back(poisoned<float>(std::size_t(B) * std::size_t(w[std::size_t(i)])));
    }
    for (int i = 0; i < T; ++i) {
      t.act[i] = act[std::size_t(i)].data();
      t.dz[i] = dz[std::size_t(i)].data();
    }
  }
};

// Slots and the counter for up to `rows` rows, as the engine holds them: slots poisoned.
struct XentBuffers {
  DeviceBuffer<cuda::Metrics> slots;
  DeviceBuffer<unsigned> done;
  explicit XentBuffers(int rows)
      : slots(poisoned<cuda::Metrics>(std::size_t(std::max(cuda::tail_xent_slots(rows), cuda::softmax_xent_blocks(rows))))),
        done(to_device(std::vector<unsigned>{0u})) {}
  cuda::XentScratch scratch() { return {slots.data(), done.data(), int(slots.size())}; }
  unsigned counter() const { return to_host(done)[0]; }
};

// The metric sums a training launch left in xb's slots (metrics null: the engine's form), as the
// engine's optimizer adds them: adam_reduce_update's GroupMetrics over no parameter segment (its
// count-in and the sums alone). Checks that its counter comes back to 0 and the step moved on once.
cuda::Metrics optimizer_group_sums(XentBuffers& xb, int B, cudaStream_t stream) {
  auto md = to_device(std::vector<cuda::Metrics>(1));
  auto pmv = to_device(std::vector<float>(3, 0.5f));
  auto adam_counters = to_device(std::vector<cuda::TrainCounters>{cuda::TrainCounters{3, 0, 1e-3f, 0u}});
  auto advance = to_device(std::vector<unsigned>{0u});
  cuda::adam_reduce_update(pmv.data(), pmv.data() + 1, pmv.data() + 2, nullptr, cuda::GradSlicesSet{},
                           adam_counters.data(), 0.9f, 0.999f, 1e-7f, stream, advance.data(),
                           cuda::GroupMetrics{xb.slots.data(), cuda::tail_xent_slots(B), md.data()});
  CHECK(to_host(advance)[0] == 0u);
  CHECK(to_host(adam_counters)[0].step == 4);
  return to_host(md)[0];
}

// Forward of one layer from the (kernel's) input X [B,K]: the reference and bound of every output.
// hidden: ReLU + dropout (layer, drop) as dense_unit applies them; else the logits.
void forward_reference(std::vector<double>& ref, std::vector<double>& bound, const std::vector<float>& X,
                       const std::vector<float>& W, const std::vector<float>& b, int B, int K, int N, bool hidden,
                       const cuda::DropoutSpec& drop, uint32_t layer, GemmPrecision prec) {
  const std::vector<double> rx = rounded(X, prec), rw = rounded(W, prec);
  const uint32_t threshold = drop.p > 0 ? rng::dropout_threshold(drop.p) : 0u;
  const double scale = drop.p > 0 ? double(cuda::dropout_scale(drop.p)) : 1.0;
  ref.assign(std::size_t(B) * N, 0.0);
  bound.assign(ref.size(), 0.0);
  for (int r = 0; r < B; ++r)
    for (int n = 0; n < N; ++n) {
      double s = b[std::size_t(n)], mag = std::fabs(double(b[std::size_t(n)]));
      for (int k = 0; k < K; ++k) {
        const double t = rx[std::size_t(r) * K + k] * rw[std::size_t(n) * K + k];
        s += t;
        mag += std::fabs(t);
      }
      const std::size_t o = std::size_t(r) * N + n;
      double e = sum_gamma(K + 1, prec) * mag;
      if (hidden) {
        const bool keep = !threshold || rng::dropout_keep(drop.seed, drop.step, layer, o, threshold);
        s = keep ? std::max(s, 0.0) * scale : 0.0;
        e = keep ? e * scale + kUnitRoundoff * std::fabs(s) : 0.0;
      }
      ref[o] = s;
      bound[o] = e;
    }
}

// dX [B,K] = (round(dZ)·round(W)) masked by mask > 0, · scale: reference and bound.
void data_reference(std::vector<double>& ref, std::vector<double>& bound, const std::vector<float>& dz,
                    const std::vector<float>& W, const std::vector<float>& mask, float scale, int B, int K, int N,
                    GemmPrecision prec) {
  const std::vector<double> rd = rounded(dz, prec), rw = rounded(W, prec);
  ref.assign(std::size_t(B) * K, 0.0);
  bound.assign(ref.size(), 0.0);
  for (int r = 0; r < B; ++r)
    for (int k = 0; k < K; ++k) {
      const std::size_t o = std::size_t(r) * K + k;
      if (!(mask[o] > 0.0f)) continue;
      double s = 0, mag = 0;
      for (int n = 0; n < N; ++n) {
        const double t = rd[std::size_t(r) * N + n] * rw[std::size_t(n) * K + k];
        s += t;
        mag += std::fabs(t);
      }
      ref[o] = s * scale;
      bound[o] = sum_gamma(N + 1, prec) * scale * mag + kUnitRoundoff * std::fabs(ref[o]);
    }
}

// One layer's [dW | db] ([N][K+1]) over rows [r0, r1): Σ round(dz)ᵀ·[round(X) | 1], and the bound.
void slice_reference(std::vector<double>& ref, std::vector<double>& bound, const std::vector<double>& rd,
                     const std::vector<double>& rx, int r0, int r1, int K, int N, GemmPrecision prec) {
  const int KA = K + 1;
  ref.assign(std::size_t(N) * KA, 0.0);
  bound.assign(ref.size(), 0.0);
  for (int r = r0; r < r1; ++r)
    for (int n = 0; n < N; ++n) {
      const double d = rd[std::size_t(r) * N + n];
      for (int c = 0; c < KA; ++c) {
        const double t = d * (c == K ? 1.0 : rx[std::size_t(r) * K + c]);
        ref[std::size_t(n) * KA + c] += t;
        bound[std::size_t(n) * KA + c] += std::fabs(t);
      }
    }
  // + an absolute 2^-150 a row: an FMA whose result is subnormal rounds it to a multiple of 2^-149
  // (gradual underflow, no relative bound there; activation()'s denormals make whole sums so).
  for (double& e : bound) e = e * sum_gamma(r1 - r0 + 1, prec) + (r1 - r0) * std::ldexp(1.0, -150);
}

// The kernel's stated order at fp32 (header), written out on the host in float32 (std::fmaf is correctly rounded
// everywhere, so these are the kernel's bits if and only if it adds in this order):
//   forward  z = fmaf chain over k ascending from 0 of round(x)·round(w), + b; hidden: ReLU, dropout;
//   data     g = fmaf chain over n ascending from 0 of round(dz)·round(w), masked, · scale;
//   slice    fmaf chain over the block's rows ascending from 0 of round(dz)·round(x) (db: + round(dz)).
std::vector<float> forward_chain(const std::vector<float>& X, const std::vector<float>& W, const std::vector<float>& b,
                                 int B, int K, int N, bool hidden, const cuda::DropoutSpec& drop, uint32_t layer,
                                 GemmPrecision prec) {
  const uint32_t threshold = drop.p > 0 ? rng::dropout_threshold(drop.p) : 0u;
  const float scale = drop.p > 0 ? cuda::dropout_scale(drop.p) : 1.0f;
  std::vector<float> out(std::size_t(B) * N);
  for (int r = 0; r < B; ++r)
    for (int n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k)
        acc = std::fmaf(round_input(prec, X[std::size_t(r) * K + k]), round_input(prec, W[std::size_t(n) * K + k]), acc);
      float z = acc + b[std::size_t(n)];
      const std::size_t o = std::size_t(r) * N + n;
      if (hidden) {
        z = z > 0.0f ? z : 0.0f;
        if (threshold) z = rng::dropout_keep(drop.seed, drop.step, layer, o, threshold) ? z * scale : 0.0f;
      }
      out[o] = z;
    }
  return out;
}

std::vector<float> data_chain(const std::vector<float>& dz, const std::vector<float>& W, const std::vector<float>& mask,
                              float scale, int B, int K, int N, GemmPrecision prec) {
  std::vector<float> out(std::size_t(B) * K);
  for (int r = 0; r < B; ++r)
    for (int k = 0; k < K; ++k) {
      float acc = 0.0f;
      for (int n = 0; n < N; ++n)
        acc = std::fmaf(round_input(prec, dz[std::size_t(r) * N + n]), round_input(prec, W[std::size_t(n) * K + k]), acc);
      const std::size_t o = std::size_t(r) * K + k;
      out[o] = mask[o] > 0.0f ? acc * scale : 0.0f;
    }
  return out;
}

std::vector<float> slice_chain(const std::vector<float>& dz, const std::vector<float>& X, int r0, int r1, int K, int N,
                               GemmPrecision prec) {
  const int KA = K + 1;
  std::vector<float> out(std::size_t(N) * KA, 0.0f);
  for (int r = r0; r < r1; ++r)
    for (int n = 0; n < N; ++n) {
      const float d = round_input(prec, dz[std::size_t(r) * N + n]);
      for (int c = 0; c < K; ++c)
        out[std::size_t(n) * KA + c] = std::fmaf(d, round_input(prec, X[std::size_t(r) * K + c]), out[std::size_t(n) * KA + c]);
      out[std::size_t(n) * KA + K] += d;
    }
  return out;
}

TEST_CASE("tail_train equals the CPU reference at fp32/tf32/bf16, layer by layer and slice by slice") {
  Stream stream;
  const float mask_scale = 1.25f;
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
    for (const TailShape& s : tail_shapes()) {
      const std::vector<int>& w = s.widths;
      const int B = s.rows, T = int(w.size()) - 1, w0 = w[0], C = w.back();
      INFO("rows=", B, " widths=", w0, "..", C, " T=", T, " ", std::string(prec_name(prec)));
      REQUIRE(cuda::tail_unsupported(w).empty());
      const TailModel model(w, 200 + std::size_t(T) * 7 + std::size_t(w0));
      const auto A0 = activation(std::size_t(B) * w0, 301 + B + w0);
      const auto labels = random_bytes(std::size_t(B), 302 + B, 0, C - 1);
      auto d_A0 = to_device(A0);
      auto d_lab = to_device(labels);
      const int blocks = cuda::tail_blocks(B);
      REQUIRE(blocks == std::min(128, (B + 31) / 32));
      const std::size_t SF = cuda::tail_slice_floats(w);
      auto partial = poisoned<float>(std::size_t(blocks) * SF);
      auto dz0 = poisoned<float>(A0.size());
      auto metrics = to_device(std::vector<cuda::Metrics>(1));
      XentBuffers xb(B);
      Trace tr(w, B);
      const cuda::DropoutSpec drop{0.2f, 42, 7, 99 /* ignored */, nullptr};
      const float grad_scale = 1.0f / float(B);
      cuda::tail_train(partial.data(), dz0.data(), metrics.data(), xb.scratch(), model.net(), d_A0.data(),
                       d_lab.data(), drop, mask_scale, grad_scale, B, stream.get(), prec, &tr.t);
      const cuda::Metrics m = to_host(metrics)[0];
      CHECK(xb.counter() == 0u);
      std::vector<std::vector<float>> act(static_cast<std::size_t>(T)), dz(static_cast<std::size_t>(T));
      for (int i = 0; i < T; ++i) {
        act[std::size_t(i)] = to_host(tr.act[std::size_t(i)]);
        dz[std::size_t(i)] = to_host(tr.dz[std::size_t(i)]);
      }
      const std::vector<float> logits = act[std::size_t(T - 1)];
      const float hidden_scale = cuda::dropout_scale(drop.p);
      cuda::DropoutSpec ref_drop = drop;

      // Forward, layer by layer, from the kernel's own inputs.
      for (int i = 1; i <= T; ++i) {
        const std::vector<float>& X = i == 1 ? A0 : act[std::size_t(i - 2)];
        std::vector<double> ref, bound;
        forward_reference(ref, bound, X, model.W[std::size_t(i - 1)], model.b[std::size_t(i - 1)], B,
                          w[std::size_t(i - 1)], w[std::size_t(i)], i < T, ref_drop, uint32_t(i), prec);
        expect_within(act[std::size_t(i - 1)], ref, bound, i < T ? "hidden activation " + std::to_string(i) : "logits");
        if (prec == GemmPrecision::FP32) {  // the stated chain = the graph path's SIMT GEMMs' (header)
          CHECK_MESSAGE(bitwise_equal(act[std::size_t(i - 1)],
                                      forward_chain(X, model.W[std::size_t(i - 1)], model.b[std::size_t(i - 1)], B,
                                                    w[std::size_t(i - 1)], w[std::size_t(i)], i < T, ref_drop,
                                                    uint32_t(i), prec)),
                        "forward of layer " << i << " = the stated chain");
          auto dX = to_device(X);
          auto y = poisoned<float>(act[std::size_t(i - 1)].size());
          if (i < T) {
            cuda::DropoutSpec d = drop;
            d.layer = uint32_t(i);
            cuda::dense_relu_dropout_forward(y.data(), dX.data(), model.dW[std::size_t(i - 1)].data(),
                                             model.db[std::size_t(i - 1)].data(), B, w[std::size_t(i - 1)],
                                             w[std::size_t(i)], d, stream.get());
          } else {
            cuda::dense_forward(y.data(), dX.data(), model.dW[std::size_t(i - 1)].data(),
                                model.db[std::size_t(i - 1)].data(), B, w[std::size_t(i - 1)], w[std::size_t(i)], false,
                                stream.get());
          }
          CHECK_MESSAGE(bitwise_equal(to_host(y), act[std::size_t(i - 1)]), "fp32 forward of layer " << i << " = dense.cu's");
        }
      }

      // dZ_T, loss and hits: cpu::softmax_xent on the kernel's logits; bitwise cuda::softmax_xent.
      std::vector<double> dz_ref(logits.size());
      int correct = -1;
      const double loss = cpu::softmax_xent(dz_ref.data(), &correct, to_double(logits).data(), labels.data(), B, C,
                                            1.0 / double(B));
      std::vector<double> dz_bound(dz_ref.size());
      for (std::size_t i = 0; i < dz_ref.size(); ++i)
        dz_bound[i] = (2 * C + 12) * kUnitRoundoff * std::fabs(dz_ref[i]) + std::ldexp(1.0, -126);
      expect_within(dz[std::size_t(T - 1)], dz_ref, dz_bound, "dZ_T vs cpu");
      CHECK(std::fabs(m.loss_sum - loss) <= 1e-5 * loss);
      CHECK(m.correct == (unsigned long long)correct);
      {
        XentBuffers sb(B);
        auto m2 = to_device(std::vector<cuda::Metrics>(1));
        auto d_logits = to_device(logits);
        auto dz2 = poisoned<float>(logits.size());
        cuda::softmax_xent(dz2.data(), m2.data(), sb.scratch(), d_logits.data(), d_lab.data(), B, C, grad_scale,
                           stream.get());
        const cuda::Metrics x = to_host(m2)[0];
        CHECK(bitwise_equal(to_host(dz2), dz[std::size_t(T - 1)]));
        CHECK(same_bits(m.loss_sum, x.loss_sum));
        CHECK(m.correct == x.correct);
      }

      // Backward: dZ_{i-1} (hidden) and dz0 from the kernel's dZ_i; every block's slice of every layer.
      const std::vector<float> slices = to_host(partial);
      for (int i = T; i >= 1; --i) {
        const int K = w[std::size_t(i - 1)], N = w[std::size_t(i)];
        const std::vector<float>& X = i == 1 ? A0 : act[std::size_t(i - 2)];
        const std::vector<float>& dZ = dz[std::size_t(i - 1)];
        const float scale = i == 1 ? mask_scale : hidden_scale;
        const std::vector<float> dX = i == 1 ? to_host(dz0) : dz[std::size_t(i - 2)];
        std::vector<double> ref, bound;
        data_reference(ref, bound, dZ, model.W[std::size_t(i - 1)], X, scale, B, K, N, prec);
        if (i == 1 && prec != GemmPrecision::FP32) {
          // dz0 is written rounded to prec (layer 0's weight GEMM reads it so): one rounding more,
          // within u_prec (2⁻¹¹ TF32, 2⁻⁸ BF16) of the value, and every element a prec value.
          const double u = std::ldexp(1.0, prec == GemmPrecision::TF32 ? -11 : -8);
          for (std::size_t e = 0; e < bound.size(); ++e) bound[e] += u * (std::fabs(ref[e]) + bound[e]);
          std::size_t unrounded = 0;
          for (const float v : dX) unrounded += float_bits(round_input(prec, v)) != float_bits(v);
          CHECK_MESSAGE(unrounded == 0, unrounded << " dz0 elements are not " << (prec == GemmPrecision::TF32 ? "TF32" : "BF16")
                                                  << " values");
        }
        expect_within(dX, ref, bound, i == 1 ? std::string("dz0") : "dZ_" + std::to_string(i - 1));
        if (prec == GemmPrecision::FP32) {  // (tf32/bf16: mma.sync's order, see the header)
          CHECK_MESSAGE(bitwise_equal(dX, data_chain(dZ, model.W[std::size_t(i - 1)], X, scale, B, K, N, prec)),
                        "data gradient of layer " << i << " = the stated chain");
          auto d_dZ = to_device(dZ), d_X = to_device(X);
          auto y = poisoned<float>(dX.size());
          cuda::dense_backward_data(y.data(), d_dZ.data(), model.dW[std::size_t(i - 1)].data(), d_X.data(), scale, B,
                                    K, N, stream.get());
          CHECK_MESSAGE(bitwise_equal(to_host(y), dX), "fp32 data gradient of layer " << i << " = dense.cu's");
        }
        const std::vector<double> rd = rounded(dZ, prec), rx = rounded(X, prec);
        const std::size_t off = cuda::tail_layer_offset(w, i), n_el = std::size_t(N) * (K + 1);
        std::vector<double> total(n_el, 0.0), total_bound(n_el, 0.0), sum(n_el, 0.0);
        int slice_order_misses = 0;  // blocks whose slice is not the stated chain, bit for bit
        for (int j = 0; j < blocks; ++j) {
          const int r0 = cuda::tail_block_row(B, j), r1 = cuda::tail_block_row(B, j + 1);
          slice_reference(ref, bound, rd, rx, r0, r1, K, N, prec);
          const std::vector<float> got(slices.begin() + std::ptrdiff_t(std::size_t(j) * SF + off),
                                       slices.begin() + std::ptrdiff_t(std::size_t(j) * SF + off + n_el));
          expect_within(got, ref, bound, "slice of block " + std::to_string(j) + ", layer " + std::to_string(i));
          if (prec == GemmPrecision::FP32 && !bitwise_equal(got, slice_chain(dZ, X, r0, r1, K, N, prec)))
            ++slice_order_misses;  // (tf32/bf16: mma.sync's order, see the header)
          for (std::size_t e = 0; e < n_el; ++e) {
            total[e] += ref[e];
            total_bound[e] += bound[e];
            sum[e] += double(got[e]);
          }
        }
        expect_within(sum, total, total_bound, "slices summed, layer " + std::to_string(i));
        CHECK_MESSAGE(slice_order_misses == 0, "layer " << i << ": " << slice_order_misses << " of " << blocks
                                                        << " slices differ from the rows' ascending chain");
      }
      // The slices' padding (to a multiple of 4 floats) is written as 0.
      const std::size_t used = cuda::tail_layer_offset(w, T + 1);
      REQUIRE(SF >= used);
      REQUIRE(SF % 4 == 0);
      bool pad_zero = true;
      for (int j = 0; j < blocks; ++j)
        for (std::size_t e = used; e < SF; ++e) pad_zero = pad_zero && slices[std::size_t(j) * SF + e] == 0.0f;
      CHECK(pad_zero);

      // A second launch (a graph's next replay), the step from TrainCounters on the device, the
      // labels read by index as the training step reads them (kernels/labels.cuh) and no dz0 asked:
      // the same slices, the sums added again, the counter back to 0.
      const DeviceLabels by_index(labels, 303 + B);
      auto counters = to_device(std::vector<cuda::TrainCounters>{cuda::TrainCounters{7, 0, 0.0f, 0u}});
      cuda::DropoutSpec dev_drop = drop;
      dev_drop.step = 0;
      dev_drop.counters = counters.data();
      auto partial2 = poisoned<float>(slices.size());
      cuda::tail_train(partial2.data(), nullptr, metrics.data(), xb.scratch(), model.net(), d_A0.data(),
                       by_index.input(), dev_drop, mask_scale, grad_scale, B, stream.get(), prec);
      const cuda::Metrics m3 = to_host(metrics)[0];
      CHECK(same_bits(m3.loss_sum, m.loss_sum + m.loss_sum));
      CHECK(m3.correct == 2 * m.correct);
      CHECK(bitwise_equal(to_host(partial2), slices));
      CHECK(xb.counter() == 0u);

      // The engine's form: metrics null, the group sums left in the slots (the counter untouched);
      // adam_reduce_update's GroupMetrics (here over no parameter segment: its count-in and the
      // sums alone) adds them, bit for bit the kernel's own.
      {
        auto partial3 = poisoned<float>(slices.size());
        XentBuffers xd(B);
        cuda::tail_train(partial3.data(), nullptr, nullptr, xd.scratch(), model.net(), d_A0.data(), by_index.input(),
                         dev_drop, mask_scale, grad_scale, B, stream.get(), prec);
        CHECK(bitwise_equal(to_host(partial3), slices));
        CHECK(xd.counter() == 0u);
        const cuda::Metrics d = optimizer_group_sums(xd, B, stream.get());
        CHECK(same_bits(d.loss_sum, m.loss_sum));
        CHECK(d.correct == m.correct);
      }

      // Evaluation: the forward without dropout, the same sums' order.
      Trace te(w, B);
      auto me = to_device(std::vector<cuda::Metrics>(1));
      cuda::tail_evaluate(me.data(), xb.scratch(), model.net(), d_A0.data(), d_lab.data(), B, stream.get(), prec, &te.t);
      const cuda::Metrics e = to_host(me)[0];
      CHECK(xb.counter() == 0u);
      auto mi = to_device(std::vector<cuda::Metrics>(1));  // and with the labels by index
      cuda::tail_evaluate(mi.data(), xb.scratch(), model.net(), d_A0.data(), by_index.input(), B, stream.get(), prec);
      const cuda::Metrics ei = to_host(mi)[0];
      CHECK(same_bits(ei.loss_sum, e.loss_sum));
      CHECK(ei.correct == e.correct);
      std::vector<float> eact = A0;
      for (int i = 1; i <= T; ++i) {
        std::vector<double> ref, bound;
        forward_reference(ref, bound, eact, model.W[std::size_t(i - 1)], model.b[std::size_t(i - 1)], B,
                          w[std::size_t(i - 1)], w[std::size_t(i)], i < T, cuda::DropoutSpec{}, uint32_t(i), prec);
        eact = to_host(te.act[std::size_t(i - 1)]);
        expect_within(eact, ref, bound, "evaluation forward " + std::to_string(i));
      }
      {
        XentBuffers sb(B);
        auto m2 = to_device(std::vector<cuda::Metrics>(1));
        auto d_logits = to_device(eact);
        auto dz2 = poisoned<float>(eact.size());
        cuda::softmax_xent(dz2.data(), m2.data(), sb.scratch(), d_logits.data(), d_lab.data(), B, C, grad_scale,
                           stream.get());
        const cuda::Metrics x = to_host(m2)[0];
        CHECK(same_bits(e.loss_sum, x.loss_sum));
        CHECK(e.correct == x.correct);
      }
    }
}

// Whether every byte of v is still the poison (0xFF): nothing wrote it.
template <class T>
bool untouched(const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  return std::all_of(p, p + v.size() * sizeof(T), [](unsigned char c) { return c == 0xFF; });
}

// The tail of the benchmark hooks' tests (tail_force_stop, tail_force_clocks): 64 -> 32 -> 10 with
// dropout 0.2.
struct HookCase {
  const std::vector<int> w{64, 32, 10};
  const int T = 2;
  const TailModel model{w, 17};
  const cuda::DropoutSpec drop{0.2f, 42, 7, 0, nullptr};
};

TEST_CASE("tail_train in 16-row blocks, two an SM (TailRows::Half): the same dz0, activations and metrics, each block's slice") {
  // The rows cut into 16-row halves (up to 256 blocks) instead of 32-row groups (128): every output
  // but the slices is the same bits as the 32-row launch (a row's forward, softmax and data
  // gradient do not depend on its block; the metrics' 32-row trees are formed from their halves);
  // each block's slice is the sum over its own rows, checked against the CPU reference (fp32: the
  // stated chain, bit for bit), and the engine's form (metrics left in the slots for
  // adam_reduce_update's GroupMetrics) gives the same sums.
  Stream stream;
  const float mask_scale = 1.25f;
  const bool quick = quick_tests();
  // (8193: 48-row blocks, 32-row chunks with the running slice; 12300: 48- and 64-row blocks, one
  // 64-row chunk, blocks starting at odd multiples of 16)
  std::vector<TailShape> shapes{{{128, 64, 10}, 100}, {{100, 48, 30, 7}, 47}, {{20, 12, 5}, 8193}, {{20, 12, 5}, 12300}};
  if (!quick) shapes.insert(shapes.end(), {{{128, 64, 10}, 4096}, {{128, 64, 10}, 2944}, {{64, 10}, 17}});
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
    for (const TailShape& s : shapes) {
      const std::vector<int>& w = s.widths;
      const int B = s.rows, T = int(w.size()) - 1, w0 = w[0], C = w.back();
      INFO("rows=", B, " widths=", w0, "..", C, " T=", T, " ", std::string(prec_name(prec)));
      const TailModel model(w, 700 + std::size_t(T) * 7 + std::size_t(w0));
      const auto A0 = activation(std::size_t(B) * w0, 701 + B + w0);
      const auto labels = random_bytes(std::size_t(B), 702 + B, 0, C - 1);
      auto d_A0 = to_device(A0);
      auto d_lab = to_device(labels);
      const std::size_t SF = cuda::tail_slice_floats(w);
      const cuda::DropoutSpec drop{0.2f, 42, 5, 0, nullptr};
      const float grad_scale = 1.0f / float(B);
      struct Run {
        std::vector<float> slices, dz0;
        std::vector<std::vector<float>> act, dz;
        cuda::Metrics m;
      };
      const auto run = [&](cuda::TailRows rows) {
        const int blocks = cuda::tail_blocks(B, rows);
        auto partial = poisoned<float>(std::size_t(blocks) * SF);
        auto dz0 = poisoned<float>(A0.size());
        auto metrics = to_device(std::vector<cuda::Metrics>(1));
        XentBuffers xb(B);
        Trace tr(w, B);
        cuda::tail_train(partial.data(), dz0.data(), metrics.data(), xb.scratch(), model.net(), d_A0.data(),
                         d_lab.data(), drop, mask_scale, grad_scale, B, stream.get(), prec, &tr.t, rows);
        CHECK(xb.counter() == 0u);
        Run r{to_host(partial), to_host(dz0), {}, {}, to_host(metrics)[0]};
        for (int i = 0; i < T; ++i) {
          r.act.push_back(to_host(tr.act[std::size_t(i)]));
          r.dz.push_back(to_host(tr.dz[std::size_t(i)]));
        }
        return r;
      };
      const Run wide = run(cuda::TailRows::Wide), half = run(cuda::TailRows::Half);
      const int blocks = cuda::tail_blocks(B, cuda::TailRows::Half);
      REQUIRE(blocks == std::min(256, (B + 15) / 16));
      CHECK(bitwise_equal(half.dz0, wide.dz0));
      for (int i = 0; i < T; ++i) {
        CHECK_MESSAGE(bitwise_equal(half.act[std::size_t(i)], wide.act[std::size_t(i)]), "activation " << i + 1);
        CHECK_MESSAGE(bitwise_equal(half.dz[std::size_t(i)], wide.dz[std::size_t(i)]), "dZ_" << i + 1);
      }
      CHECK(same_bits(half.m.loss_sum, wide.m.loss_sum));
      CHECK(half.m.correct == wide.m.correct);
      {  // ... and both are softmax_xent's sums over the same logits (its stated order), bit for bit
        XentBuffers sb(B);
        auto m2 = to_device(std::vector<cuda::Metrics>(1));
        auto d_logits = to_device(half.act[std::size_t(T - 1)]);
        auto dz2 = poisoned<float>(half.act[std::size_t(T - 1)].size());
        cuda::softmax_xent(dz2.data(), m2.data(), sb.scratch(), d_logits.data(), d_lab.data(), B, C, grad_scale,
                           stream.get());
        const cuda::Metrics x = to_host(m2)[0];
        CHECK(same_bits(half.m.loss_sum, x.loss_sum));
        CHECK(half.m.correct == x.correct);
      }

      // Every block's slice of every layer: the sum over its own rows [r0, r1), r0 a multiple of 16.
      for (int i = T; i >= 1; --i) {
        const int K = w[std::size_t(i - 1)], N = w[std::size_t(i)];
        const std::vector<float>& X = i == 1 ? A0 : half.act[std::size_t(i - 2)];
        const std::vector<float>& dZ = half.dz[std::size_t(i - 1)];
        const std::vector<double> rd = rounded(dZ, prec), rx = rounded(X, prec);
        const std::size_t off = cuda::tail_layer_offset(w, i), n_el = std::size_t(N) * (K + 1);
        int chain_misses = 0, misplaced = 0;
        for (int j = 0; j < blocks; ++j) {
          const int r0 = cuda::tail_block_row(B, j, cuda::TailRows::Half);
          const int r1 = cuda::tail_block_row(B, j + 1, cuda::TailRows::Half);
          misplaced += r0 % 16 != 0 || r1 <= r0;
          std::vector<double> ref, bound;
          slice_reference(ref, bound, rd, rx, r0, r1, K, N, prec);
          const std::vector<float> got(half.slices.begin() + std::ptrdiff_t(std::size_t(j) * SF + off),
                                       half.slices.begin() + std::ptrdiff_t(std::size_t(j) * SF + off + n_el));
          expect_within(got, ref, bound, "half-row slice of block " + std::to_string(j) + ", layer " + std::to_string(i));
          if (prec == GemmPrecision::FP32 && !bitwise_equal(got, slice_chain(dZ, X, r0, r1, K, N, prec))) ++chain_misses;
        }
        CHECK(misplaced == 0);
        CHECK_MESSAGE(chain_misses == 0, "layer " << i << ": " << chain_misses << " of " << blocks
                                                  << " slices differ from the rows' ascending chain");
      }

      // The engine's form: the half sums left in the slots, added by adam_reduce_update's last block.
      {
        auto partial = poisoned<float>(half.slices.size());
        XentBuffers xd(B);
        cuda::tail_train(partial.data(), nullptr, nullptr, xd.scratch(), model.net(), d_A0.data(), d_lab.data(), drop,
                         mask_scale, grad_scale, B, stream.get(), prec, nullptr, cuda::TailRows::Half);
        CHECK(bitwise_equal(to_host(partial), half.slices));
        CHECK(xd.counter() == 0u);
        const cuda::Metrics d = optimizer_group_sums(xd, B, stream.get());
        CHECK(same_bits(d.loss_sum, wide.m.loss_sum));
        CHECK(d.correct == wide.m.correct);
      }
    }
}

// One layer-0-inside training launch's outputs read back (the cases below), and the check that
// everything after A0 is another launch's bits: dz0, every slice, activation and dZ, the metrics.
struct L0Run {
  std::vector<float> a0, slices, dz0;
  std::vector<std::vector<float>> act, dz;
  cuda::Metrics m;
  long long clusters = 0;  // (the emulation's cluster launches)
};
void check_same_after_a0(const L0Run& got, const L0Run& want) {
  CHECK(bitwise_equal(got.dz0, want.dz0));
  CHECK(bitwise_equal(got.slices, want.slices));
  for (std::size_t i = 0; i < want.act.size(); ++i) {
    CHECK_MESSAGE(bitwise_equal(got.act[i], want.act[i]), "activation " << i + 1);
    CHECK_MESSAGE(bitwise_equal(got.dz[i], want.dz[i]), "dZ_" << i + 1);
  }
  CHECK(same_bits(got.m.loss_sum, want.m.loss_sum));
  CHECK(got.m.correct == want.m.correct);
}
// More than a fifth of A0's units positive (not all dropped or cut by the ReLU).
void check_a0_alive(const std::vector<float>& a0) {
  std::size_t kept = 0;
  for (const float v : a0) kept += v > 0.0f;
  CHECK_MESSAGE(kept > a0.size() / 5, kept << " of " << a0.size() << " units of A0 positive");
}

// Layer 0 inside the training launch (TailLayer0): each block computes its rows' A0 from the uint8
// images by index, W0 streamed in slices. A0 (trace.a0) must be within the forward bound of the CPU
// reference (γ_{K+1}·(Σ|x·w| + |b|), scaled, dropped units exactly 0; the kernel's own rounding of the
// pixels and W0 applied to the reference's inputs), and everything after it the bits of the plain
// launch run on that A0: activations, dZ, dz0, every slice, the metrics, and the engine's form (the
// slots added by adam_reduce_update), and tail_evaluate with layer 0 inside alike (no dropout). W0
// given rounded (w_rounded) gives the same bits as W0 raw.
// Shapes: layer 0's K of 784 in 13 slices (the last 16 deep), K = 50 (not a multiple of 4: pixel and
// W0 loads element by element, a partial mma step), images 1 byte off 4-byte alignment and W0 one float
// off 16 bytes (element loads and 4-byte copies), 4500 rows (64-row blocks: two 32-row chunks, the
// running slice), 16-row blocks, no dropout; not quick: the model at 100 and 4096 rows.
TEST_CASE("tail_train with layer 0 inside: A0 within its bound of the CPU reference, the rest the plain launch's bits") {
  Stream stream;
  struct L0Shape {
    std::vector<int> widths;
    int K, rows;
    int image_offset = 0, w_offset = 0;  // bytes into the images, floats into W0's allocation
    cuda::TailRows tail_rows = cuda::TailRows::Wide;
    float p = 0.2f;
  };
  std::vector<L0Shape> shapes{{{32, 16, 10}, 784, 40},
                              {{48, 20, 7}, 50, 100},
                              {{24, 12, 5}, 100, 70, 1, 1},
                              {{20, 12, 5}, 36, 4500},
                              {{32, 16, 10}, 100, 100, 0, 0, cuda::TailRows::Half},
                              {{16, 10}, 64, 33, 0, 0, cuda::TailRows::Wide, 0.0f}};
  if (!quick_tests()) shapes.insert(shapes.end(), {{{128, 64, 10}, 784, 100}, {{128, 64, 10}, 784, 4096}, {{128, 64, 10}, 784, 300, 1, 1}});
  for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16})
    for (const L0Shape& s : shapes) {
      const std::vector<int>& w = s.widths;
      const int B = s.rows, K = s.K, T = int(w.size()) - 1, w0 = w[0], C = w.back();
      INFO("rows=", B, " K=", K, " widths=", w0, "..", C, " T=", T, " images+", s.image_offset, " W0+", s.w_offset,
           " rows16=", s.tail_rows == cuda::TailRows::Half, " p=", s.p, " ", std::string(prec_name(prec)));
      REQUIRE(cuda::tail_layer0_unsupported(w, K, prec).empty());
      const TailModel model(w, 900 + std::size_t(T) * 7 + std::size_t(w0));
      // Images: more than the rows, read through a shuffled index at the counters' batch 1.
      const int first = 5, n_images = 2 * B + first + 3;
      const auto images = random_bytes(std::size_t(n_images) * K + std::size_t(s.image_offset), 903 + B + K);
      std::vector<int32_t> idx(static_cast<std::size_t>(n_images));
      for (int i = 0; i < n_images; ++i) idx[std::size_t(i)] = i;
      std::shuffle(idx.begin(), idx.end(), std::mt19937(unsigned(B + K)));
      const auto labels = random_bytes(std::size_t(n_images), 904 + B, 0, C - 1);
      auto d_images = to_device(images);
      auto d_idx = to_device(idx);
      auto d_lab = to_device(labels);
      cuda::TrainCounters hc;
      hc.step = 3;
      hc.batch = 1;  // rows idx[first + B + r]
      auto d_counters = to_device(std::vector<cuda::TrainCounters>{hc});
      const double lim = 1.5 / std::sqrt(double(K));
      const auto W0 = random_vector(std::size_t(w0) * K, 905 + K, -lim, lim);
      const auto b0 = random_vector(std::size_t(w0), 906 + K, -0.2, 0.2);
      std::vector<float> W0_alloc(std::size_t(s.w_offset), 0.0f), W0r_alloc(std::size_t(s.w_offset), 0.0f);
      W0_alloc.insert(W0_alloc.end(), W0.begin(), W0.end());
      for (const float v : W0) W0r_alloc.push_back(round_input(prec, v));
      auto d_W0 = to_device(W0_alloc), d_W0r = to_device(W0r_alloc);
      auto d_b0 = to_device(b0);
      const cuda::DropoutSpec drop{s.p, 42, 7, 99 /* ignored */, nullptr};
      const float mask_scale = s.p > 0.0f ? cuda::dropout_scale(s.p) : 1.0f;
      const float grad_scale = 1.0f / float(B);
      const auto lab_in = cuda::LabelInput::by_index(d_lab.data(), d_idx.data(), first, d_counters.data(), B);

      using Run = L0Run;
      const std::size_t SF = cuda::tail_slice_floats(w);
      const int blocks = cuda::tail_blocks(B, s.tail_rows);
      // layer0 null: the plain launch on A0 = a0.
      const auto run = [&](const cuda::TailLayer0* layer0, const float* a0) {
        auto partial = poisoned<float>(std::size_t(blocks) * SF);
        auto dz0 = poisoned<float>(std::size_t(B) * w0);
        auto trace_a0 = poisoned<float>(std::size_t(B) * w0);
        auto metrics = to_device(std::vector<cuda::Metrics>(1));
        XentBuffers xb(B);
        Trace tr(w, B);
        tr.t.a0 = layer0 ? trace_a0.data() : nullptr;
        cuda::tail_train(partial.data(), dz0.data(), metrics.data(), xb.scratch(), model.net(), a0, lab_in, drop,
                         mask_scale, grad_scale, B, stream.get(), prec, &tr.t, s.tail_rows, layer0);
        CHECK(xb.counter() == 0u);
        Run r{layer0 ? to_host(trace_a0) : std::vector<float>{}, to_host(partial), to_host(dz0), {}, {}, to_host(metrics)[0], 0};
        for (int i = 0; i < T; ++i) {
          r.act.push_back(to_host(tr.act[std::size_t(i)]));
          r.dz.push_back(to_host(tr.dz[std::size_t(i)]));
        }
        return r;
      };
      cuda::TailLayer0 l0;
      l0.images = d_images.data() + s.image_offset;
      l0.rows = {d_idx.data(), first, d_counters.data(), B};
      l0.W = d_W0.data() + s.w_offset;
      l0.b = d_b0.data();
      l0.K = K;
      const Run in = run(&l0, nullptr);
      cuda::TailLayer0 l0r = l0;
      l0r.W = d_W0r.data() + s.w_offset;
      l0r.w_rounded = true;
      const Run in_r = run(&l0r, nullptr);
      CHECK_MESSAGE(bitwise_equal(in_r.a0, in.a0), "A0 from W0 rounded beforehand = from W0 raw");

      // A0 against the CPU reference: the batch's pixels (as gather_batch makes them), W0, b0, layer 0's dropout.
      std::vector<float> X(std::size_t(B) * K);
      for (int r = 0; r < B; ++r)
        for (int k = 0; k < K; ++k)
          X[std::size_t(r) * K + k] =
              cuda::pixel_value(images[std::size_t(s.image_offset) + std::size_t(idx[std::size_t(first + B + r)]) * K + k]);
      std::vector<double> ref, bound;
      forward_reference(ref, bound, X, W0, b0, B, K, w0, true, drop, 0u, prec);
      expect_within(in.a0, ref, bound, "A0 (layer 0 inside)");
      check_a0_alive(in.a0);

      // Everything after A0: the plain launch's bits on the same A0.
      auto d_a0 = to_device(in.a0);
      const Run plain = run(nullptr, d_a0.data());
      check_same_after_a0(in, plain);
      CHECK(bitwise_equal(in_r.slices, plain.slices));

      // Evaluation with layer 0 inside: A0 without dropout within its bound, the metrics the plain
      // tail_evaluate's bits on that A0.
      {
        const auto eval_in = cuda::LabelInput::by_index(d_lab.data(), d_idx.data(), first, d_counters.data(), B);
        auto a0 = poisoned<float>(std::size_t(B) * w0);
        auto m_in = to_device(std::vector<cuda::Metrics>(1)), m_plain = to_device(std::vector<cuda::Metrics>(1));
        XentBuffers xe(B);
        cuda::TailTrace et;
        et.a0 = a0.data();
        cuda::tail_evaluate(m_in.data(), xe.scratch(), model.net(), nullptr, eval_in, B, stream.get(), prec, &et, &l0);
        const std::vector<float> ea0 = to_host(a0);
        std::vector<double> eref, ebound;
        forward_reference(eref, ebound, X, W0, b0, B, K, w0, true, cuda::DropoutSpec{0.0f, 0, 0, 0, nullptr}, 0u, prec);
        expect_within(ea0, eref, ebound, "A0 of the evaluation (layer 0 inside)");
        auto d_ea0 = to_device(ea0);
        cuda::tail_evaluate(m_plain.data(), xe.scratch(), model.net(), d_ea0.data(), eval_in, B, stream.get(), prec);
        const cuda::Metrics a = to_host(m_in)[0], b = to_host(m_plain)[0];
        CHECK_MESSAGE(same_bits(a.loss_sum, b.loss_sum), "evaluation loss " << a.loss_sum << " vs " << b.loss_sum);
        CHECK(a.correct == b.correct);
        CHECK(xe.counter() == 0u);
        // ... and on consecutive rows (no index, no counters: the engine's evaluation chunks), rows
        // first .. first + B - 1 of the images and labels.
        cuda::TailLayer0 lc = l0;
        lc.rows = {nullptr, first, nullptr, 0};
        const auto eval_rows = cuda::LabelInput::by_index(d_lab.data(), nullptr, first);
        auto mc_in = to_device(std::vector<cuda::Metrics>(1)), mc_plain = to_device(std::vector<cuda::Metrics>(1));
        cuda::tail_evaluate(mc_in.data(), xe.scratch(), model.net(), nullptr, eval_rows, B, stream.get(), prec, &et, &lc);
        const std::vector<float> ca0 = to_host(a0);
        std::vector<float> Xc(std::size_t(B) * K);
        for (int r = 0; r < B; ++r)
          for (int k = 0; k < K; ++k)
            Xc[std::size_t(r) * K + k] =
                cuda::pixel_value(images[std::size_t(s.image_offset) + std::size_t(first + r) * K + std::size_t(k)]);
        forward_reference(eref, ebound, Xc, W0, b0, B, K, w0, true, cuda::DropoutSpec{0.0f, 0, 0, 0, nullptr}, 0u, prec);
        expect_within(ca0, eref, ebound, "A0 of the evaluation on consecutive rows (layer 0 inside)");
        auto d_ca0 = to_device(ca0);
        cuda::tail_evaluate(mc_plain.data(), xe.scratch(), model.net(), d_ca0.data(), eval_rows, B, stream.get(), prec);
        const cuda::Metrics c = to_host(mc_in)[0], e = to_host(mc_plain)[0];
        CHECK(same_bits(c.loss_sum, e.loss_sum));
        CHECK(c.correct == e.correct);
        CHECK_FALSE(bitwise_equal(ca0, ea0));  // (other rows: the two cases are not one)
      }

      // The engine's form (no dz0 trace, metrics left in the slots for the optimizer): the same sums.
      {
        auto partial = poisoned<float>(in.slices.size());
        XentBuffers xd(B);
        cuda::tail_train(partial.data(), nullptr, nullptr, xd.scratch(), model.net(), nullptr, lab_in, drop, mask_scale,
                         grad_scale, B, stream.get(), prec, nullptr, s.tail_rows, &l0);
        CHECK(bitwise_equal(to_host(partial), in.slices));
        const cuda::Metrics d = optimizer_group_sums(xd, B, stream.get());
        CHECK(same_bits(d.loss_sum, in.m.loss_sum));
        CHECK(d.correct == in.m.correct);
      }
    }
}

// Layer 0 shared across a thread block cluster (TailLayer0::cluster): the blocks of a cluster each
// compute 1/C of layer 0's units for all C blocks' chunks and store them into the owners' A0 over
// distributed shared memory. Every element is the same chain of mma on the same operands as in the
// unclustered launch, so everything -- A0, dz0, every activation, dZ and slice, the metrics; the
// evaluation's A0 and metrics -- must be its bits. Shapes: w0 = 64 at 256 rows (clusters of 4, 16
// units a block), 4200 rows and K = 136 (3 slices: the three W buffers turn; blocks of one and two
// 32-row chunks in one cluster: a block past its last chunk computes its peers' units), 16-row
// blocks, w0 = 48 (clusters of 2: 4 would leave the last block no units) with K = 50 and misaligned
// images and W0, w0 = 40 at 120 rows (the second block of a pair computes 8 units; the last block 24
// rows), 192 rows (6 blocks: clusters of 2, not 4), w0 = 100 (clusters of 4, the last block 4 units),
// w0 = 16 (no cluster: it takes 1), no dropout (the staged stores to the peers); not quick: the model
// at 512 rows (clusters of 4, as the engine's steps at 4096); the evaluation also at 150 rows, its 5
// blocks padded to 8 (blocks without rows). In the emulation the clustered launches of the first
// shape, of 4200 rows and without dropout (tf32) run again with one block of every cluster slow (it
// runs only when no other block can: emu::g_slow_block), the first and then the last: its peers then
// reach their stores into its A0 while it is behind, and read their A0 before its stores, wherever a
// cluster barrier is missing. The emulation launches clusters on a device of 132 SMs here (it has 2 by default,
// too few for a wave of clusters); on a GPU the size is the device's answer (tail_layer0_cluster),
// and a launch without clusters must still match.
TEST_CASE("tail_train with layer 0 shared across a cluster: bitwise the unclustered launch") {
  Stream stream;
#ifdef MNIST_HOST_EMULATION
  struct SmCount {  // (restored however the case ends)
    int before = g_emu_sm_count;
    SmCount() { g_emu_sm_count = 132; }
    ~SmCount() {
      g_emu_sm_count = before;
      emu::g_slow_block = nullptr;
    }
  } sm_count;
#endif
  struct ClusterShape {
    std::vector<int> widths;
    int K, rows, want, expect;  // asked for, and what the emulation takes (a GPU may take less)
    int image_offset = 0, w_offset = 0;
    cuda::TailRows tail_rows = cuda::TailRows::Wide;
    float p = 0.2f;
  };
  std::vector<ClusterShape> shapes{{{64, 16, 10}, 100, 256, 4, 4},
                                   {{48, 20, 7}, 50, 192, 4, 2, 1, 1},
                                   {{40, 12, 5}, 36, 120, 2, 2},
                                   {{64, 16, 10}, 36, 192, 4, 2},
                                   {{100, 16, 10}, 50, 128, 4, 4},
                                   {{64, 16, 10}, 100, 256, 4, 4, 0, 0, cuda::TailRows::Half},
                                   {{16, 10}, 64, 96, 4, 1},
                                   {{64, 10}, 64, 128, 4, 4, 0, 0, cuda::TailRows::Wide, 0.0f},
                                   {{64, 12, 5}, 136, 4200, 4, 4}};
  if (!quick_tests()) shapes.push_back({{128, 64, 10}, 784, 512, 4, 4});
  for (GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16})
    for (const ClusterShape& s : shapes) {
      const std::vector<int>& w = s.widths;
      const int B = s.rows, K = s.K, T = int(w.size()) - 1, w0 = w[0], C = w.back();
      INFO("rows=", B, " K=", K, " widths=", w0, "..", C, " T=", T, " cluster<=", s.want, " rows16=",
           s.tail_rows == cuda::TailRows::Half, " p=", s.p, " ", std::string(prec_name(prec)));
      REQUIRE(cuda::tail_layer0_unsupported(w, K, prec).empty());
      const int size = cuda::tail_layer0_cluster(B, true, w, s.want, prec, s.tail_rows);
#ifdef MNIST_HOST_EMULATION
      CHECK(size == s.expect);
#else
      // (a device that launches clusters holds these few: at most 16 blocks; 128 at 5000 rows may not fit a wave)
      int device = 0, clusters = 0;  // (cudaDevAttrClusterLaunch: the device launches clusters)
      REQUIRE(cudaGetDevice(&device) == cudaSuccess);
      REQUIRE(cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, device) == cudaSuccess);
      if (clusters && s.expect > 1 && cuda::tail_blocks(B, s.tail_rows) <= 16) CHECK(size > 1);
#endif
      MESSAGE("layer 0 in clusters of ", size, " (asked ", s.want, ")");
      const TailModel model(w, 700 + std::size_t(T) * 5 + std::size_t(w0));
      const int first = 3, n_images = B + first + 7;
      const auto images = random_bytes(std::size_t(n_images) * K + std::size_t(s.image_offset), 703 + B + K);
      std::vector<int32_t> idx(static_cast<std::size_t>(n_images));
      for (int i = 0; i < n_images; ++i) idx[std::size_t(i)] = i;
      std::shuffle(idx.begin(), idx.end(), std::mt19937(unsigned(B * 3 + K)));
      const auto labels = random_bytes(std::size_t(n_images), 704 + B, 0, C - 1);
      auto d_images = to_device(images);
      auto d_idx = to_device(idx);
      auto d_lab = to_device(labels);
      const double lim = 1.5 / std::sqrt(double(K));
      std::vector<float> W0(std::size_t(s.w_offset), 0.0f);
      const auto W0v = random_vector(std::size_t(w0) * K, 705 + K, -lim, lim);
      W0.insert(W0.end(), W0v.begin(), W0v.end());
      auto d_W0 = to_device(W0);
      auto d_b0 = to_device(random_vector(std::size_t(w0), 706 + K, -0.2, 0.2));
      const cuda::DropoutSpec drop{s.p, 17, 5, 0, nullptr};
      const float mask_scale = s.p > 0.0f ? cuda::dropout_scale(s.p) : 1.0f;
      const auto lab_in = cuda::LabelInput::by_index(d_lab.data(), d_idx.data(), first);
      cuda::TailLayer0 l0;
      l0.images = d_images.data() + s.image_offset;
      l0.rows = {d_idx.data(), first, nullptr, 0};
      l0.W = d_W0.data() + s.w_offset;
      l0.b = d_b0.data();
      l0.K = K;

      using Run = L0Run;
      const std::size_t SF = cuda::tail_slice_floats(w);
      const auto train = [&](int cluster) {
        cuda::TailLayer0 l = l0;
        l.cluster = cluster;
        auto partial = poisoned<float>(std::size_t(cuda::tail_blocks(B, s.tail_rows)) * SF);
        auto dz0 = poisoned<float>(std::size_t(B) * w0);
        auto a0 = poisoned<float>(std::size_t(B) * w0);
        auto metrics = to_device(std::vector<cuda::Metrics>(1));
        XentBuffers xb(B);
        Trace tr(w, B);
        tr.t.a0 = a0.data();
        Run r;
#ifdef MNIST_HOST_EMULATION
        const long long before = emu::g_emu_cluster_launches;
#endif
        cuda::tail_train(partial.data(), dz0.data(), metrics.data(), xb.scratch(), model.net(), nullptr, lab_in, drop,
                         mask_scale, 1.0f / float(B), B, stream.get(), prec, &tr.t, s.tail_rows, &l);
#ifdef MNIST_HOST_EMULATION
        r.clusters = emu::g_emu_cluster_launches - before;
#endif
        CHECK(xb.counter() == 0u);
        r.a0 = to_host(a0);
        r.slices = to_host(partial);
        r.dz0 = to_host(dz0);
        r.m = to_host(metrics)[0];
        for (int i = 0; i < T; ++i) {
          r.act.push_back(to_host(tr.act[std::size_t(i)]));
          r.dz.push_back(to_host(tr.dz[std::size_t(i)]));
        }
        return r;
      };
      const Run alone = train(1), shared = train(s.want);
#ifdef MNIST_HOST_EMULATION
      CHECK(alone.clusters == 0);
      CHECK(shared.clusters == (s.expect > 1 ? 1 : 0));
      std::vector<Run> skewed;  // (the first, then the last block of every cluster slow; tf32: the same steps as bf16)
      if (s.expect > 1 && prec == GemmPrecision::TF32 && (&s == &shapes.front() || B > 4096 || s.p == 0.0f))
        for (const int slow : {0, s.expect - 1}) {
          const int c = s.expect;
          emu::g_slow_block = [c, slow](unsigned b) { return int(b) % c == slow; };
          skewed.push_back(train(s.want));
          emu::g_slow_block = nullptr;
        }
      for (const Run& k : skewed) {
        CHECK_MESSAGE(bitwise_equal(k.a0, alone.a0), "A0 with a slow block in every cluster");
        CHECK(bitwise_equal(k.slices, alone.slices));
        CHECK(bitwise_equal(k.dz0, alone.dz0));
        CHECK(same_bits(k.m.loss_sum, alone.m.loss_sum));
      }
#endif
      CHECK(bitwise_equal(shared.a0, alone.a0));
      check_same_after_a0(shared, alone);
      check_a0_alive(alone.a0);

      // The evaluation (one chunk a block, a grid padded to whole clusters): A0 and the metrics.
      for (const int E : {B, 150}) {
        if (E > n_images - first) continue;
        CAPTURE(E);
        const auto eval = [&](int cluster, std::vector<float>& ea0) {
          cuda::TailLayer0 l = l0;
          l.cluster = cluster;
          auto a0 = poisoned<float>(std::size_t(E) * w0);
          auto m = to_device(std::vector<cuda::Metrics>(1));
          XentBuffers xe(E);
          cuda::TailTrace et;
          et.a0 = a0.data();
          cuda::tail_evaluate(m.data(), xe.scratch(), model.net(), nullptr, lab_in, E, stream.get(), prec, &et, &l);
          CHECK(xe.counter() == 0u);
          ea0 = to_host(a0);
          return to_host(m)[0];
        };
        std::vector<float> a0_alone, a0_shared;
        const cuda::Metrics ma = eval(1, a0_alone), ms = eval(s.want, a0_shared);
        CHECK(bitwise_equal(a0_shared, a0_alone));
        CHECK(same_bits(ms.loss_sum, ma.loss_sum));
        CHECK(ms.correct == ma.correct);
#ifdef MNIST_HOST_EMULATION
        if (E == 150 && s.expect == 4) CHECK(cuda::tail_layer0_cluster(E, false, w, s.want, prec) == 4);  // (5 blocks padded to 8)
#endif
      }
    }
}

TEST_CASE("tail_train with layer 0 inside: what it cannot run is refused, naming why") {
  Stream stream;
  CHECK(cuda::tail_layer0_unsupported({128, 64, 10}, 784, GemmPrecision::FP32).find("tensor cores only") != std::string::npos);
  CHECK(cuda::tail_layer0_unsupported({264, 16, 10}, 784, GemmPrecision::TF32).find("at most 256") != std::string::npos);
  CHECK(cuda::tail_layer0_unsupported({128, 64, 10}, 0, GemmPrecision::BF16).find("inputs") != std::string::npos);
  CHECK(cuda::tail_layer0_unsupported({128, 64, 10}, 784, GemmPrecision::TF32).empty());
  CHECK(cuda::tail_layer0_unsupported({128, 64, 10}, 784, GemmPrecision::BF16).empty());
  // A launch at fp32 is an error naming the reason, not a silent fallback.
  const TailModel model({16, 10}, 3);
  auto images = to_device(random_bytes(64 * 8, 5));
  auto W0 = to_device(random_vector(16 * 64, 6, -0.1, 0.1)), b0 = to_device(random_vector(16, 7, -0.1, 0.1));
  auto lab = to_device(random_bytes(8, 8, 0, 9));
  auto partial = poisoned<float>(cuda::tail_slice_floats({16, 10}));
  auto metrics = to_device(std::vector<cuda::Metrics>(1));
  XentBuffers xb(8);
  cuda::TailLayer0 l0;
  l0.images = images.data();
  l0.W = W0.data();
  l0.b = b0.data();
  l0.K = 64;
  const cuda::DropoutSpec drop{0.0f, 1, 1, 0, nullptr};
  CHECK_THROWS_WITH(cuda::tail_train(partial.data(), nullptr, metrics.data(), xb.scratch(), model.net(), nullptr, lab.data(),
                                     drop, 1.0f, 0.125f, 8, stream.get(), GemmPrecision::FP32, nullptr,
                                     cuda::TailRows::Wide, &l0),
                    doctest::Contains("tensor cores only"));
  l0.b = nullptr;
  CHECK_THROWS_WITH(cuda::tail_train(partial.data(), nullptr, metrics.data(), xb.scratch(), model.net(), nullptr, lab.data(),
                                     drop, 1.0f, 0.125f, 8, stream.get(), GemmPrecision::TF32, nullptr,
                                     cuda::TailRows::Wide, &l0),
                    doctest::Contains("null layer-0"));
  l0.b = b0.data();
  l0.cluster = 0;
  CHECK_THROWS_WITH(cuda::tail_train(partial.data(), nullptr, metrics.data(), xb.scratch(), model.net(), nullptr, lab.data(),
                                     drop, 1.0f, 0.125f, 8, stream.get(), GemmPrecision::TF32, nullptr,
                                     cuda::TailRows::Wide, &l0),
                    doctest::Contains("cluster size must be at least 1"));
  // Clusters are never taken at fp32, for a single block, or past what the widths split into.
  CHECK(cuda::tail_layer0_cluster(4096, true, {128, 64, 10}, 4, GemmPrecision::FP32) == 1);
  CHECK(cuda::tail_layer0_cluster(32, true, {128, 64, 10}, 4, GemmPrecision::TF32) == 1);
  CHECK(cuda::tail_layer0_cluster(4096, true, {16, 10}, 4, GemmPrecision::TF32) == 1);
  CHECK(cuda::tail_layer0_cluster(4096, true, {128, 64, 10}, 1, GemmPrecision::TF32) == 1);
}

TEST_CASE("tail_force_stop (bench_kernels' phase rows): a launch ends each chunk after its phase and writes nothing later") {
  Stream stream;
  const HookCase hc;
  struct Out {
    std::vector<float> partial, dz0, act1, logits, dz2;
    std::vector<cuda::Metrics> slots;
    cuda::Metrics metrics;
  };
  // 100 rows: 4 blocks of one 32-row chunk; 8200 rows: 128 blocks of 64 + 32 rows (two chunks, the
  // second staged after the first's cut)
  for (const int B : {100, 8200})
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32}) {
    INFO(std::string(prec_name(prec)), " rows ", B);
    auto A0 = to_device(activation(std::size_t(B) * hc.w[0], 18));
    auto labels = to_device(random_bytes(std::size_t(B), 19, 0, hc.w[2] - 1));
    // One launch, traced: as the engine makes it (metrics left in the slots), or, with_metrics, adding
    // into a Metrics (then the launch's last block adds the slots and resets the counter, unless cut).
    auto run = [&](cuda::TailStop stop, bool with_metrics = false) {
      auto partial = poisoned<float>(std::size_t(cuda::tail_blocks(B)) * cuda::tail_slice_floats(hc.w));
      auto dz0 = poisoned<float>(std::size_t(B) * hc.w[0]);
      auto metrics = to_device(std::vector<cuda::Metrics>(1));
      XentBuffers xb(B);
      Trace tr(hc.w, B);
      cuda::tail_force_stop(stop);
      cuda::tail_train(partial.data(), dz0.data(), with_metrics ? metrics.data() : nullptr, xb.scratch(), hc.model.net(),
                       A0.data(), labels.data(), hc.drop, 1.25f, 1.0f / B, B, stream.get(), prec, &tr.t);
      cuda::tail_force_stop(cuda::TailStop::Whole);
      CHECK(xb.counter() == 0u);  // (with metrics: the last block's reset, or a cut launch never counting)
      std::vector<cuda::Metrics> slots = to_host(xb.slots);
      slots.resize(std::size_t(cuda::tail_xent_slots(B)));
      return Out{to_host(partial), to_host(dz0), to_host(tr.act[0]), to_host(tr.act[std::size_t(hc.T - 1)]),
                 to_host(tr.dz[std::size_t(hc.T - 1)]), slots, to_host(metrics)[0]};
    };
    const Out whole = run(cuda::TailStop::Whole);
    REQUIRE_FALSE(untouched(whole.partial));
    REQUIRE_FALSE(untouched(whole.dz0));
    const Out staged = run(cuda::TailStop::Staged);
    CHECK(untouched(staged.act1));
    CHECK(untouched(staged.logits));
    CHECK(untouched(staged.slots));
    const Out fwd = run(cuda::TailStop::Forward);
    CHECK(bitwise_equal(fwd.act1, whole.act1));
    CHECK(bitwise_equal(fwd.logits, whole.logits));
    CHECK(untouched(fwd.slots));
    CHECK(untouched(fwd.dz2));
    const Out soft = run(cuda::TailStop::Softmax);
    CHECK(bitwise_equal(soft.logits, whole.logits));
    CHECK(bitwise_equal(soft.dz2, whole.dz2));
    CHECK(std::memcmp(soft.slots.data(), whole.slots.data(), whole.slots.size() * sizeof(cuda::Metrics)) == 0);
    for (const Out* o : {&staged, &fwd, &soft}) {
      // (the slices' padding is written before the first phase; every layer's [dW|db] is not)
      const std::size_t used = cuda::tail_layer_offset(hc.w, hc.T + 1), sf = cuda::tail_slice_floats(hc.w);
      bool slices_untouched = true;
      for (int j = 0; j < cuda::tail_blocks(B); ++j)
        slices_untouched = slices_untouched && untouched(std::vector<float>(o->partial.begin() + std::ptrdiff_t(j * sf),
                                                                            o->partial.begin() + std::ptrdiff_t(j * sf + used)));
      CHECK(slices_untouched);
      CHECK(untouched(o->dz0));
    }
    const Out again = run(cuda::TailStop::Whole);  // Whole restores the kernel: the same bits
    CHECK(bitwise_equal(again.partial, whole.partial));
    CHECK(bitwise_equal(again.dz0, whole.dz0));
    // With a Metrics to add into (bench_kernels' form): a cut launch leaves it and the counter
    // alone; the whole launch adds the loss and hits.
    for (cuda::TailStop stop : {cuda::TailStop::Staged, cuda::TailStop::Forward, cuda::TailStop::Softmax}) {
      const Out cut = run(stop, true);
      CHECK(cut.metrics.loss_sum == 0.0);
      CHECK(cut.metrics.correct == 0u);
    }
    const Out counted = run(cuda::TailStop::Whole, true);
    CHECK(counted.metrics.loss_sum > 0.0);
    CHECK(bitwise_equal(counted.partial, whole.partial));
  }
}

TEST_CASE("tail_force_clocks (bench_kernels' clock rows): the clocked launch writes the same bits and stamps in the block's order") {
  Stream stream;
  const HookCase hc;
  // 100 rows: 4 blocks of one 32-row chunk; 8200 rows: 128 blocks of 64 + 32 rows (two chunks)
  for (const int B : {100, 8200})
  for (GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32}) {
    INFO(std::string(prec_name(prec)), " rows ", B);
    auto A0 = to_device(activation(std::size_t(B) * hc.w[0], 24));
    auto labels = to_device(random_bytes(std::size_t(B), 25, 0, hc.w[2] - 1));
    const int blocks = cuda::tail_blocks(B);
    struct Out {
      std::vector<float> partial, dz0;
      cuda::Metrics metrics;
    };
    DeviceBuffer<unsigned long long> stamps(std::size_t(blocks) * cuda::kTailClockSlots);
    CUDA_CHECK(cudaMemset(stamps.data(), 0, stamps.bytes()));
    auto run = [&](bool clocked) {
      auto partial = poisoned<float>(std::size_t(blocks) * cuda::tail_slice_floats(hc.w));
      auto dz0 = poisoned<float>(std::size_t(B) * hc.w[0]);
      auto metrics = to_device(std::vector<cuda::Metrics>(1));
      XentBuffers xb(B);
      cuda::tail_force_clocks(clocked ? stamps.data() : nullptr);
      if (clocked) cuda::tail_force_stop(cuda::TailStop::Forward);  // (ignored while clocked: the whole kernel runs)
      cuda::tail_train(partial.data(), dz0.data(), metrics.data(), xb.scratch(), hc.model.net(), A0.data(), labels.data(),
                       hc.drop, 1.25f, 1.0f / B, B, stream.get(), prec);
      cuda::tail_force_stop(cuda::TailStop::Whole);
      cuda::tail_force_clocks(nullptr);
      CHECK(xb.counter() == 0u);
      return Out{to_host(partial), to_host(dz0), to_host(metrics)[0]};
    };
    const Out plain = run(false);
    const std::vector<unsigned long long> none = to_host(stamps);
    CHECK(std::all_of(none.begin(), none.end(), [](unsigned long long t) { return t == 0; }));  // not clocked: none written
    const Out clocked = run(true);
    CHECK(bitwise_equal(clocked.partial, plain.partial));
    CHECK(bitwise_equal(clocked.dz0, plain.dz0));
    CHECK(clocked.metrics.loss_sum == plain.metrics.loss_sum);
    CHECK(clocked.metrics.correct == plain.metrics.correct);
    const std::vector<unsigned long long> st = to_host(stamps);
    int out_of_order = 0, missing = 0, extra = 0;
    for (int j = 0; j < blocks; ++j) {
      const unsigned long long* s = st.data() + std::size_t(j) * cuda::kTailClockSlots;
      const int rows = cuda::tail_block_row(B, j + 1) - cuda::tail_block_row(B, j);
      const int chunks = (rows + 63) / 64;  // (64-row chunks at 8200 rows; 100 rows: one chunk a block)
      std::vector<int> order{cuda::kTailClockStart, cuda::kTailClockWeights};
      for (int c = 0; c < cuda::kTailClockChunks; ++c)
        for (int ph = 0; ph < cuda::kTailPhases; ++ph) {
          const bool used = c < chunks && (ph == cuda::kTailPhaseStaged || ph == cuda::kTailPhaseSoftmax ||
                                           (ph >= cuda::kTailPhaseForward && ph < cuda::kTailPhaseForward + hc.T) ||
                                           (ph >= cuda::kTailPhaseBackward && ph < cuda::kTailPhaseBackward + hc.T));
          const unsigned long long t = s[cuda::tail_clock_slot(c, ph)];
          if (used) {
            order.push_back(cuda::tail_clock_slot(c, ph));
          } else if (t != 0) {
            ++extra;  // a layer past T or a chunk the block does not have
          }
        }
      order.push_back(cuda::kTailClockEnd);
      for (std::size_t i = 0; i < order.size(); ++i) {
        if (s[order[i]] == 0) ++missing;
        if (i > 0 && s[order[i]] < s[order[i - 1]]) ++out_of_order;
      }
      if (s[cuda::kTailClockStartNs] == 0 || s[cuda::kTailClockEndNs] < s[cuda::kTailClockStartNs]) ++out_of_order;
    }
    CHECK(missing == 0);
    CHECK(out_of_order == 0);
    CHECK(extra == 0);
  }
}

TEST_CASE("tail: shapes it cannot hold, bad arguments and scratches too small are refused") {
  CHECK(cuda::tail_unsupported({128, 64, 10}).empty());
  CHECK(cuda::tail_unsupported({64, 10}).empty());
  CHECK(cuda::tail_unsupported({100, 48, 30, 7}).empty());
  CHECK(cuda::tail_unsupported({8, 8, 8, 8, 8, 8, 8, 10}).empty());         // 7 layers
  CHECK_FALSE(cuda::tail_unsupported({8, 8, 8, 8, 8, 8, 8, 8, 10}).empty());  // 8 layers
  CHECK_FALSE(cuda::tail_unsupported({128}).empty());                       // no layer
  CHECK_FALSE(cuda::tail_unsupported({}).empty());
  CHECK_FALSE(cuda::tail_unsupported({128, 64, 33}).empty());  // more classes than a row's thread holds
  CHECK(cuda::tail_unsupported({128, 64, 32}).empty());
  CHECK_FALSE(cuda::tail_unsupported({128, 0, 10}).empty());
  CHECK_FALSE(cuda::tail_unsupported({256, 128, 10}).empty());  // too wide for the shared memory
  CHECK(cuda::tail_unsupported({256, 128, 10}).find("KB") != std::string::npos);
  // Blocks and their rows: one 32-row group a block up to 4096 rows, then 128 blocks of whole
  // groups spread evenly; nondecreasing in B (a slice buffer for the largest batch serves them all).
  CHECK(cuda::tail_rows_per_block(1) == 32);
  CHECK(cuda::tail_rows_per_block(4096) == 32);
  CHECK(cuda::tail_rows_per_block(4097) == 64);
  CHECK(cuda::tail_rows_per_block(16384) == 128);
  CHECK(cuda::tail_blocks(512) == 16);
  CHECK(cuda::tail_blocks(4096) == 128);
  CHECK(cuda::tail_blocks(4097) == 128);
  CHECK(cuda::tail_blocks(65536) == 128);
  CHECK(cuda::tail_xent_slots(33) == 3);  // (one slot per 16 rows)
  CHECK(cuda::tail_xent_slots(32) == 2);
  // Half: one 16-row half a block up to 4096 rows, then 256 blocks; never fewer blocks than Wide.
  CHECK(cuda::tail_rows_per_block(4096, cuda::TailRows::Half) == 16);
  CHECK(cuda::tail_rows_per_block(8192, cuda::TailRows::Half) == 32);
  CHECK(cuda::tail_blocks(4096, cuda::TailRows::Half) == 256);
  CHECK(cuda::tail_blocks(512, cuda::TailRows::Half) == 32);
  CHECK(cuda::tail_blocks(65536, cuda::TailRows::Half) == 256);
  const std::vector<int> model_w{128, 64, 10};
  CHECK(cuda::tail_half_rows_apply(4096, model_w));
  CHECK(cuda::tail_half_rows_apply(8192, model_w));
  CHECK(cuda::tail_half_rows_apply(17, model_w));
  CHECK_FALSE(cuda::tail_half_rows_apply(8193, model_w));  // (48 rows a block)
  CHECK_FALSE(cuda::tail_half_rows_apply(16, model_w));    // (one block either way)
  CHECK_FALSE(cuda::tail_half_rows_apply(4096, {256, 64, 10}));  // (a 32-row plan of ≈ 128 KB: one an SM)
  CHECK_FALSE(cuda::tail_half_rows_apply(4096, {128, 64, 33}));  // (a tail the kernel cannot run)
  int bad_halves = 0;
  for (int B = 1; B <= 65536; ++B) {
    const cuda::TailRows h = cuda::TailRows::Half;
    const int n = cuda::tail_blocks(B, h), R = cuda::tail_rows_per_block(B, h);
    bool ok = n >= 1 && n <= 256 && n >= cuda::tail_blocks(B - 1, h) && n >= cuda::tail_blocks(B) && R % 16 == 0 &&
              R <= 256 && cuda::tail_block_row(B, 0, h) == 0 && cuda::tail_block_row(B, n, h) == B;
    for (int j = 0; j < n && ok; ++j) {
      const int r0 = cuda::tail_block_row(B, j, h), r1 = cuda::tail_block_row(B, j + 1, h);
      ok = r0 % 16 == 0 && r1 > r0 && r1 - r0 <= R;  // whole halves, never empty, at most R rows
    }
    if (!ok) ++bad_halves;
  }
  CHECK(bad_halves == 0);
  int bad_partitions = 0;
  for (int B = 1; B <= 65536; ++B) {
    const int n = cuda::tail_blocks(B), R = cuda::tail_rows_per_block(B);
    bool ok = n >= 1 && n <= 128 && n >= cuda::tail_blocks(B - 1) && R % 32 == 0 && R <= 512 &&
              cuda::tail_block_row(B, 0) == 0 && cuda::tail_block_row(B, n) == B;
    for (int j = 0; j < n && ok; ++j) {
      const int r0 = cuda::tail_block_row(B, j), r1 = cuda::tail_block_row(B, j + 1);
      ok = r0 % 32 == 0 && r1 > r0 && r1 - r0 <= R;  // whole groups, never empty, at most R rows
    }
    if (!ok) ++bad_partitions;
  }
  CHECK(bad_partitions == 0);
  // The slice layout: layer 1 [64][129], layer 2 [10][65], padded to a multiple of 4.
  CHECK(cuda::tail_layer_offset({128, 64, 10}, 1) == 0);
  CHECK(cuda::tail_layer_offset({128, 64, 10}, 2) == 64u * 129u);
  CHECK(cuda::tail_slice_floats({128, 64, 10}) == 8908u);  // 8256 + 650 = 8906 -> 8908

  Stream stream;
  const TailModel model({64, 10}, 5);
  const int B = 129;
  auto A0 = to_device(activation(std::size_t(B) * 64, 7));
  auto labels = to_device(random_bytes(std::size_t(B), 10, 0, 9));
  auto partial = poisoned<float>(std::size_t(cuda::tail_blocks(B)) * cuda::tail_slice_floats({64, 10}));
  auto metrics = to_device(std::vector<cuda::Metrics>(1));
  XentBuffers small(B - 32), enough(B);
  const cuda::DropoutSpec drop{};
  CHECK_THROWS_AS(cuda::tail_train(partial.data(), nullptr, metrics.data(), {}, model.net(), A0.data(), labels.data(),
                                   drop, 1.0f, 1.0f / B, B, stream.get()),
                  Error);
  CHECK_THROWS_AS(cuda::tail_train(partial.data(), nullptr, metrics.data(), small.scratch(), model.net(), A0.data(),
                                   labels.data(), drop, 1.0f, 1.0f / B, B, stream.get()),
                  Error);
  CHECK_THROWS_AS(cuda::tail_evaluate(metrics.data(), small.scratch(), model.net(), A0.data(), labels.data(), B,
                                      stream.get()),
                  Error);
  cuda::TailNet wide = model.net();
  wide.width[1] = 33;  // 33 classes
  CHECK_THROWS_AS(cuda::tail_train(partial.data(), nullptr, metrics.data(), enough.scratch(), wide, A0.data(),
                                   labels.data(), drop, 1.0f, 1.0f / B, B, stream.get()),
                  Error);
  cuda::TailNet none = model.net();
  none.layers = 0;
  CHECK_THROWS_AS(cuda::tail_evaluate(metrics.data(), enough.scratch(), none, A0.data(), labels.data(), B, stream.get()),
                  Error);
  CHECK_THROWS_AS(cuda::tail_train(partial.data(), nullptr, metrics.data(), enough.scratch(), model.net(), A0.data(),
                                   labels.data(), cuda::DropoutSpec{1.0f}, 1.0f, 1.0f / B, B, stream.get()),
                  Error);
  cuda::tail_train(partial.data(), nullptr, metrics.data(), enough.scratch(), model.net(), A0.data(), labels.data(), drop,
                   1.0f, 1.0f / B, B, stream.get());
  CHECK(to_host(metrics)[0].loss_sum > 0);
  CHECK(enough.counter() == 0u);
}

}  // namespace
}  // namespace mnist::test
