// Host emulation of kernels/mma.cuh: the same functions, with mma.sync modelled as the
// warp-collective it is. Each lane deposits its fragment registers in its warp's scratch, the warp
// meets at a barrier (32 lanes: the warp of threadIdx.x / 32), the first lane past it rebuilds the
// whole A and B tiles from all 32 lanes' registers by the PTX ISA's fragment tables (written out
// below from the documented "which lane and register holds which element", independently of how
// dense.cu assembles its fragments) and every lane computes its own four D elements from them. A kernel that puts an
// element in the wrong register or lane therefore multiplies the wrong numbers here, as it would on the GPU.
//
// Numerics: the inputs are decoded as the hardware reads them (TF32: the 19 high bits of the
// register; BF16: 16-bit halves), the products are exact in float, and they are added to C in
// ascending k with float FMAs. The hardware's accumulation order/rounding inside one mma is not
// documented; the tests' tolerances cover any order (see emu_tc.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>

#include <cuda_runtime.h>

#include "kernels/precision.hpp"

namespace mnist::cuda {
namespace emu_mma {

// Two scratch buffers per warp (emu::group_state: one per warp of the running block), used by
// alternate calls: a lane can only write buffer c%2 again (call c+2) after passing call c+1's
// barrier, which every lane reaches only after it finished reading call c's registers, so one
// barrier per mma suffices. The warp's barrier is emu::group_wait(32).
struct Scratch {
  uint32_t a[2][32][4];
  uint32_t b[2][32][2];
  // The whole A and B tiles of call c, rebuilt from the 32 lanes' registers by the first lane past
  // its barrier (fibers run one at a time) and read by all: decoded[c % 2] = c + 1. Rewritten only
  // at call c + 2, after every lane has passed call c + 1's barrier.
  float A[2][16][16], B[2][16][8];
  unsigned decoded[2];
};
struct Calls {
  unsigned n;  // this lane's collective count (mma and ldmatrix apart); the same for every lane of the warp
};
struct LdmatrixCalls {
  unsigned n;
};

inline float tf32_value(uint32_t r) { return bits_float(r & 0xFFFFE000u); }
inline float bf16_value(uint32_t r, int half) { return bits_float(half ? (r & 0xFFFF0000u) : (r << 16)); }

// D += A·B for one warp; K = 8 (TF32) or 16 (BF16).
inline void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], bool bf16) {
  if (blockDim.x % 32 != 0 || blockDim.y != 1 || blockDim.z != 1) {
    std::fprintf(stderr, "emu mma: block of %u threads is not whole warps\n", blockDim.x);
    std::abort();
  }
  const int lane = int(threadIdx.x % 32);
  const unsigned call = ::emu::lane_local<Calls>().n++, buf = call % 2;
  Scratch& sc = ::emu::group_state<Scratch>(32);
  for (int i = 0; i < 4; ++i) sc.a[buf][lane][i] = a[i];
  for (int i = 0; i < 2; ++i) sc.b[buf][lane][i] = b[i];
  ::emu::group_wait(32, "an mma.sync (warp collective)");
  const auto& sa = sc.a[buf];
  const auto& sb = sc.b[buf];

  const int K = bf16 ? 16 : 8;
  auto& A = sc.A[buf];
  auto& B = sc.B[buf];
  if (sc.decoded[buf] != call + 1) {
    sc.decoded[buf] = call + 1;
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;  // groupID, threadID_in_group
      if (!bf16) {
        // m16n8k8 .tf32: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (t, g), b1 (t+4, g)
        for (int i = 0; i < 4; ++i) A[g + (i % 2) * 8][t + (i / 2) * 4] = tf32_value(sa[l][i]);
        for (int i = 0; i < 2; ++i) B[t + i * 4][g] = tf32_value(sb[l][i]);
      } else {
        // m16n8k16 .bf16, elements a0..a7 (two per register, a_{2i} in register i's low half):
        // row g for a0,a1,a4,a5, g+8 otherwise; col 2t + (j&1), +8 for j >= 4.
        for (int j = 0; j < 8; ++j) {
          const int row = g + ((j % 4) >= 2 ? 8 : 0), col = 2 * t + (j & 1) + (j >= 4 ? 8 : 0);
          A[row][col] = bf16_value(sa[l][j / 2], j & 1);
        }
        // b0..b3: row 2t + (j&1), +8 for j >= 2; col g.
        for (int j = 0; j < 4; ++j) B[2 * t + (j & 1) + (j >= 2 ? 8 : 0)][g] = bf16_value(sb[l][j / 2], j & 1);
      }
    }
  }
  // c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + (i / 2) * 8, col = 2 * t + (i % 2);
    float acc = d[i];
    for (int k = 0; k < K; ++k) acc = std::fma(A[row][k], B[k][col], acc);
    d[i] = acc;
  }
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 as the warp collective it is: each lane deposits the
// row address it gives (lane l: row l%8 of block l/8), the warp meets, and every lane gathers by
// the PTX ISA's table ("Matrix fragment for ldmatrix": lane 4g+t holds, in register q, the 32-bit
// word t of row g of block q), written here independently of how dense.cu computes its addresses.
// Rows must be 16-byte aligned (else abort, as the instruction requires). Own scratch and call
// count (alternate buffers, as for mma: every collective of the warp passes the same barrier).
struct RowScratch {
  const float* row[2][32];
};
inline std::atomic<long long> ldmatrix_calls{0};

inline void ldmatrix_x4(uint32_t (&r)[4], const float* row) {
  if (reinterpret_cast<std::uintptr_t>(row) % 16) {
    std::fprintf(stderr, "emu ldmatrix: row address %p not 16-byte aligned\n", static_cast<const void*>(row));
    std::abort();
  }
  const int lane = int(threadIdx.x % 32);
  const unsigned buf = ::emu::lane_local<LdmatrixCalls>().n++ % 2;
  RowScratch& sc = ::emu::group_state<RowScratch>(32);
  sc.row[buf][lane] = row;
  if (lane == 0) ++ldmatrix_calls;
  ::emu::group_wait(32, "an ldmatrix (warp collective)");
  const int g = lane / 4, t = lane % 4;
  for (int q = 0; q < 4; ++q) {
    const float* src = sc.row[buf][8 * q + g];  // row g of block q was given by lane 8q + g
    // A float load (not a memcpy of the bytes), so that the bank model sees it: block q is one
    // request of the 32 lanes, the phase the device reads it in (8 rows x 16 bytes).
    const float v = src[t];
    uint32_t w;
    std::memcpy(&w, &v, 4);
    r[q] = w;
  }
}

}  // namespace emu_mma

inline std::atomic<long long>& g_emu_ldmatrix_calls = emu_mma::ldmatrix_calls;
inline void ldmatrix_x4(uint32_t (&r)[4], const float* row) { emu_mma::ldmatrix_x4(r, row); }

inline uint32_t to_tf32(float x) { return float_bits(round_tf32(x)); }

inline uint32_t pack_bf16x2(float lo, float hi) {
  return (float_bits(round_bf16(hi)) & 0xFFFF0000u) | (float_bits(round_bf16(lo)) >> 16);
}

inline void mma_tf32_m16n8k8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  emu_mma::mma(d, a, b, false);
}
inline void mma_bf16_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  emu_mma::mma(d, a, b, true);
}

}  // namespace mnist::cuda
