// Emulated CUDA engine at --precision tf32 / bf16 against the CPU engine at the same precision
// (the same input rounding in every GEMM): epochs with dropout and a partial last batch, a model
// whose first layer is deep enough (600 inputs) for the forward split-K, then evaluate/predict; on
// the graph path (tensor-core tiles), the tail path and --kernels auto (the fused kernel).
//
// Tolerance: as for float32 (emu_engine.cpp, tests/gpu/test_engine.cu: parameter change 1e-3
// normalised, loss 1e-4 relative), derived: the engines still differ only in summation order, now
// of products of rounded inputs; where that order moves a GEMM input (an activation or a
// gradient) across a rounding boundary the two sides round it one TF32/BF16 ulp apart. Summation
// differences are ~2^-24 relative, a rounding step 2^-11 (TF32) or 2^-8 (BF16), so about one
// element in 2^13 (2^16) flips and each flip moves one product by one ulp: the gradients differ
// by ≈ sqrt(2^-13)·2^-11 ≈ 5e-6 (TF32) and sqrt(2^-16)·2^-8 ≈ 1.5e-5 (BF16) relative, the same
// order as float32's summation noise, well inside 1e-3 after Adam.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

#include <cuda_runtime.h>

#include "kernels/dense.cuh"
#include "layers/engine.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"
#include "emu_x_in_place.hpp"


using namespace mnist;
static int failures = 0, checks = 0;
void expect(bool c, const std::string& w) {
  ++checks;
  if (!c) {
    ++failures;
    std::printf("FAIL %s\n", w.c_str());
  }
}
double nerr(const std::vector<float>& o, const std::vector<float>& r, const std::vector<float>& base) {
  double a = 0, b = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    const double x = double(o[i]) - base[i], y = double(r[i]) - base[i];
    if (!std::isfinite(x)) return INFINITY;
    a += (x - y) * (x - y);
    b += y * y;
  }
  return std::sqrt(a) / std::max(std::sqrt(b), 1e-30);
}
std::vector<uint8_t> rbytes(std::size_t n, uint64_t seed, int hi) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(0, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(d(g));
  return v;
}

void compare(Precision prec, int input, std::vector<int> hidden, int batch, int n, int epochs,
             Kernels kernels = Kernels::Graph) {
  EngineConfig cfg;
  cfg.kernels = kernels;
  cfg.spec.input = input;
  cfg.spec.hidden = hidden;
  cfg.spec.classes = 10;
  cfg.spec.dropout = 0.2f;
  cfg.batch_size = batch;
  cfg.seed = 5;
  cfg.precision = prec;
  cfg.graph_steps = 3;
  const auto images = rbytes(std::size_t(n) * input, 1, 255), labels = rbytes(n, 2, 9);
  const DataView v{images.data(), labels.data(), n, input};
  auto cpu = make_cpu_engine(cfg);
  auto gpu = make_cuda_engine(cfg);
  const int tc = cpu->add_dataset(v), tg = gpu->add_dataset(v);
  std::vector<float> p0, pc, pg;
  cpu->get_params(p0);
  expect(gpu->tail_kernel() == (kernels == Kernels::Tail), "tail path as configured");
  expect(gpu->fused_step() == (kernels == Kernels::Auto), "the fused kernel under auto only");
  const std::string tag = cat(to_string(prec), " ", to_string(kernels), " in=", input, " batch=", batch, " n=", n);
  for (int e = 0; e < epochs; ++e) {
    const EpochStats sc = cpu->train_epoch(tc, e, 1e-3f), sg = gpu->train_epoch(tg, e, 1e-3f);
    cpu->get_params(pc);
    gpu->get_params(pg);
    const double err = nerr(pg, pc, p0);
    std::printf("%s epoch %d: loss cpu %.9f gpu %.9f  param-change err %.3g\n", tag.c_str(), e, sc.loss, sg.loss, err);
    expect(err < 1e-3, tag + " params");
    expect(std::fabs(sc.loss - sg.loss) <= 1e-4 * std::fabs(sc.loss), tag + " loss");
    expect(std::fabs(sc.accuracy - sg.accuracy) * n <= 1.0 + 1e-9, tag + " acc");
  }
  const EpochStats ec = cpu->evaluate(tc), eg = gpu->evaluate(tg);
  expect(std::fabs(ec.loss - eg.loss) <= 1e-4 * ec.loss, tag + " eval");
  std::vector<float> qc(std::size_t(n) * 10), qg(std::size_t(n) * 10, NAN), zero(qc.size(), 0.0f);
  cpu->predict(qc.data(), images.data(), n);
  gpu->predict(qg.data(), images.data(), n);
  expect(nerr(qg, qc, zero) < 1e-4, tag + " predict");
}

