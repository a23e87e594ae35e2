// The tensor-core instructions of the dense GEMMs (kernels/dense.cu), each wrapped in one small
// device function so that the host emulation (tests/gpu/emu/ov/kernels/mma.cuh) can replace them
// with a model of the same fragment layout. sm_80+ (the H100/H200 are sm_90).
//
// Fragment layout (PTX ISA, "Matrix fragments for mma.m16n8k8" / "mma.m16n8k16"): lane = 4·g + t
// (g = groupID = lane/4 in 0..7, t = threadID_in_group = lane%4 in 0..3).
//   mma_tf32_m16n8k8   D[16x8] += A[16x8] · B[8x8], one tf32 per register:
//     a[0] = A[g][t]    a[1] = A[g+8][t]    a[2] = A[g][t+4]    a[3] = A[g+8][t+4]
//     b[0] = B[t][g]    b[1] = B[t+4][g]
//   mma_bf16_m16n8k16  D[16x8] += A[16x16] · B[16x8], two bf16 per register (lower k in the low half):
//     a[0] = A[g][2t,2t+1]    a[1] = A[g+8][2t,2t+1]    a[2] = A[g][2t+8,2t+9]    a[3] = A[g+8][2t+8,2t+9]
//     b[0] = B[2t,2t+1][g]    b[1] = B[2t+8,2t+9][g]
//   both: d[0] = D[g][2t]   d[1] = D[g][2t+1]   d[2] = D[g+8][2t]   d[3] = D[g+8][2t+1]
// All 32 lanes of the warp must call them together (.sync.aligned). Accumulation is float32.
//
//   ldmatrix_x4 (ldmatrix.sync.aligned.m8n8.x4.shared.b16) loads four 8x8 matrices of 16-bit
//   elements, i.e. four blocks of 8 rows x 16 bytes, from shared memory: lane l gives the address
//   of row l%8 of block l/8 (16-byte aligned), and lane 4g+t receives in r[q] the 32-bit word t of
//   row g of block q (bytes 4t..4t+3: the b16 pair (2t, 2t+1)). On 32-bit data a block is 8 rows x
//   4 words, and the word lane 4g+t gets is (row g, column t): the TF32 layout above. So for a
//   k-fast tile S[row][k] of floats (fragment rounding still to be applied):
//     A of m16n8k8 at rows r0.., k ks..:  block q = rows r0 + 8·(q%2), columns ks + 4·(q/2)
//       -> r = {a[0], a[1], a[2], a[3]}
//     B of two n8 tiles (columns c0.., c0+8..) at k ks..: block q = rows c0 + 8·(q/2), columns
//       ks + 4·(q%2) -> r = {b_j[0], b_j[1], b_{j+1}[0], b_{j+1}[1]}
//   Each block is read in one phase (8 rows x 16 bytes): conflict-free when the 8 row addresses
//   fall on 8 distinct 16-byte bank groups (row stride ≡ 4 words mod 32, e.g. 36 floats).
#pragma once

#include <cstdint>

namespace mnist::cuda {

// x rounded to TF32 (nearest, ties away), returned as the 32-bit pattern mma's .tf32 reads.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// (lo, hi) rounded to BF16 (nearest, ties to even) and packed: lo in bits 0..15, hi in 16..31.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const float* row) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace mnist::cuda
