// Host emulation of the fused training kernel (kernels/fused_step.cu) through the CUDA engine
// (Kernels::Fused): against the CPU engine within derived tolerances, against the graph path
// (Kernels::Graph) bitwise, and against itself over grid sizes, chunk sizes, a cut epoch, a resumed
// epoch and an interrupt. The cooperative launch runs all blocks concurrently (ov/cooperative_groups.h).
//
// Tolerances vs the CPU engine (derived in tests/gpu/test_engine.cu): parameters by their change
// since initialisation, normalised error 1e-3 (FP32 summation order ~1e-6 per gradient, amplified
// by Adam only for components within rounding of zero; any wrong mask, row, step or order gives
// an error of order 1); loss 1e-4 relative; accuracy at most one example apart (a near-tie).
// Against the graph path (inputs <= 392 wide; wider ones split layer 0's K, then as against the
// CPU): the same FMA chains, softmax, Adam and Philox draws, so parameters and
// Adam moments are bitwise equal and the correct counts equal; the loss sums are the same per-row
// values summed in double in another order: relative difference <= rows * 2^-53 < 1e-12.
#include <cuda_runtime.h>
#include <cooperative_groups.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>

#include "kernels/fused_step.cuh"
#include "layers/engine.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"

using namespace mnist;

static int failures = 0, checks = 0;
void expect(bool c, const std::string& w) { ++checks; if (!c) { ++failures; std::printf("FAIL %s\n", w.c_str()); } }
double nerr(const std::vector<double>& o, const std::vector<double>& r) {
  double a = 0, b = 0;
  for (size_t i = 0; i < o.size(); ++i) { if (!std::isfinite(o[i])) return INFINITY; a += (o[i] - r[i]) * (o[i] - r[i]); b += r[i] * r[i]; }
  return std::sqrt(a) / std::max(std::sqrt(b), 1e-30);
}
std::vector<double> delta(const std::vector<float>& p, const std::vector<float>& p0) {
  std::vector<double> d(p.size());
  for (size_t i = 0; i < p.size(); ++i) d[i] = double(p[i]) - p0[i];
  return d;
}
std::vector<uint8_t> rbytes(std::size_t n, uint64_t seed, int lo, int hi) {
  std::mt19937_64 g(seed); std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n); for (auto& x : v) x = uint8_t(d(g)); return v;
}
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_state(Engine& a, Engine& b) {
  TrainState x, y; a.get_state(x); b.get_state(y);
  return x.step == y.step && same_bits(x.params, y.params) && same_bits(x.m, y.m) && same_bits(x.v, y.v);
}

struct Data {
  int n, input, classes;
  std::vector<uint8_t> images, labels;
  Data(int n_, int input_, int classes_, uint64_t seed) : n(n_), input(input_), classes(classes_),
      images(rbytes(std::size_t(n_) * input_, seed + 1, 0, 255)), labels(rbytes(n_, seed + 2, 0, classes_ - 1)) {}
  DataView view() const { return {images.data(), labels.data(), n, input}; }
};

EngineConfig config(const Data& d, std::vector<int> hidden, float dropout, int batch, uint64_t seed, Kernels k, int K = 25) {
  EngineConfig cfg; cfg.spec.input = d.input; cfg.spec.hidden = std::move(hidden); cfg.spec.classes = d.classes;
  cfg.spec.dropout = dropout; cfg.batch_size = batch; cfg.seed = seed; cfg.kernels = k; cfg.graph_steps = K;
  // The fused step's bitwise twin is the graph path with the last layer's separate launches (the
  // head kernel, kernels/head.cuh, sums dW/db over other row pieces: equal to rounding only).
  if (k == Kernels::Graph) cfg.head_kernel = false;
  return cfg;
}

