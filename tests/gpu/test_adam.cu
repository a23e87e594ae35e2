// Adam against cpu::adam_update, both entry points (host lr/t, and lr/t read from TrainCounters
// on the device, then moved on by advance_train_counters).
//
// Tolerance: per element the update is a few float operations on both sides; they may differ by
// an ulp or two (FMA contraction, device vs host sqrt/pow rounding of the step size), i.e. ~1e-7
// relative per element, so the normalised error of p, m and v after a few steps is far below
// 1e-6. A wrong moment, bias correction or step gives errors of order lr/|p| ~ 1e-2.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/adam.cuh"
#include "kernels/precision.hpp"
#include "kernels/train_counters.cuh"
#include "layers/cpu_ops.hpp"
#include "tests/gpu/gpu_test.cuh"

namespace mnist::test {
namespace {

// Two device copies of one random optimiser state (p, m, v) and a gradient g, of n elements from
// `seed`: one for the reference launch, one for the launch under test.
struct TwinStates {
  DeviceBuffer<float> p1, m1, v1, p2, m2, v2, g;
  TwinStates(std::size_t n, uint64_t seed) {
    const std::vector<float> p = random_vector(n, seed), m = random_vector(n, seed + 1, -0.1, 0.1),
                             v = random_vector(n, seed + 2, 0.0, 0.01), gh = random_vector(n, seed + 3);
    p1 = to_device(p), m1 = to_device(m), v1 = to_device(v), p2 = to_device(p), m2 = to_device(m), v2 = to_device(v);
    g = to_device(gh);
  }
  // Whether both copies hold the same bits.
  void check_equal() const {
    CHECK(bitwise_equal(to_host(p1), to_host(p2)));
    CHECK(bitwise_equal(to_host(m1), to_host(m2)));
    CHECK(bitwise_equal(to_host(v1), to_host(v2)));
  }
};

// One TrainCounters on the device.
DeviceBuffer<cuda::TrainCounters> device_counters(int64_t step, int64_t batch, float lr) {
  cuda::TrainCounters c;
  c.step = step;
  c.batch = batch;
  c.lr = lr;
  return to_device(std::vector<cuda::TrainCounters>{c});
}

TEST_CASE("adam_update equals cpu::adam_update over several steps") {
  Stream stream;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
  for (const cases::OpCase& c : test_cases(cases::Op::Adam)) {
    INFO(c.name());
    const std::size_t n = c.count;
    std::vector<float> p = random_vector(n, 1 + n), m = random_vector(n, 2 + n, -0.1, 0.1),
                       v = random_vector(n, 3 + n, 0.0, 0.01);
    auto dp = to_device(p), dm = to_device(m), dv = to_device(v);
    for (int64_t t = 1; t <= 3; ++t) {
      const std::vector<float> g = random_vector(n, 10 * t + n);
      cpu::adam_update(p.data(), m.data(), v.data(), g.data(), n, lr, b1, b2, eps, t);
      auto dg = to_device(g);
      cuda::adam_update(dp.data(), dm.data(), dv.data(), dg.data(), n, lr, b1, b2, eps, t, stream.get());
      CUDA_CHECK(cudaDeviceSynchronize());
    }
    expect_close(to_host(dp), p, 1e-6, "p");
    expect_close(to_host(dm), m, 1e-6, "m");
    expect_close(to_host(dv), v, 1e-6, "v");
  }
}

TEST_CASE("adam_update with TrainCounters: same result as the host step; advance_train_counters moves them once") {
  Stream stream;
  const float lr = 3e-3f;
  for (std::size_t n : {std::size_t(1), std::size_t(1000), std::size_t(100003), std::size_t(1) << 22}) {
    INFO("n=", n);  // 1 .. 2048 blocks: every block reads the counters
    TwinStates x(n, 5);
    auto ctr = device_counters(5, 2, lr);
    cuda::adam_update(x.p1.data(), x.m1.data(), x.v1.data(), x.g.data(), n, lr, 0.9f, 0.999f, 1e-7f, 5, stream.get());
    cuda::adam_update(x.p2.data(), x.m2.data(), x.v2.data(), x.g.data(), n, ctr.data(), 0.9f, 0.999f, 1e-7f,
                      stream.get());
    x.check_equal();
    const cuda::TrainCounters read = to_host(ctr)[0];  // adam_update only reads them
    CHECK(read.step == 5);
    CHECK(read.batch == 2);
    CHECK(read.lr == lr);
    cuda::advance_train_counters(ctr.data(), stream.get());
    const cuda::TrainCounters after = to_host(ctr)[0];
    CHECK(after.step == 6);
    CHECK(after.batch == 3);
    CHECK(after.lr == lr);
  }
}

// The graph path's step ends with adam_update_and_advance: adam_update's arithmetic bit for bit
// (both steps of two launches, the second at the step the first advanced to), and the counters
// moved on exactly once per launch by its last block, whatever the grid (1 to 274 blocks), with the
// block count left 0 for the next launch; n = 0 still advances.
TEST_CASE("adam_update_and_advance: adam_update's bits, and the counters moved on once per launch") {
  Stream stream;
  const float lr = 2e-3f;
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(1000), std::size_t(70001)}) {
    INFO("n=", n);
    TwinStates x(n, 15);
    auto ctr = device_counters(7, 4, lr);
    auto advance = to_device(std::vector<unsigned>{0u});
    for (int launch = 0; launch < 2; ++launch) {
      INFO("launch ", launch);
      if (n)
        cuda::adam_update(x.p1.data(), x.m1.data(), x.v1.data(), x.g.data(), n, lr, 0.9f, 0.999f, 1e-7f, 7 + launch,
                          stream.get());
      cuda::adam_update_and_advance(x.p2.data(), x.m2.data(), x.v2.data(), x.g.data(), n, ctr.data(), 0.9f, 0.999f,
                                    1e-7f, stream.get(), advance.data());
      x.check_equal();
      const cuda::TrainCounters after = to_host(ctr)[0];
      CHECK(after.step == 8 + launch);
      CHECK(after.batch == 5 + launch);
      CHECK(after.lr == lr);
      CHECK(to_host(advance)[0] == 0u);
    }
  }
}

