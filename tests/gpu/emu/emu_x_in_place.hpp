// Layer 0 reading X in place from the uint8 images (EngineConfig::x_in_place, the default) against
// the batch gathered into floats first (x_in_place = false: gather_batch / gather_rows, the launches
// before it), in the emulated engine. Shared by emu_engine.cpp (fp32) and emu_engine_tc.cpp
// (tf32/bf16).
//
// Tolerance: none. Both read the same floats (pixel_value, kernels/gather.cuh) in the same order
// through GEMMs whose results do not depend on where X came from (tests/gpu/test_dense_images.cu),
// so every number must be the same bits: each epoch's loss sum and hits, every parameter and Adam
// moment after it, the step counter, the evaluation and the predictions. A wrong row (index, batch
// offset, the partial batch's base, a chunk's first row), a label out of place or a pixel scaled
// otherwise changes them. Also checked: the in-place engine holds no float batch (cap x input
// floats of device memory fewer; cap = max(batch, EngineConfig::eval_rows), the engine's row capacity) and launches
// one kernel fewer a training step (no gather_batch: the loss kernel reads each row's label through
// the epoch's order, kernels/labels.cuh) and one fewer per evaluation or prediction chunk (no
// gather_rows; the labels are the dataset's own array). The tail path is run in place twice: with its
// weight GEMM on X gathered beside the tail kernel (EngineConfig::x_weight_gathered, the default:
// the float batch is held, the gather launch moved, not added) and without (x_weight_gathered
// false: as the graph path); all three bitwise.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "layers/engine.hpp"
#include "runtime/device_buffer.cuh"
#include "runtime/error.hpp"