// Fused vs CPU (tolerances) and vs graph (bitwise), epoch by epoch; then evaluation.
void against_cpu_and_graph(const Data& d, std::vector<int> hidden, float dropout, int batch, uint64_t seed, bool shuffle, int epochs) {
  EngineConfig cfg = config(d, hidden, dropout, batch, seed, Kernels::Fused);
  cfg.shuffle = shuffle;
  EngineConfig gcfg = cfg; gcfg.kernels = Kernels::Graph; gcfg.head_kernel = false;  // see config()
  auto cpu = make_cpu_engine(cfg), fused = make_cuda_engine(cfg), graph = make_cuda_engine(gcfg);
  const std::string tag = cat("in=", d.input, " hidden=", hidden.size(), " batch=", batch, " n=", d.n, " p=", dropout, shuffle ? "" : " noshuffle");
  expect(fused->notice().empty() && graph->notice().empty(), tag + " no notice");
  const int tc = cpu->add_dataset(d.view()), tf = fused->add_dataset(d.view()), tg = graph->add_dataset(d.view());
  std::vector<float> p0, pc, pf; cpu->get_params(p0);
  const int chunks = (d.n / batch + 24) / 25 + (d.n % batch ? 1 : 0);  // launches per epoch at K = 25
  for (int e = 0; e < epochs; ++e) {
    const int coop = g_emu_cooperative_launches;
    const EpochStats sc = cpu->train_epoch(tc, e, 1e-3f), sf = fused->train_epoch(tf, e, 1e-3f), sg = graph->train_epoch(tg, e, 1e-3f);
    expect(g_emu_cooperative_launches - coop == chunks, cat(tag, " fused launches ", g_emu_cooperative_launches - coop, " expected ", chunks));
    cpu->get_params(pc); fused->get_params(pf);
    const double err = nerr(delta(pf, p0), delta(pc, p0));
    std::printf("%s epoch %d: loss cpu %.9f fused %.9f graph %.9f acc %.4f/%.4f  param-change err vs cpu %.3g\n", tag.c_str(), e, sc.loss, sf.loss, sg.loss, sc.accuracy, sf.accuracy, err);
    expect(err < 1e-3, tag + " params vs cpu");
    expect(std::fabs(sc.loss - sf.loss) <= 1e-4 * std::fabs(sc.loss), tag + " loss vs cpu");
    expect(std::fabs(sc.accuracy - sf.accuracy) * d.n <= 1.0 + 1e-9, tag + " acc vs cpu");
    expect(sf.examples == sc.examples && sg.examples == sc.examples, tag + " examples");
    if (d.input <= 392) {  // no split-K: the graph path's chains
      expect(same_state(*fused, *graph), tag + " params/m/v/step bitwise vs graph");
      expect(sf.accuracy == sg.accuracy, tag + " correct count vs graph");
      expect(std::fabs(sf.loss - sg.loss) <= 1e-12 * std::fabs(sg.loss), tag + " loss vs graph");
    } else {  // layer 0 split-K: summation order differs, as against the CPU
      std::vector<float> pg; graph->get_params(pg);
      const double eg = nerr(delta(pf, p0), delta(pg, p0));
      std::printf("  split-K: param-change err vs graph %.3g\n", eg);
      expect(eg < 1e-3, tag + " params vs graph");
      expect(std::fabs(sf.loss - sg.loss) <= 1e-4 * std::fabs(sg.loss), tag + " loss vs graph");
      expect(std::fabs(sf.accuracy - sg.accuracy) * d.n <= 1.0 + 1e-9, tag + " acc vs graph");
    }
  }
  // Evaluation: one launch (fused_evaluate); given the same weights, the graph path's logits bit
  // for bit, so the same correct count and the loss to summation order.
  const long long launches = g_emu_launches;
  const EpochStats ec = cpu->evaluate(tc), ef = fused->evaluate(tf);
  std::vector<int> widths{d.input};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(d.classes);
  if (mnist::cuda::fused_eval_supported(widths))  // else the graph path's kernels, batch by batch
    expect(g_emu_launches - launches == 1, cat(tag, " eval launches ", g_emu_launches - launches));
  else
    expect(g_emu_launches - launches > 1, cat(tag, " eval on the graph path (its rows do not fit on chip)"));
  graph->set_params(pf);  // the same weights (they differ to rounding after split-K training)
  const EpochStats eg = graph->evaluate(tg);
  std::printf("  eval loss cpu %.9f fused %.9f graph %.9f acc %.4f/%.4f/%.4f\n", ec.loss, ef.loss, eg.loss, ec.accuracy, ef.accuracy, eg.accuracy);
  expect(std::fabs(ec.loss - ef.loss) <= 1e-4 * ec.loss && std::fabs(ec.accuracy - ef.accuracy) * d.n <= 1.0 + 1e-9, tag + " eval vs cpu");
  if (d.input < 512) {  // neither path splits layer 0's sum: the same chains
    expect(ef.accuracy == eg.accuracy && std::fabs(ef.loss - eg.loss) <= 1e-12 * eg.loss && ef.examples == eg.examples,
           tag + " eval vs graph");
  } else {
    // The graph path's forward GEMM splits K >= 512 at its own fixed points (kernels/dense.cu),
    // the fused evaluation does not: each logit is the same sum in another order, off by at most
    // γ_K·Σ|x·w| (γ_784 ≈ 4.7e-5, Σ|x·w| within a few |logit| here), and the mean loss by far
    // less (printed above: ~1e-8 relative). 1e-5 relative on the loss, one example on accuracy.
    expect(std::fabs(ef.accuracy - eg.accuracy) * d.n <= 1.0 + 1e-9 && std::fabs(ef.loss - eg.loss) <= 1e-5 * eg.loss &&
               ef.examples == eg.examples,
           tag + " eval vs graph");
  }
  const EpochStats ef2 = fused->evaluate(tf);  // the done counter re-armed: the same again
  expect(std::memcmp(&ef2.loss, &ef.loss, sizeof(double)) == 0 && ef2.accuracy == ef.accuracy, tag + " eval twice");
}