// adam_reduce_update: segments of (W [rows, cols], b [rows]) whose gradient comes as `slices`
// partial sums [slices][rows][cols+1]. Expected: the gradient is the slices' float sum from 0 in
// slice order (its stated order: g_out bit for bit, computed on the host the same way), and p, m,
// v are cpu::adam_update on that gradient (tolerance as above: an ulp or two per element). The
// segments sit in a larger flat array with gaps, which must stay untouched (their p, m, v and g_out
// are checked bit for bit), and use 1 slice (dense's unsplit weight GEMM), a few (its split-K),
// and 40 and 130 (the tail kernel's row blocks: more than one round of in-flight loads).
TEST_CASE("adam_reduce_update: the slices' sum in slice order, then Adam, segment by segment") {
  Stream stream;
  struct Seg {
    int rows, cols, slices;
    std::size_t w_offset, b_offset;
  };
  const std::vector<Seg> segs{{128, 7, 1, 0, 900}, {10, 64, 3, 1040, 1690}, {33, 5, 40, 1710, 1880},
                              {3, 2, 130, 1920, 1930}};
  const std::size_t n = 2048;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
  std::vector<float> p = random_vector(n, 21), m = random_vector(n, 22, -0.1, 0.1), v = random_vector(n, 23, 0.0, 0.01);
  auto dp = to_device(p), dm = to_device(m), dv = to_device(v);
  auto dg = poisoned<float>(n);
  const std::vector<float> g_before = to_host(dg);
  std::vector<float> g = g_before;
  std::vector<bool> touched(n, false);
  std::vector<DeviceBuffer<float>> parts;
  cuda::GradSlicesSet set;
  for (std::size_t s = 0; s < segs.size(); ++s) {
    const Seg& e = segs[s];
    const std::size_t per = std::size_t(e.rows) * std::size_t(e.cols + 1), stride = per + 3;  // padded slices
    const std::vector<float> part = random_vector(stride * std::size_t(e.slices), 100 + s);
    parts.push_back(to_device(part));
    set.seg[set.count++] = {parts.back().data(), e.slices, stride, e.rows, e.cols, e.w_offset, e.b_offset};
    for (std::size_t i = 0; i < per; ++i) {
      float sum = 0.0f;
      for (int z = 0; z < e.slices; ++z) sum += part[std::size_t(z) * stride + i];
      const int r = int(i / std::size_t(e.cols + 1)), c = int(i % std::size_t(e.cols + 1));
      const std::size_t at = c < e.cols ? e.w_offset + std::size_t(r) * e.cols + c : e.b_offset + std::size_t(r);
      REQUIRE(!touched[at]);
      touched[at] = true;
      g[at] = sum;
    }
  }
  cuda::TrainCounters c;
  c.step = 4;
  c.lr = lr;
  auto ctr = to_device(std::vector<cuda::TrainCounters>{c});
  cuda::adam_reduce_update(dp.data(), dm.data(), dv.data(), dg.data(), set, ctr.data(), b1, b2, eps, stream.get());
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> p0 = p, m0 = m, v0 = v;
  for (std::size_t i = 0; i < n; ++i)
    if (touched[i]) cpu::adam_update(&p[i], &m[i], &v[i], &g[i], 1, lr, b1, b2, eps, c.step);
  CHECK(bitwise_equal(to_host(dg), g));  // the sums, and the gaps still poisoned
  const std::vector<float> hp = to_host(dp), hm = to_host(dm), hv = to_host(dv);
  expect_close(hp, p, 1e-6, "p");
  expect_close(hm, m, 1e-6, "m");
  expect_close(hv, v, 1e-6, "v");
  std::size_t changed = 0, gaps_kept = 0, gaps = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (touched[i]) {
      changed += hp[i] != p0[i];
    } else {
      ++gaps;
      gaps_kept += hp[i] == p0[i] && hm[i] == m0[i] && hv[i] == v0[i];
    }
  }
  CHECK(gaps_kept == gaps);
  CHECK(changed > 0);
  CHECK(to_host(ctr)[0].step == 4);  // read only
}

