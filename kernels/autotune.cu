#include "kernels/autotune.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>

#include "runtime/cuda_check.cuh"
#include "runtime/error.hpp"
#include "runtime/stream.cuh"

namespace mnist::cuda::autotune {
namespace {

TestHooks g_hooks;

// The outputs, flattened in order, after the stream's work has completed.
std::vector<float> read_outputs(const std::vector<Output>& outputs, cudaStream_t stream) {
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::size_t total = 0;
  for (const Output& o : outputs) total += o.count;
  std::vector<float> host(total);
  std::size_t at = 0;
  for (const Output& o : outputs) {
    if (o.count) CUDA_CHECK(cudaMemcpy(host.data() + at, o.data, o.count * sizeof(float), cudaMemcpyDeviceToHost));
    at += o.count;
  }
  return host;
}

// Why c does not agree with the reference r ("" when it does): non-finite where r is finite, or a
// difference above kAgreement of r's largest finite magnitude.
std::string disagreement(const std::vector<float>& r, const std::vector<float>& c) {
  double scale = 0;
  for (float x : r)
    if (std::isfinite(x)) scale = std::max(scale, double(std::fabs(x)));
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (!std::isfinite(r[i])) continue;
    if (!std::isfinite(c[i])) return cat("output ", i, " is ", c[i], " where the reference has ", r[i]);
    const double d = std::fabs(double(c[i]) - double(r[i]));
    if (d > worst) worst = d, at = i;
  }
  if (worst > kAgreement * scale)
    return cat("output ", at, " differs by ", worst, " (", worst / std::max(scale, 1e-30),
               " of the largest reference magnitude ", scale, ")");
  return {};
}

// Median µs per launch of c: kReps rounds of kLaunches back-to-back launches between two events.
double time_us(const Candidate& c, cudaStream_t stream) {
  if (g_hooks.time_us) return g_hooks.time_us(c.label);
  Event start, stop;
  std::vector<double> us;
  for (int r = 0; r < kReps; ++r) {
    start.record(stream);
    for (int i = 0; i < kLaunches; ++i) c.launch();
    stop.record(stream);
    stop.synchronize();
    us.push_back(1000.0 * double(Event::elapsed_ms(start, stop)) / kLaunches);
  }
  std::nth_element(us.begin(), us.begin() + kReps / 2, us.end());
  return us[kReps / 2];
}

}  // namespace

std::string Record::line() const {
  if (!timed) {
    std::string s = cat(op, ": ", chosen, ", ", candidates, " checked, not timed");
    for (const std::string& r : rejected) s += cat("; REJECTED ", r);
    return s;
  }
  char kept[96];
  std::snprintf(kept, sizeof kept, "%.1f µs (%s: %.1f µs)", chosen_us, model.c_str(), model_us);
  std::string s = cat(op, ": ", chosen, ", ", kept, ", ", candidates, " tried [");
  for (std::size_t i = 0; i < times.size(); ++i) {
    char t[64];
    std::snprintf(t, sizeof t, "%s%s %.1f", i ? ", " : "", times[i].first.c_str(), times[i].second);
    s += t;
  }
  s += "]";
  for (const std::string& r : rejected) s += cat("; REJECTED ", r);
  return s;
}

int tune(const std::vector<Candidate>& candidates, const std::vector<Output>& outputs, cudaStream_t stream,
         Record& rec, bool timed) {
  MNIST_CHECK(!candidates.empty(), "autotune: no candidate");
  rec.candidates = int(candidates.size());
  rec.model = candidates[0].label;
  rec.rejected.clear();
  rec.times.clear();
  rec.timed = timed;
  candidates[0].launch();  // the reference (its errors are the caller's: no fallback below it)
  const std::vector<float> reference = read_outputs(outputs, stream);
  std::vector<double> us(candidates.size(), -1.0);  // -1: rejected
  us[0] = timed ? time_us(candidates[0], stream) : 0.0;
  for (std::size_t i = 1; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    std::string why;
    try {
      c.launch();
      std::vector<float> out = read_outputs(outputs, stream);
      if (g_hooks.corrupt) g_hooks.corrupt(c.label, out);
      why = disagreement(reference, out);
    } catch (const std::exception& e) {  // a launch the device refuses (resources): not this tile here
      (void)cudaGetLastError();
      why = cat("launch failed: ", e.what());
    }
    if (!why.empty()) {
      rec.rejected.push_back(cat(c.label, ": ", why));
      continue;
    }
    us[i] = timed ? time_us(c, stream) : 0.0;
  }
  for (std::size_t i = 0; i < candidates.size(); ++i)
    if (us[i] >= 0) rec.times.emplace_back(candidates[i].label, us[i]);
  std::size_t best = 0;
  for (std::size_t i = 1; timed && i < candidates.size(); ++i) {
    if (us[i] < 0) continue;
    const bool beats = best == 0 ? us[i] < (1.0 - kMargin) * us[0] : us[i] < us[best];
    if (beats) best = i;
  }
  rec.chosen = candidates[best].label;
  rec.chosen_us = us[best];
  rec.model_us = us[0];
  return int(best);
}

void set_test_hooks(TestHooks hooks) { g_hooks = std::move(hooks); }

}  // namespace mnist::cuda::autotune