// The fused kernel at tf32/bf16 (every GEMM input rounded, FusedStep::precision) against the CPU
// engine at the same precision (the same rounding; cpu_ops), with the fp32 tolerances above: the
// rounded products are exact in float32 on both, so only the summation order differs. And against
// the CPU engine at fp32, to show that the rounding is there at all: that error must be at least
// ten times larger (the inputs' 2^-11 or 2^-8 relative rounding against ~1e-6 of summation order).
void rounded_against_cpu(const Data& d, std::vector<int> hidden, float dropout, int batch, uint64_t seed,
                         Precision prec, int epochs) {
  EngineConfig cfg = config(d, hidden, dropout, batch, seed, Kernels::Fused);
  cfg.precision = prec;
  EngineConfig fp32 = cfg;
  fp32.precision = Precision::FP32;
  auto cpu = make_cpu_engine(cfg), cpu32 = make_cpu_engine(fp32), fused = make_cuda_engine(cfg);
  const std::string tag = cat(to_string(prec), " in=", d.input, " hidden=", hidden.size(), " batch=", batch, " n=", d.n);
  expect(fused->notice().empty() && fused->fused_step(), tag + " runs the fused kernel, no notice");
  const int tc = cpu->add_dataset(d.view()), t32 = cpu32->add_dataset(d.view()), tf = fused->add_dataset(d.view());
  std::vector<float> p0, pc, p32, pf;
  cpu->get_params(p0);
  for (int e = 0; e < epochs; ++e) {
    const int coop = g_emu_cooperative_launches;
    const EpochStats sc = cpu->train_epoch(tc, e, 1e-3f), sf = fused->train_epoch(tf, e, 1e-3f);
    cpu32->train_epoch(t32, e, 1e-3f);
    expect(g_emu_cooperative_launches > coop, tag + " trained by the fused kernel");
    cpu->get_params(pc); cpu32->get_params(p32); fused->get_params(pf);
    const double err = nerr(delta(pf, p0), delta(pc, p0)), err32 = nerr(delta(pf, p0), delta(p32, p0));
    std::printf("%s epoch %d: loss cpu %.9f fused %.9f  param-change err vs cpu %.3g, vs cpu fp32 %.3g\n", tag.c_str(), e,
                sc.loss, sf.loss, err, err32);
    expect(err < 1e-3, tag + " params vs cpu");
    expect(err32 > 10 * err, tag + " the rounding shows against fp32");
    expect(std::fabs(sc.loss - sf.loss) <= 1e-4 * std::fabs(sc.loss), tag + " loss vs cpu");
    expect(std::fabs(sc.accuracy - sf.accuracy) * d.n <= 1.0 + 1e-9 && sf.examples == sc.examples, tag + " acc vs cpu");
  }
  const long long launches = g_emu_launches;
  const EpochStats ec = cpu->evaluate(tc), ef = fused->evaluate(tf);
  std::vector<int> widths{d.input};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(d.classes);
  if (mnist::cuda::fused_eval_supported(widths))  // else the graph path's kernels (at the same precision)
    expect(g_emu_launches - launches == 1, tag + " evaluation: one fused launch");
  std::printf("  eval loss cpu %.9f fused %.9f acc %.4f/%.4f\n", ec.loss, ef.loss, ec.accuracy, ef.accuracy);
  expect(std::fabs(ec.loss - ef.loss) <= 1e-4 * ec.loss && std::fabs(ec.accuracy - ef.accuracy) * d.n <= 1.0 + 1e-9,
         tag + " eval vs cpu");
}

