// The rounding of a GEMM input to its precision's format (kernels/precision.hpp), with the
// instructions the tensor-core path feeds from: cvt.rna.tf32.f32, or cvt.rn.bf16x2.f32 keeping the
// high half; the identity for FP32. One definition for the dense GEMMs (kernels/dense.cu) and the
// head, tail and fused kernels, so that all of them round every input alike.
#pragma once

#include <cstdint>

#include "kernels/gather.cuh"
#include "kernels/mma.cuh"
#include "kernels/precision.hpp"

namespace mnist::cuda {

template <GemmPrecision PREC>
__device__ __forceinline__ float round_gemm_input(float v) {
  if constexpr (PREC == GemmPrecision::TF32)
    return bits_float(to_tf32(v));
  else if constexpr (PREC == GemmPrecision::BF16)
    return bits_float(pack_bf16x2(0.0f, v) & 0xFFFF0000u);
  else
    return v;
}

// The same with the precision known only at run time (a launch argument: the optimizer's rounded
// copy of the weights, kernels/adam.cuh). One uniform branch, then the instruction above.
__device__ __forceinline__ float round_gemm_input(GemmPrecision prec, float v) {
  return prec == GemmPrecision::TF32   ? round_gemm_input<GemmPrecision::TF32>(v)
         : prec == GemmPrecision::BF16 ? round_gemm_input<GemmPrecision::BF16>(v)
                                       : v;
}

// A GEMM input element kept as its raw 32 bits until it is stored, by the slice loaders that issue
// every load of a slice before they convert any (load_slice, kernels/dense_impl.cuh; tile_chain,
// kernels/fused_step.cu): a float's bits, or a pixel's byte (pixel_value; 255 gives 1.0f exactly,
// the ones column), made into the input at PREC. A raw 0 makes +0, the elements outside the operand.
template <GemmPrecision PREC>
__device__ __forceinline__ float gemm_input_from_raw(uint32_t raw, bool pixel) {
  return round_gemm_input<PREC>(pixel ? pixel_value(uint8_t(raw)) : bits_float(raw));
}

// A hidden activation as a kernel keeps it for both its uses, the next GEMM's input and the
// ReLU/dropout mask of the backward: round(a), and -0 for an a > 0 that rounds to 0, so that the
// mask (the raw a > 0) survives in the sign bit: mask = kept(stored) = bits != 0 (a >= 0 always).
// At FP32 the stored value is a itself and kept(a) is a > 0. (kernels/tail.cu, kernels/fused_step.cu)
template <GemmPrecision PREC>
__device__ __forceinline__ float stored_activation(float a) {
  const float q = round_gemm_input<PREC>(a);
  return a > 0.0f && q == 0.0f ? -0.0f : q;
}
__device__ __forceinline__ bool kept(float stored) { return float_bits(stored) != 0u; }

// The same for an input staged from a float a of any sign (the tail kernel's A0, read from global
// memory; kernels/tail.cu): round(a) with its zeros re-signed at TF32/BF16, -0 for an a > 0 that
// rounds to 0 and +0 for every other zero (a -0 or a tiny negative a), so that staged_positive(stored)
// is the raw a > 0 for every a (NaN: false), and the mask needs no second read of a. A product with
// a re-signed zero is a signed zero, as with stored_activation. At FP32 the stored value is a itself.
template <GemmPrecision PREC>
__device__ __forceinline__ float staged_input(float a) {
  const float q = round_gemm_input<PREC>(a);
  if constexpr (PREC == GemmPrecision::FP32)
    return q;
  else
    return q != 0.0f ? q : (a > 0.0f ? -0.0f : 0.0f);
}
template <GemmPrecision PREC>
__device__ __forceinline__ bool staged_positive(float stored) {
  if constexpr (PREC == GemmPrecision::FP32)
    return stored > 0.0f;
  else
    return stored > 0.0f || float_bits(stored) == 0x80000000u;
}

}  // namespace mnist::cuda
