// The labels of a batch of B rows, placed where the engine's training step finds them when it reads
// them by index (kernels/labels.cuh): in a dataset-sized array, behind a random permutation, at the
// rows first + batch · stride + r of the epoch's order, with batch 2 and stride B + 5 so that a
// lookup that drops the first row, the batch offset or the stride lands elsewhere. Every other entry
// holds 255, a class no test's model has, so a wrong lookup makes that row's loss NaN (and its
// gradient and metrics change) instead of passing unseen. Host data: the emulation passes it as it
// is, a GPU test uploads labels and idx and one TrainCounters {batch}.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace mnist::test {

struct ScatteredLabels {
  std::vector<uint8_t> labels;  // [n]
  std::vector<int32_t> idx;     // [n], a permutation
  int64_t first = 3;
  int batch = 2;
  int stride = 0;
};

inline ScatteredLabels scatter_labels(const std::vector<uint8_t>& batch_labels, uint64_t seed) {
  ScatteredLabels s;
  const int B = int(batch_labels.size());
  s.stride = B + 5;
  const std::size_t n = std::size_t(s.first) + 3 * std::size_t(s.stride) + 2;
  s.idx.resize(n);
  std::iota(s.idx.begin(), s.idx.end(), 0);
  std::shuffle(s.idx.begin(), s.idx.end(), std::mt19937_64(seed));
  s.labels.assign(n, uint8_t(255));
  const int64_t base = s.first + int64_t(s.batch) * s.stride;
  for (int r = 0; r < B; ++r) s.labels[std::size_t(s.idx[std::size_t(base + r)])] = batch_labels[std::size_t(r)];
  return s;
}

}  // namespace mnist::test