// With `advance`, the launch is also the step's advance_train_counters: two launches (a 5-block
// grid) use t = 4 then t = 5, leave step 6 and batch + 2, and the block count back at 0.
TEST_CASE("adam_reduce_update with advance: the last block moves the counters on, once") {
  Stream stream;
  const int rows = 128, cols = 9, slices = 3;
  const std::size_t n = std::size_t(rows) * (cols + 1), per = n;
  const float lr = 5e-3f;
  std::vector<float> p = random_vector(n, 31), m = random_vector(n, 32, -0.1, 0.1), v = random_vector(n, 33, 0.0, 0.01);
  const std::vector<float> part = random_vector(per * slices, 34);
  auto dp = to_device(p), dm = to_device(m), dv = to_device(v), dpart = to_device(part);
  cuda::GradSlicesSet set;
  set.seg[set.count++] = {dpart.data(), slices, per, rows, cols, 0, std::size_t(rows) * cols};
  cuda::TrainCounters c;
  c.step = 4;
  c.batch = 7;
  c.lr = lr;
  auto ctr = to_device(std::vector<cuda::TrainCounters>{c});
  auto done = to_device(std::vector<unsigned>{0u});
  for (int i = 0; i < 2; ++i)
    cuda::adam_reduce_update(dp.data(), dm.data(), dv.data(), nullptr, set, ctr.data(), 0.9f, 0.999f, 1e-7f,
                             stream.get(), done.data());
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> g(n);
  for (std::size_t i = 0; i < per; ++i) {
    float sum = 0.0f;
    for (int z = 0; z < slices; ++z) sum += part[std::size_t(z) * per + i];
    const std::size_t r = i / std::size_t(cols + 1), k = i % std::size_t(cols + 1);
    g[k < std::size_t(cols) ? r * cols + k : std::size_t(rows) * cols + r] = sum;
  }
  for (int64_t t : {4, 5}) cpu::adam_update(p.data(), m.data(), v.data(), g.data(), n, lr, 0.9f, 0.999f, 1e-7f, t);
  expect_close(to_host(dp), p, 1e-6, "p");
  expect_close(to_host(dm), m, 1e-6, "m");
  expect_close(to_host(dv), v, 1e-6, "v");
  const cuda::TrainCounters after = to_host(ctr)[0];
  CHECK(after.step == 6);
  CHECK(after.batch == 9);
  CHECK(after.lr == lr);
  CHECK(to_host(done)[0] == 0u);
}

