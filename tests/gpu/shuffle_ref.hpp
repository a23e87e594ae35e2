// The reference permutation of cuda::shuffle_order under the tests' key mask (ShuffleTestHooks,
// kernels/gather.cuh): 0..n-1 stably sorted by rng::shuffle_key(seed, epoch, i) & mask. With the
// full mask it is cpu::shuffle_order's (the tests check that too); a mask of few bits gives equal
// keys and crowded buckets, where only the index orders a tie.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/philox.hpp"

namespace mnist::test {

inline std::vector<int32_t> shuffle_reference(int n, uint64_t seed, uint64_t epoch, uint32_t mask) {
  std::vector<uint32_t> key(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) key[std::size_t(i)] = rng::shuffle_key(seed, epoch, uint64_t(i)) & mask;
  std::vector<int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return key[std::size_t(a)] < key[std::size_t(b)]; });
  return order;
}

// The masks the tests run: every bit (random keys), the top 4 bits only (16 distinct keys, each
// bucket holding one of them n/16 times), the low 16 bits only (every key in bucket 0, nearly all
// distinct), none (one key: a single bucket of n ties).
inline std::vector<uint32_t> shuffle_test_masks() { return {0xffffffffu, 0xf0000000u, 0x0000ffffu, 0u}; }

}  // namespace mnist::test
