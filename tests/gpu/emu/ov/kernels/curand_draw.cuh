#pragma once
#include <cuda_runtime.h>
#include "kernels/philox.hpp"
namespace mnist::cuda {
inline uint4 philox_block(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t g, uint64_t ctr) {
  rng::U4 r = rng::philox4x32_10(rng::U4{uint32_t(g), uint32_t(ctr), uint32_t(ctr >> 32), (stream << 16) | (sub & 0xFFFFu)},
                                 uint32_t(seed), uint32_t(seed >> 32));
  return {r.x, r.y, r.z, r.w};
}
inline uint32_t block_word(const uint4& r, unsigned j) { return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w; }
inline uint32_t philox_draw(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t i, uint64_t ctr) {
  return block_word(philox_block(seed, stream, sub, i >> 2, ctr), unsigned(i & 3));
}
inline bool dropout_keep_dev(uint64_t seed, uint64_t step, uint32_t layer, uint64_t idx, uint32_t threshold) {
  return philox_draw(seed, rng::kDropout, layer, idx, step) >= threshold;
}
}