// EngineConfig::rounded_weights: the GEMMs reading W from the optimizer's rounded copy, with the
// pipelined 64x64 tile forced on every tensor-core GEMM so that its pass over W is really skipped
// (the size model takes MmaTile, which has no pass, at these shapes): every result bitwise the raw
// weights' run (loss sums, parameters, moments, evaluation, predictions); then the trained engine
// given another engine's weights (set_params) evaluates and predicts bitwise as that engine.
void rounded_copy(Precision prec, Kernels kernels) {
  EngineConfig cfg;
  cfg.kernels = kernels;
  cfg.precision = prec;
  cfg.spec.input = 50;
  cfg.spec.hidden = {33, 20};
  cfg.spec.classes = 10;
  cfg.spec.dropout = 0.2f;
  cfg.batch_size = 32;
  cfg.graph_steps = 3;
  cfg.seed = 8;
  const int n = 100;
  const auto images = rbytes(std::size_t(n) * 50, 3, 255), labels = rbytes(n, 4, 9);
  const DataView v{images.data(), labels.data(), n, 50};
  const std::string tag = cat("rounded copy, ", to_string(prec), " ", to_string(kernels));
  cuda::dense_force_tile({cuda::GemmTile::Pipe64, false});
  std::vector<float> params[2], m[2], q[2];
  double loss[2] = {0, 0}, eval[2] = {0, 0};
  std::unique_ptr<Engine> on;
  int t_on = 0;
  for (int r = 0; r < 2; ++r) {
    cfg.rounded_weights = r == 1;
    auto gpu = make_cuda_engine(cfg);
    expect(gpu->rounded_weights() == (r == 1), tag + ": the copy as configured");
    const int t = gpu->add_dataset(v);
    for (int e = 0; e < 2; ++e) loss[r] += gpu->train_epoch(t, e, 1e-3f).loss;
    TrainState st;
    gpu->get_state(st);
    params[r] = st.params, m[r] = st.m;
    eval[r] = gpu->evaluate(t).loss;
    q[r].assign(std::size_t(n) * 10, NAN);
    gpu->predict(q[r].data(), images.data(), n);
    if (r == 1) on = std::move(gpu), t_on = t;
  }
  expect(std::memcmp(&loss[0], &loss[1], sizeof(double)) == 0, tag + ": training loss bitwise");
  expect(params[0] == params[1] && m[0] == m[1], tag + ": parameters and moments bitwise");
  expect(std::memcmp(&eval[0], &eval[1], sizeof(double)) == 0 && std::memcmp(q[0].data(), q[1].data(), q[0].size() * 4) == 0,
         tag + ": evaluation and predictions bitwise");
  cfg.seed = 9;  // other weights, loaded into the trained engine
  auto other = make_cuda_engine(cfg);
  const int t_other = other->add_dataset(v);
  std::vector<float> w;
  other->get_params(w);
  on->set_params(w);
  const double a = on->evaluate(t_on).loss, b = other->evaluate(t_other).loss;
  expect(std::memcmp(&a, &b, sizeof(double)) == 0, tag + ": set_params reaches the copy");
  cuda::dense_force_tile({});
}

int main() {
  for (Precision p : {Precision::TF32, Precision::BF16}) {
    compare(p, 50, {33, 20}, 32, 200, 2);  // 6 full batches + one of 8 rows
    compare(p, 600, {40}, 16, 40, 1);      // layer 1's forward split over K (3 pieces)
    // The tail path (Kernels::Tail: layers >= 1 in one kernel, Adam fused with the sums).
    compare(p, 50, {33, 20}, 32, 200, 2, Kernels::Tail);
    // Auto at these batches: the fused kernel, its SIMT chains on the rounded inputs (emu_fused.cpp
    // has its own checks); evaluation and prediction through it too.
    compare(p, 50, {33, 20}, 32, 200, 1, Kernels::Auto);
  }
  // Layer 0's X read in place from the images against the gathered floats (emu_x_in_place.hpp):
  // every result bitwise, graph and tail paths, at tf32 and bf16 (MmaTile reads the images; the
  // pipelined tiles the gathered run may take are bitwise MmaTile's).
  for (Precision p : {Precision::TF32, Precision::BF16})
    for (Kernels k : {Kernels::Graph, Kernels::Tail}) {
      EngineConfig cfg;
      cfg.kernels = k;
      cfg.precision = p;
      cfg.spec.input = 50;
      cfg.spec.hidden = {33, 20};
      cfg.batch_size = 32;
      cfg.graph_steps = 3;
      cfg.seed = 6;
      emu_x::in_place_vs_gathered(cfg, 200, 2, cat("x in place, ", to_string(p), " ", to_string(k)), expect);
    }
  for (Precision p : {Precision::TF32, Precision::BF16})
    for (Kernels k : {Kernels::Graph, Kernels::Tail}) rounded_copy(p, k);
  // The flag is honoured: TF32 training differs from FP32 (same seed, same data).
  EngineConfig cfg;
  cfg.spec.input = 50;
  cfg.spec.hidden = {33};
  cfg.batch_size = 32;
  const auto images = rbytes(std::size_t(64) * 50, 1, 255), labels = rbytes(64, 2, 9);
  std::vector<float> a, b;
  for (Precision p : {Precision::FP32, Precision::TF32}) {
    cfg.precision = p;
    auto gpu = make_cuda_engine(cfg);
    const int t = gpu->add_dataset({images.data(), labels.data(), 64, 50});
    gpu->train_epoch(t, 0, 1e-3f);
    gpu->get_params(p == Precision::FP32 ? a : b);
  }
  expect(a != b, "tf32 changes the training");
  std::printf("engine at tf32/bf16: %d checks, %d failures, %lld launches\n", checks, failures, g_emu_launches);
  return failures != 0;
}
