// cuRAND's own Philox4x32-10 (curand_philox4x32_x.h, compiled here for the host: the header has a
// host branch) against mnist::rng, bitwise, on random counters and keys, through rng::draw's
// counter layout too. The device build of the same header is compared on a GPU by
// tests/gpu/test_random.cu; this proves the algorithm and layout on every machine.
#include <cuda_runtime.h>
#define QUALIFIERS static inline __host__ __device__
#include <curand_philox4x32_x.h>
#undef QUALIFIERS

#include <doctest/doctest.h>

#include <cstdint>
#include <random>

#include "kernels/philox.hpp"

using namespace mnist;

TEST_CASE("cuRAND's Philox4x32-10 (host build of its header) equals rng::philox4x32_10 bitwise") {
  std::mt19937_64 gen(99);
  int mismatches = 0;
  for (int i = 0; i < 100000; ++i) {
    const uint4 c = make_uint4(uint32_t(gen()), uint32_t(gen()), uint32_t(gen()), uint32_t(gen()));
    const uint2 k = make_uint2(uint32_t(gen()), uint32_t(gen()));
    const uint4 a = curand_Philox4x32_10(c, k);
    const rng::U4 b = rng::philox4x32_10({c.x, c.y, c.z, c.w}, k.x, k.y);
    mismatches += (a.x != b.x || a.y != b.y || a.z != b.z || a.w != b.w);
  }
  CHECK(mismatches == 0);
}

TEST_CASE("rng::draw uses the counter/key layout that the CUDA kernels pass to cuRAND") {
  // kernels/curand_draw.cuh: counter (i/4, ctr lo, ctr hi, stream<<16 | sub), key (seed lo, hi),
  // word i & 3. Any drift between the two layouts changes every dropout mask on the GPU.
  std::mt19937_64 gen(7);
  for (int n = 0; n < 20000; ++n) {
    const uint64_t seed = gen(), ctr = gen() >> (n % 64), i = gen() >> 20;
    const uint32_t stream = uint32_t(gen() % 5), sub = uint32_t(gen() % 70000);
    const uint4 c = make_uint4(uint32_t(i >> 2), uint32_t(ctr), uint32_t(ctr >> 32), (stream << 16) | (sub & 0xFFFFu));
    const uint4 r = curand_Philox4x32_10(c, make_uint2(uint32_t(seed), uint32_t(seed >> 32)));
    const uint32_t want = (i & 3) == 0 ? r.x : (i & 3) == 1 ? r.y : (i & 3) == 2 ? r.z : r.w;
    REQUIRE(rng::draw(seed, stream, sub, i, ctr) == want);
  }
}
