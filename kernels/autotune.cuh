// Autotuning: pick, on the device at hand, the fastest of several launch variants that compute the
// same thing, by running them (cuDNN's "benchmark" mode, XLA's GEMM autotuner). kernels/dense.cu
// uses it for the tile of each GEMM (the engine's --autotune); the size models of the launchers
// (pick_pipe, pick_simt) stay the first candidate and the fallback.
//
// One tuning of one operation (autotune::tune):
//   1. every candidate runs once on the operation's real operands; its outputs are compared, on the
//      device, with a copy of the first candidate's (the reference: the launcher's own model pick). A
//      candidate whose launch fails, or whose outputs are not finite where the reference's are, or
//      differ from it by more than kAgreement of the reference's largest magnitude, is rejected and
//      named in the record: a tile that is wrong on this device never runs. (Correct tiles differ
//      from each other only by float32 summation order, ~1e-6 relative; a wrong fragment layout,
//      descriptor or missing K slice is O(1).)
//   2. the candidates that agree are timed with CUDA events: kReps runs of kLaunches back-to-back
//      launches each, the median of the kReps per-launch times;
//   3. the fastest is kept, but the reference only loses to a candidate kMargin faster, so that
//      timing noise between two near-equal tiles does not change the choice (and with it, where
//      the candidates are not bitwise equal, the last bits) from one run to the next.
// Every candidate must be idempotent on the stream (overwrite its outputs, leave any scratch as it
// found it): the dense launchers are. Never inside a stream capture (the caller checks: events and
// copies cannot run there). Host-synchronous: a few hundred launches per operation, once.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mnist::cuda::autotune {

constexpr double kAgreement = 1e-3;  // of the reference output's largest magnitude
constexpr double kMargin = 0.03;     // a candidate replaces the reference only when >= 3 % faster
constexpr int kReps = 5, kLaunches = 3;

struct Candidate {
  std::string label;             // "pipe64x8 fold", "wgmma 64x64", ...
  std::function<void()> launch;  // enqueues the whole operation on the tuning stream
};

// A float array the operation writes (what the candidates are compared on).
struct Output {
  const float* data = nullptr;
  std::size_t count = 0;
};

// What one tuning found (the report lines of --autotune).
struct Record {
  std::string op;        // the operation and its shape: "forward 4096x784->128 tf32, X from the images, split K"
  std::string chosen;    // the candidate kept
  std::string model;     // the first candidate's label (the launcher's own pick)
  double chosen_us = 0;  // median µs per launch, of the kept one and of the reference (0: not timed)
  double model_us = 0;
  bool timed = true;                  // false: checked only (the times below are 0)
  double seconds = 0;                 // the tuning's own wall time (host)
  int candidates = 0;                 // tried
  std::vector<std::string> rejected;  // "label: why"
  std::vector<std::pair<std::string, double>> times;  // every agreeing candidate's median µs, in order
  // One line for a log: "<op>: <chosen>, <µs> (<model>: <µs>), <n> tried in <ms> ms [label µs,
  // ...]" (not timed: "<op>: <chosen>, <n> checked, not timed, in <ms> ms"), then "; REJECTED
  // <label>: <why>" for each rejected candidate.
  std::string line() const;
};

// Runs the tuning described above; returns the index of the candidate kept (0 when only the
// reference agrees or nothing is faster by kMargin) and fills rec (op is the caller's). timed
// false: steps 1 and 3 only, every candidate checked once, none timed, the reference kept (a
// self-test of the candidates: the engine's --autotune check).
int tune(const std::vector<Candidate>& candidates, const std::vector<Output>& outputs, cudaStream_t stream,
         Record& rec, bool timed = true);

// Testing hooks (tests/gpu/test_autotune.cu). time_us, when set, replaces step 2's events (the
// candidate still runs once for the check); corrupt, when set, is called with a candidate's label
// and its host copy of the outputs (flattened in Output order) before the comparison, so that a
// test can make a candidate disagree. Both empty by default. Not thread-safe.
struct TestHooks {
  std::function<double(const std::string& label)> time_us;
  std::function<void(const std::string& label, std::vector<float>& outputs)> corrupt;
};
void set_test_hooks(TestHooks hooks);

}  // namespace mnist::cuda::autotune