// One run of the fused engine: epoch 0 cut at `cut` (if > 0) and continued, epoch 1 resumed at
// batch 3; returns the final state and the two epochs' stats.
struct Outcome { TrainState st; EpochStats e0, e1; };
Outcome fused_run(const Data& d, int sms, int K, int cut, int cap_blocks = 0, bool grid_barriers = false) {  // hidden {33, 20}, batch 32
  g_emu_sm_count = sms;
  EngineConfig cfg = config(d, {33, 20}, 0.2f, 32, 13, Kernels::Fused, K);
  cfg.fused_blocks = cap_blocks;
  cfg.fused_grid_barriers = grid_barriers;
  auto f = make_cuda_engine(cfg);
  const int t = f->add_dataset(d.view());
  EpochProgress p;
  if (cut > 0) {
    p.end_batch = cut;
    expect(!f->train_steps(t, 0, 1e-3f, p, nullptr) && p.next_batch == cut, cat("sms=", sms, " K=", K, " cut"));
    p.end_batch = -1;
  }
  expect(f->train_steps(t, 0, 1e-3f, p, nullptr) && p.examples == d.n, cat("sms=", sms, " K=", K, " epoch 0 complete"));
  Outcome o; o.e0 = p.stats();
  EpochProgress r; r.next_batch = 3;
  f->train_steps(t, 1, 1e-3f, r, nullptr);
  o.e1 = r.stats();
  f->get_state(o.st);
  g_emu_sm_count = 2;
  return o;
}

// Grid size (1, 2, 3 blocks; a cap), chunk size K and a cut epoch change no bit, metrics included;
// and the result equals the graph path's doing the same.
// With split-K (input 784): grids of 1, 2, 3 blocks, bitwise.
void split_grid_bitwise() {
  const Data d(80, 784, 10, 21);  // 2 full batches of 32 and one of 16
  const Outcome ref = fused_run(d, 1, 25, 0);
  for (int sms : {2, 3}) {
    const Outcome o = fused_run(d, sms, 1, 2);
    expect(o.st.step == ref.st.step && same_bits(o.st.params, ref.st.params) && same_bits(o.st.m, ref.st.m) &&
               same_bits(o.st.v, ref.st.v) && std::memcmp(&o.e0.loss, &ref.e0.loss, sizeof(double)) == 0,
           cat("split-K sms=", sms, " bitwise"));
  }
}

