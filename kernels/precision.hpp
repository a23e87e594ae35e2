// Precision of the GEMMs' inputs, shared by the CPU reference (layers/cpu_ops) and the CUDA
// kernels (kernels/dense.cu): both round every GEMM input element the same way, so that the
// kernel tests compare like with like. Accumulation is float32 in every mode; weights, biases and
// Adam state stay float32 (only the copies fed to the multiplier are rounded).
//
//   FP32  no rounding (the SIMT kernels, one FMA chain per output element).
//   TF32  1+8+10 bits: round to nearest, ties AWAY from zero, the rounding of PTX's
//         cvt.rna.tf32.f32 (the kernels call exactly that instruction, kernels/mma.cuh); the
//         result is a float whose 13 low mantissa bits are zero.
//   BF16  1+8+7 bits: round to nearest, ties to EVEN, the rounding of cvt.rn.bf16x2.f32
//         (__float2bfloat16_rn); the result is a float whose 16 low bits are zero.
// NaN stays NaN, ±Inf stays ±Inf; a finite value that rounds past the largest format value
// becomes ±Inf (as the hardware does).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MNIST_PREC_HD __host__ __device__ __forceinline__
#else
#define MNIST_PREC_HD inline
#endif

namespace mnist {

enum class GemmPrecision { FP32, TF32, BF16 };

// Unit roundoff of the rounded inputs: |round(x) - x| <= u·|x| (2^-11 for TF32's 10 stored
// mantissa bits, 2^-8 for BF16's 7; 0 for FP32, which does not round its inputs).
constexpr double input_unit_roundoff(GemmPrecision p) {
  return p == GemmPrecision::TF32 ? 1.0 / 2048.0 : p == GemmPrecision::BF16 ? 1.0 / 256.0 : 0.0;
}

MNIST_PREC_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#endif
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
MNIST_PREC_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#endif
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// TF32, ties away: adding half an ulp (bit 12) to the magnitude bits carries into the kept bits
// exactly when the dropped part is >= half, whatever the sign (IEEE is sign-magnitude).
MNIST_PREC_HD float round_tf32(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7F800000u) == 0x7F800000u) return x;  // Inf, NaN
  return bits_float((u + 0x1000u) & 0xFFFFE000u);
}

// BF16, ties to even: add 0x7FFF plus the lowest kept bit, then truncate.
MNIST_PREC_HD float round_bf16(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7F800000u) == 0x7F800000u) return x;  // Inf, NaN
  return bits_float((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

MNIST_PREC_HD float round_input(GemmPrecision p, float x) {
  return p == GemmPrecision::TF32 ? round_tf32(x) : p == GemmPrecision::BF16 ? round_bf16(x) : x;
}

}  // namespace mnist
