// What the engine-level GPU tests (test_engine.cu, test_fused.cu) share: a random training problem
// (model spec, batch, seeded images and labels) and the parameter change of a run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "layers/engine.hpp"
#include "tests/gpu/gpu_test.cuh"

namespace mnist::test {

struct Problem {
  EngineConfig cfg;
  int n = 0;
  std::vector<uint8_t> images, labels;
  DataView view() const { return {images.data(), labels.data(), n, cfg.spec.input}; }
};

inline Problem make_problem(int input, std::vector<int> hidden, int classes, float dropout, int batch, int n, uint64_t seed) {
  Problem p;
  p.cfg.spec.input = input;
  p.cfg.spec.hidden = std::move(hidden);
  p.cfg.spec.classes = classes;
  p.cfg.spec.dropout = dropout;
  p.cfg.batch_size = batch;
  p.cfg.seed = seed;
  p.n = n;
  p.images = random_bytes(std::size_t(n) * std::size_t(input), seed + 1);
  p.labels = random_bytes(std::size_t(n), seed + 2, 0, classes - 1);
  return p;
}

inline std::vector<double> delta(const std::vector<float>& p, const std::vector<float>& p0) {
  std::vector<double> d(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) d[i] = double(p[i]) - double(p0[i]);
  return d;
}

}  // namespace mnist::test