namespace emu_x {

using namespace mnist;

inline std::vector<uint8_t> bytes(std::size_t n, uint64_t seed, int hi) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(0, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(d(g));
  return v;
}

struct Run {
  std::vector<EpochProgress> epochs;
  TrainState state;
  EpochStats eval;
  std::vector<float> probs;
  std::size_t device_bytes = 0;          // held by the engine after construction
  long long train_launches = 0, eval_launches = 0, predict_launches = 0;
};

// Trains `cfg` on n random examples for two epochs, the second resumed at batch resume_at (0: from
// its start), then evaluates and predicts; x_in_place and x_weight_gathered as given.
inline Run run(EngineConfig cfg, int n, int resume_at, bool x_in_place, uint64_t seed, bool weight_gathered = false) {
  cfg.x_in_place = x_in_place;
  cfg.x_weight_gathered = weight_gathered;
  const int input = cfg.spec.input;
  const auto images = bytes(std::size_t(n) * input, seed, 255), labels = bytes(std::size_t(n), seed + 1, cfg.spec.classes - 1);
  Run r;
  const std::size_t before = detail::g_device_bytes.load();
  auto gpu = make_cuda_engine(cfg);
  r.device_bytes = detail::g_device_bytes.load() - before;
  const int t = gpu->add_dataset({images.data(), labels.data(), n, input});
  long long l0 = g_emu_launches;
  for (int e = 0; e < 2; ++e) {
    EpochProgress p;
    p.next_batch = e == 1 ? resume_at : 0;
    gpu->train_steps(t, e, 1e-3f, p, nullptr);
    r.epochs.push_back(p);
  }
  r.train_launches = g_emu_launches - l0;
  gpu->get_state(r.state);
  l0 = g_emu_launches;
  r.eval = gpu->evaluate(t);
  r.eval_launches = g_emu_launches - l0;
  r.probs.assign(std::size_t(n) * std::size_t(cfg.spec.classes), -1.0f);
  l0 = g_emu_launches;
  gpu->predict(r.probs.data(), images.data(), n);
  r.predict_launches = g_emu_launches - l0;
  return r;
}

template <class T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The check above for one configuration; expect(ok, what) records a result.
template <class Expect>
void in_place_vs_gathered(const EngineConfig& cfg, int n, int resume_at, const std::string& tag, Expect expect) {
  const Run g = run(cfg, n, resume_at, false, 100 + uint64_t(n)), p = run(cfg, n, resume_at, true, 100 + uint64_t(n));
  if (cfg.kernels == Kernels::Tail) {  // in place, the weight GEMM's X gathered beside the tail kernel
    const Run w = run(cfg, n, resume_at, true, 100 + uint64_t(n), true);
    bool epochs = true;
    for (std::size_t e = 0; e < g.epochs.size(); ++e)
      epochs = epochs && same_bits(g.epochs[e].loss_sum, w.epochs[e].loss_sum) && g.epochs[e].correct == w.epochs[e].correct;
    expect(epochs && same_bits(g.state.params, w.state.params) && same_bits(g.state.m, w.state.m) &&
               same_bits(g.state.v, w.state.v) && same_bits(g.eval.loss, w.eval.loss) && same_bits(g.probs, w.probs),
           tag + ": weight GEMM on X gathered beside the tail kernel: every result bitwise");
    // (the training batch's floats: its evaluation reads X in place, so no chunk's)
    const std::size_t batch_floats = std::size_t(cfg.batch_size) * std::size_t(cfg.spec.input) * sizeof(float);
    expect(w.device_bytes - p.device_bytes == batch_floats && w.train_launches == g.train_launches &&
               p.eval_launches == w.eval_launches,
           cat(tag, ": weight GEMM on gathered X holds the float batch (", w.device_bytes, " vs ", p.device_bytes,
               " bytes in place) and moves the step's gather (", w.train_launches, " vs ", g.train_launches, " launches)"));
  }
  for (std::size_t e = 0; e < g.epochs.size(); ++e) {
    const EpochProgress &a = g.epochs[e], &b = p.epochs[e];
    expect(same_bits(a.loss_sum, b.loss_sum) && a.correct == b.correct && a.examples == b.examples &&
               a.next_batch == b.next_batch,
           cat(tag, ": epoch ", e, " loss bits ", a.loss_sum, " vs ", b.loss_sum, ", hits ", a.correct, " vs ", b.correct));
  }
  expect(g.state.step == p.state.step && same_bits(g.state.params, p.state.params), tag + ": parameters bitwise");
  expect(same_bits(g.state.m, p.state.m) && same_bits(g.state.v, p.state.v), tag + ": Adam moments bitwise");
  expect(same_bits(g.eval.loss, p.eval.loss) && g.eval.accuracy == p.eval.accuracy, tag + ": evaluation bitwise");
  expect(same_bits(g.probs, p.probs), tag + ": predictions bitwise");
  // Not a test that cannot fail: the run moved the parameters (a step that did nothing would match).
  std::vector<float> init;
  make_cpu_engine(cfg)->get_params(init);
  expect(!same_bits(init, p.state.params), tag + ": training changed the parameters");
  const int cap = std::max(cfg.batch_size, cfg.eval_rows);  // (evaluation's chunks: the gathered X holds one)
  const std::size_t floats = std::size_t(cap) * std::size_t(cfg.spec.input) * sizeof(float);
  expect(g.device_bytes - p.device_bytes == floats,
         cat(tag, ": no float batch in place (", g.device_bytes, " vs ", p.device_bytes, " bytes)"));
  const long long chunks = (n + cap - 1) / cap;
  const long long steps = g.epochs[0].next_batch + g.epochs[1].next_batch - resume_at;  // training steps run
  expect(g.train_launches - p.train_launches == steps && g.eval_launches - p.eval_launches == chunks &&
             g.predict_launches - p.predict_launches == chunks,
         cat(tag, ": launches train ", g.train_launches, "/", p.train_launches, " (", steps, " steps) eval ",
             g.eval_launches, "/", p.eval_launches, " predict ", g.predict_launches, "/", p.predict_launches));
}

}  // namespace emu_x