// The phases wait for the items they read on counters (kernels/dep_wait.cuh), not at grid barriers.
// With the odd blocks slow (they run only when no even block can, and a waiter looks again after each
// of their threads' runs), an item that read before its inputs were written, or wrote before their
// readers were done, would change the bits; with the waits it spins until they are. With the even
// blocks slow, block 0, which zeroes the counters, comes late: a counter zeroed after its next count
// began would lose that count (a wait that never ends: the emulator's deadlock report). Both
// layer-0 forms: split-K (784 inputs, the partial sums) and one chain.
void slow_blocks_bitwise() {
  const Data split(80, 784, 10, 21), plain(300, 50, 10, 14);
  for (const Data* d : {&split, &plain}) {
    const Outcome ref = fused_run(*d, 1, 25, 0);
    // The odd blocks slow, the even ones, or block 0 alone (it zeroes the counters) in a grid of 56:
    // there the 25 phase-C tiles of layer 0's second 32-unit tile (items 25 .. 49) miss block 0, so
    // the next step's phase-A items that wait only for them can count before block 0 has zeroed the
    // set they count on, unless that set is not the one block 0 zeroes (two sets by step parity).
    struct Slow { int sms; const char* name; std::function<bool(unsigned)> slow; };
    const Slow cases[] = {{2, "odd", [](unsigned b) { return b % 2 == 1; }}, {3, "odd", [](unsigned b) { return b % 2 == 1; }},
                          {2, "even", [](unsigned b) { return b % 2 == 0; }}, {3, "even", [](unsigned b) { return b % 2 == 0; }},
                          {56, "block 0", [](unsigned b) { return b == 0; }}};
    // The two grid barriers put back (EngineConfig::fused_grid_barriers, for comparison): the same bits.
    const Outcome b = fused_run(*d, 3, 25, 0, 0, true);
    expect(b.st.step == ref.st.step && same_bits(b.st.params, ref.st.params) && same_bits(b.st.m, ref.st.m) &&
               same_bits(b.st.v, ref.st.v) && std::memcmp(&b.e0.loss, &ref.e0.loss, sizeof(double)) == 0,
           cat("grid barriers back, input ", d->input, ": bitwise"));
    for (const Slow& c : cases) {
      if (c.sms == 56 && d != &split) continue;
      emu::g_slow_block = c.slow;
      const Outcome o = fused_run(*d, c.sms, 25, 0);
      emu::g_slow_block = nullptr;
      expect(o.st.step == ref.st.step && same_bits(o.st.params, ref.st.params) && same_bits(o.st.m, ref.st.m) &&
                 same_bits(o.st.v, ref.st.v) && std::memcmp(&o.e0.loss, &ref.e0.loss, sizeof(double)) == 0,
             cat("slow ", c.name, " blocks, input ", d->input, ", sms=", c.sms, ": bitwise"));
    }
  }
}

void grid_and_chunks_bitwise() {
  const Data d(300, 50, 10, 14);  // 9 full batches of 32 and one of 12
  const Outcome ref = fused_run(d, 1, 25, 0);
  expect(ref.st.step == 10 + 7, cat("steps ", ref.st.step));
  struct Case { int sms, K, cut, cap; };
  for (const Case c : {Case{2, 25, 0, 0}, Case{3, 25, 0, 0}, Case{3, 1, 5, 0}, Case{2, 4, 5, 0}, Case{3, 2, 0, 1}}) {
    const Outcome o = fused_run(d, c.sms, c.K, c.cut, c.cap);
    const std::string tag = cat("sms=", c.sms, " K=", c.K, " cut=", c.cut, " cap=", c.cap);
    expect(o.st.step == ref.st.step && same_bits(o.st.params, ref.st.params) && same_bits(o.st.m, ref.st.m) &&
               same_bits(o.st.v, ref.st.v), tag + " state bitwise");
    expect(std::memcmp(&o.e0.loss, &ref.e0.loss, sizeof(double)) == 0 && o.e0.accuracy == ref.e0.accuracy &&
               std::memcmp(&o.e1.loss, &ref.e1.loss, sizeof(double)) == 0 && o.e1.accuracy == ref.e1.accuracy,
           tag + " metrics bitwise");
  }
  // The graph path, same cut and resume.
  EngineConfig cfg = config(d, {33, 20}, 0.2f, 32, 13, Kernels::Graph, 4);
  auto g = make_cuda_engine(cfg);
  const int t = g->add_dataset(d.view());
  EpochProgress p; p.end_batch = 5;
  g->train_steps(t, 0, 1e-3f, p, nullptr);
  p.end_batch = -1;
  g->train_steps(t, 0, 1e-3f, p, nullptr);
  EpochProgress r; r.next_batch = 3;
  g->train_steps(t, 1, 1e-3f, r, nullptr);
  TrainState st; g->get_state(st);
  expect(st.step == ref.st.step && same_bits(st.params, ref.st.params) && same_bits(st.m, ref.st.m) && same_bits(st.v, ref.st.v),
         "fused equals graph after a cut and a resume");
  expect(p.correct == int64_t(std::lround(ref.e0.accuracy * d.n)), "graph vs fused correct count");
  std::printf("grid/chunk/cut/resume: %d checks so far, %d failures\n", checks, failures);
}

