// Device side of kernels/philox.hpp through cuRAND: the same draws as mnist::rng::draw, computed
// with cuRAND's counter-based Philox4x32-10 (curand_Philox4x32_10 from curand_philox4x32_x.h) on
// the same counter / key layout, so that GPU dropout masks and shuffle keys are bit-identical to
// the CPU path's (proven by tests/gpu/test_random.cu).
#pragma once

#include <cuda_runtime.h>
#include <curand_philox4x32_x.h>

#include <cstdint>

#include "kernels/philox.hpp"

namespace mnist::cuda {

// The whole Philox block (four 32-bit words) that holds elements 4g .. 4g+3 of `stream`:
// counter = (g, ctr lo, ctr hi, stream << 16 | sub), key = (seed lo, seed hi), as rng::draw.
__device__ __forceinline__ uint4 philox_block(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t g,
                                              uint64_t ctr) {
  const uint4 c = make_uint4(uint32_t(g), uint32_t(ctr), uint32_t(ctr >> 32), (stream << 16) | (sub & 0xFFFFu));
  return curand_Philox4x32_10(c, make_uint2(uint32_t(seed), uint32_t(seed >> 32)));
}

__device__ __forceinline__ uint32_t block_word(const uint4& r, unsigned j) {
  return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w;
}

// rng::draw on the device: word i & 3 of the block of element i.
__device__ __forceinline__ uint32_t philox_draw(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t i,
                                                uint64_t ctr) {
  return block_word(philox_block(seed, stream, sub, i >> 2, ctr), unsigned(i & 3));
}

// rng::dropout_keep on the device.
__device__ __forceinline__ bool dropout_keep_dev(uint64_t seed, uint64_t step, uint32_t layer, uint64_t idx,
                                                 uint32_t threshold) {
  return philox_draw(seed, rng::kDropout, layer, idx, step) >= threshold;
}

}  // namespace mnist::cuda