// The optimizer's rounded copy of the weights (RoundedParams, kernels/adam.cuh: what the engine's
// GEMMs read W from at TF32/BF16). Expected, at each precision: round_params writes
// cpu::round_gemm_inputs(p) into every element, the special values included (±0, subnormals, ±Inf,
// NaN, ties); adam_update_and_advance and adam_reduce_update leave p, m, v bitwise as without the
// copy and write round(p) (after the update) into every element they update and nothing else (the
// gaps between adam_reduce_update's segments keep their poison); FP32 writes no copy; a copy that
// aliases p is refused.
TEST_CASE("the optimizer's rounded copy: round(p) at every element it updates, p, m, v unchanged") {
  Stream stream;
  const float lr = 3e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
  for (const GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) {
    const std::string name = prec == GemmPrecision::TF32 ? "tf32" : "bf16";
    INFO(name);
    auto rounded = [prec](const std::vector<float>& x) {
      std::vector<float> r(x.size());
      cpu::round_gemm_inputs(r.data(), x.data(), x.size(), prec);
      return r;
    };
    {  // round_params, over random values and the special ones
      std::vector<float> p = random_vector(5003, 41);
      const float special[] = {0.0f, -0.0f, 1e-40f, -3e-39f, INFINITY, -INFINITY, NAN, -NAN,
                               1.0f + 1.0f / 4096.0f,  // a TF32 tie (half an ulp of 2^-10): away
                               1.0f + 1.0f / 256.0f,   // a BF16 tie (half an ulp of 2^-7): to even
                               3.4028235e38f};         // rounds past the largest TF32/BF16 value
      for (std::size_t i = 0; i < sizeof special / sizeof special[0]; ++i) p[7 * i + 3] = special[i];
      auto dp = to_device(p);
      auto q = poisoned<float>(p.size());
      cuda::round_params({q.data(), prec}, dp.data(), p.size(), stream.get());
      // (bitwise, except that a NaN need only stay a NaN: cvt's NaN payload is the hardware's)
      const std::vector<float> hq = to_host(q), want = rounded(p);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < p.size(); ++i)
        wrong += float_bits(hq[i]) != float_bits(want[i]) && !(std::isnan(hq[i]) && std::isnan(want[i]));
      CHECK(wrong == 0);
      CHECK(bitwise_equal(to_host(dp), p));  // read only
      CHECK_THROWS(cuda::round_params({dp.data(), prec}, dp.data(), p.size(), stream.get()));
    }
    {  // adam_update_and_advance: every element updated
      const std::size_t n = 70001;
      TwinStates x(n, 43);
      auto ctr1 = device_counters(3, 0, lr), ctr2 = device_counters(3, 0, lr);
      auto adv1 = to_device(std::vector<unsigned>{0u}), adv2 = to_device(std::vector<unsigned>{0u});
      auto q = poisoned<float>(n);
      for (int launch = 0; launch < 2; ++launch) {
        cuda::adam_update_and_advance(x.p1.data(), x.m1.data(), x.v1.data(), x.g.data(), n, ctr1.data(), b1, b2, eps,
                                      stream.get(), adv1.data());
        cuda::adam_update_and_advance(x.p2.data(), x.m2.data(), x.v2.data(), x.g.data(), n, ctr2.data(), b1, b2, eps,
                                      stream.get(), adv2.data(), {q.data(), prec});
      }
      x.check_equal();
      CHECK(bitwise_equal(to_host(q), rounded(to_host(x.p2))));
      CHECK_THROWS(cuda::adam_update_and_advance(x.p2.data(), x.m2.data(), x.v2.data(), x.g.data(), n, ctr2.data(), b1,
                                                 b2, eps, stream.get(), adv2.data(), {x.m2.data(), prec}));
      auto q32 = poisoned<float>(n);  // FP32: no copy
      cuda::adam_update_and_advance(x.p2.data(), x.m2.data(), x.v2.data(), x.g.data(), n, ctr2.data(), b1, b2, eps,
                                    stream.get(), adv2.data(), {q32.data(), GemmPrecision::FP32});
      CHECK(bitwise_equal(to_host(q32), to_host(poisoned<float>(n))));
    }
    {  // adam_reduce_update: the segments' elements only, in a flat span with gaps
      struct Seg {
        int rows, cols, slices;
        std::size_t w_offset, b_offset;
      };
      const std::vector<Seg> segs{{64, 9, 2, 0, 700}, {10, 30, 40, 780, 1100}};
      const std::size_t n = 1200;
      const std::vector<float> p = random_vector(n, 45), m = random_vector(n, 46, -0.1, 0.1),
                               v = random_vector(n, 47, 0.0, 0.01);
      auto p1 = to_device(p), m1 = to_device(m), v1 = to_device(v), p2 = to_device(p), m2 = to_device(m),
           v2 = to_device(v);
      std::vector<DeviceBuffer<float>> parts;
      std::vector<bool> touched(n, false);
      cuda::GradSlicesSet set;
      for (std::size_t s = 0; s < segs.size(); ++s) {
        const Seg& e = segs[s];
        const std::size_t per = std::size_t(e.rows) * std::size_t(e.cols + 1);
        parts.push_back(to_device(random_vector(per * std::size_t(e.slices), 200 + s)));
        set.seg[set.count++] = {parts.back().data(), e.slices, per, e.rows, e.cols, e.w_offset, e.b_offset};
        for (int r = 0; r < e.rows; ++r) {
          for (int c = 0; c < e.cols; ++c) touched[e.w_offset + std::size_t(r) * e.cols + c] = true;
          touched[e.b_offset + std::size_t(r)] = true;
        }
      }
      cuda::TrainCounters c;
      c.step = 2;
      c.lr = lr;
      auto ctr = to_device(std::vector<cuda::TrainCounters>{c});
      auto q = poisoned<float>(n);
      cuda::adam_reduce_update(p1.data(), m1.data(), v1.data(), nullptr, set, ctr.data(), b1, b2, eps, stream.get());
      cuda::adam_reduce_update(p2.data(), m2.data(), v2.data(), nullptr, set, ctr.data(), b1, b2, eps, stream.get(),
                               nullptr, {}, {q.data(), prec});
      const std::vector<float> hp = to_host(p2), hq = to_host(q), want = rounded(hp);
      CHECK(bitwise_equal(hp, to_host(p1)));
      CHECK(bitwise_equal(to_host(m2), to_host(m1)));
      CHECK(bitwise_equal(to_host(v2), to_host(v1)));
      std::size_t wrong = 0, updated = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const float expect = touched[i] ? want[i] : bits_float(0xFFFFFFFFu);  // (the gaps: poison)
        wrong += float_bits(hq[i]) != float_bits(expect);
        updated += touched[i] && hp[i] != p[i];
      }
      CHECK(wrong == 0);
      CHECK(updated > 0);
    }
  }
}

}  // namespace
}  // namespace mnist::test