// An interrupt before the first chunk runs nothing; fallbacks say so in one line and do not launch.
void interrupt_and_fallbacks() {
  const Data d(64, 20, 4, 3);
  {
    auto f = make_cuda_engine(config(d, {9}, 0.2f, 16, 3, Kernels::Fused));
    const int t = f->add_dataset(d.view());
    std::atomic<bool> stop{true};
    EpochProgress p;
    const int coop = g_emu_cooperative_launches;
    expect(!f->train_steps(t, 0, 1e-3f, p, &stop) && p.next_batch == 0 && p.examples == 0 &&
               g_emu_cooperative_launches == coop, "interrupt before the epoch");
  }
  struct Fallback { const char* what; EngineConfig cfg; };
  std::vector<Fallback> cases{
      {"8 hidden layers", config(d, {4, 4, 4, 4, 4, 4, 4, 4}, 0.2f, 16, 3, Kernels::Fused)},
      {"width 4000", config(d, {4000}, 0.2f, 16, 3, Kernels::Fused)},
  };
  for (const Fallback& c : cases) {
    auto f = make_cuda_engine(c.cfg);
    const int t = f->add_dataset(d.view());
    const int coop = g_emu_cooperative_launches;
    f->train_epoch(t, 0, 1e-3f);
    std::printf("%s: %s\n", c.what, f->notice().c_str());
    expect(!f->notice().empty() && f->notice().find('\n') == std::string::npos && g_emu_cooperative_launches == coop,
           cat(c.what, ": one-line notice, graph path"));
  }
  auto g = make_cuda_engine(config(d, {9}, 0.2f, 16, 3, Kernels::Graph));
  expect(g->notice().empty(), "graph asked for: no notice");

  // --kernels auto: fused up to kFusedAutoMaxBatch in fp32 (kFusedAutoMaxBatchRounded in
  // tf32/bf16), the graph path otherwise, never a notice.
  const Data big(2 * kFusedAutoMaxBatch + 8, 20, 4, 3);
  struct Auto { const char* what; EngineConfig cfg; bool fused; };
  auto with = [](EngineConfig c, Precision p) { c.precision = p; return c; };
  const int rounded_max = kFusedAutoMaxBatchRounded;
  std::vector<Auto> autos{
      {"auto, batch 16", config(d, {9}, 0.2f, 16, 3, Kernels::Auto), true},
      {"auto, batch kFusedAutoMaxBatch", config(big, {9}, 0.2f, kFusedAutoMaxBatch, 3, Kernels::Auto), true},
      {"auto, batch kFusedAutoMaxBatch + 1", config(big, {9}, 0.2f, kFusedAutoMaxBatch + 1, 3, Kernels::Auto), false},
      {"auto, tf32 batch 16", with(config(d, {9}, 0.2f, 16, 3, Kernels::Auto), Precision::TF32), true},
      {"auto, bf16 batch kFusedAutoMaxBatchRounded",
       with(config(big, {9}, 0.2f, rounded_max, 3, Kernels::Auto), Precision::BF16), true},
      {"auto, tf32 batch kFusedAutoMaxBatchRounded + 1",
       with(config(big, {9}, 0.2f, rounded_max + 1, 3, Kernels::Auto), Precision::TF32), false},
      {"auto, 8 hidden layers", config(d, {4, 4, 4, 4, 4, 4, 4, 4}, 0.2f, 16, 3, Kernels::Auto), false},
  };
  for (const Auto& c : autos) {
    auto f = make_cuda_engine(c.cfg);
    const int t = f->add_dataset(c.cfg.batch_size > 16 ? big.view() : d.view());
    const int coop = g_emu_cooperative_launches;
    f->train_epoch(t, 0, 1e-3f);
    expect(f->notice().empty() && f->fused_step() == c.fused && (g_emu_cooperative_launches > coop) == c.fused,
           cat(c.what, c.fused ? ": fused kernel" : ": graph path", ", no notice"));
  }
}

