// The rounding of a GEMM input to its precision's format (kernels/precision.hpp), with the
// instructions the tensor-core path feeds from: cvt.rna.tf32.f32, or cvt.rn.bf16x2.f32 keeping the
// high half; the identity for FP32. One definition for the dense GEMMs (kernels/dense.cu) and the
// head kernel (kernels/head.cu), so that both round every input alike.
#pragma once

#include <cstdint>

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

}  // namespace mnist::cuda
