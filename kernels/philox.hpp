// Counter-based random numbers shared by the CPU reference path and the CUDA kernels.
//
// philox4x32_10 is the Philox-4x32 generator with 10 rounds (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC'11), the same function cuRAND's Philox4_32_10 computes. Every
// random decision of the engine is a pure function of (seed, stream, counter): dropout masks,
// the per-epoch shuffle keys and the weight initialisation. The CPU and GPU paths therefore draw
// bit-identical numbers, masks can be regenerated in the backward pass instead of stored, and a
// run is reproducible from its seed alone.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MNIST_HD __host__ __device__ __forceinline__
#else
#define MNIST_HD inline
#endif

namespace mnist::rng {

struct U4 {
  uint32_t x, y, z, w;
};

MNIST_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// Philox4x32-10's round multipliers and key increments (also the CPU's vectorised dropout draws).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

// Philox4x32-10: counter c, key (k0, k1) -> four 32-bit words.
MNIST_HD U4 philox4x32_10(U4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = kPhiloxM0, M1 = kPhiloxM1, W0 = kPhiloxW0, W1 = kPhiloxW1;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(M0, c.x, &hi0);
    uint32_t lo1 = mulhilo(M1, c.z, &hi1);
    c = U4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += W0;
    k1 += W1;
  }
  return c;
}

// Streams keep the users of one seed apart.
enum Stream : uint32_t {
  kDropout = 1,  // counter = (element/4, step lo, step hi, kDropout<<16 | layer)
  kShuffle = 2,  // counter = (index/4, epoch, 0, kShuffle<<16)
  kInit = 3,     // counter = (element/4, 0, 0, kInit<<16 | tensor)
  kSplit = 4,    // counter = (index/4, 0, 0, kSplit<<16)
};

// The counter of block q of a stream (Stream's layouts).
MNIST_HD U4 block_counter(uint32_t stream, uint32_t sub, uint64_t q, uint64_t ctr) {
  return U4{uint32_t(q), uint32_t(ctr), uint32_t(ctr >> 32), (stream << 16) | (sub & 0xFFFFu)};
}

// Block q of the given stream: the draws of its elements 4q .. 4q + 3, in order.
MNIST_HD U4 draw_block(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t q, uint64_t ctr) {
  return philox4x32_10(block_counter(stream, sub, q, ctr), uint32_t(seed), uint32_t(seed >> 32));
}

// Word `i & 3` of the block that holds element i of the given stream.
MNIST_HD uint32_t draw(uint64_t seed, uint32_t stream, uint32_t sub, uint64_t i, uint64_t ctr) {
  const U4 r = draw_block(seed, stream, sub, i >> 2, ctr);
  switch (i & 3) {
    case 0: return r.x;
    case 1: return r.y;
    case 2: return r.z;
    default: return r.w;
  }
}

// Integer threshold for dropout probability p in [0,1): an element is kept iff its 32-bit draw
// is >= threshold, so P(keep) = 1 - p to within 2^-32, with no float rounding in the decision.
MNIST_HD uint32_t dropout_threshold(float p) {
  double t = double(p) * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : uint32_t(t);
}

// Dropout decision for element `idx` of layer `layer` at optimiser step `step`.
MNIST_HD bool dropout_keep(uint64_t seed, uint64_t step, uint32_t layer, uint64_t idx,
                           uint32_t threshold) {
  return draw(seed, kDropout, layer, idx, step) >= threshold;
}

// Sort key of training example i in epoch `epoch`: the epoch's order is the examples sorted by
// (key, i), which a stable radix sort on the GPU and std::stable_sort on the CPU both produce.
MNIST_HD uint32_t shuffle_key(uint64_t seed, uint64_t epoch, uint64_t i) {
  return draw(seed, kShuffle, 0, i, epoch);
}

// Uniform float in [0, 1) with 24 random bits.
MNIST_HD float to_unit(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }

}  // namespace mnist::rng