// The profiling knob EngineConfig::fused_phases (bench_fused): with no phase working, a launch
// leaves parameters and Adam moments as they were and still advances the step counter; with every
// phase (7, the default) it trains.
void phase_knob() {
  const Data d(64, 20, 4, 3);
  EngineConfig cfg = config(d, {9}, 0.2f, 16, 3, Kernels::Fused);
  cfg.fused_phases = 0;
  auto f = make_cuda_engine(cfg);
  const int t = f->add_dataset(d.view());
  TrainState s0, s1;
  f->get_state(s0);
  f->train_epoch(t, 0, 1e-3f);
  f->get_state(s1);
  expect(s1.params == s0.params && s1.m == s0.m && s1.v == s0.v && s1.step == s0.step + 4,
         "fused_phases 0: nothing trained, the step counter advanced by the epoch's 4 steps");
  cfg.fused_phases = 7;
  auto g = make_cuda_engine(cfg);
  const int tg = g->add_dataset(d.view());
  g->train_epoch(tg, 0, 1e-3f);
  g->get_state(s1);
  expect(s1.params != s0.params && s1.step == s0.step + 4, "fused_phases 7: trains");
}

int main() {
  phase_knob();
  interrupt_and_fallbacks();
  grid_and_chunks_bitwise();
  const Data a(200, 50, 10, 7), b(100, 33, 3, 9), c(64, 20, 4, 3), e(50, 20, 5, 4);
  against_cpu_and_graph(a, {33, 20}, 0.2f, 32, 7, true, 2);   // partial last batch (8 rows)
  against_cpu_and_graph(b, {17}, 0.0f, 16, 9, false, 2);      // no dropout, no shuffle, one hidden layer
  against_cpu_and_graph(c, {8, 8, 8}, 0.2f, 64, 3, true, 2);  // one full batch an epoch, three hidden layers
  against_cpu_and_graph(e, {9}, 0.5f, 64, 4, true, 2);        // only a partial batch
  // Hidden widths whose weights do not fit in shared memory (240 KB for W_1): phase B reads them
  // from global memory (the path that stages them is taken by every case above).
  against_cpu_and_graph(e, {300, 200}, 0.2f, 16, 4, true, 1);
  split_grid_bitwise();
  slow_blocks_bitwise();
  const Data w(100, 784, 10, 5);
  against_cpu_and_graph(w, {24, 16}, 0.2f, 32, 5, true, 2);   // 784 inputs: layer 0 split-K
  rounded_against_cpu(a, {33, 20}, 0.2f, 32, 7, Precision::TF32, 2);  // weights staged in phase B
  rounded_against_cpu(a, {33, 20}, 0.2f, 32, 7, Precision::BF16, 2);
  rounded_against_cpu(e, {300, 200}, 0.2f, 16, 4, Precision::TF32, 1);  // W_1 read (and rounded) from global
  rounded_against_cpu(w, {24, 16}, 0.2f, 32, 5, Precision::BF16, 1);    // layer 0 split-K
  std::printf("%d checks, %d failures, %d cooperative launches\n", checks, failures, g_emu_cooperative_launches);
  return failures != 0;
}
