// The CPU reference of cuda::head_train (kernels/head.cuh), in double, with a rounding bound for
// every output element. Used by the GPU test (test_head.cu) and the host emulation (emu_kernels).
//
// The GEMM inputs are rounded as the kernel rounds them (round_input, kernels/precision.hpp: the
// bits of cvt.rna.tf32 / cvt.rn.bf16x2, proven by test_dense_tc.cu), so every product is exact in
// float and in double; what is left is the kernel's float32 summation. Each output is one chain of
// fmaf (or additions) in some fixed order, n - 1 roundings deep for a sum of n terms at most, plus
// the epilogue: Higham's γ_n = n·u/(1 - n·u), u = 2⁻²⁴, times Σ|terms|:
//   logits [B,N]  Σ_k round(a)·round(w) (K terms) + b: γ_{K+1}·(Σ|a·w| + |b|);
//   dA [B,K]      (Σ_n round(dz)·round(w)) · mask_scale where A > 0, else exactly 0: the sum's
//                 γ_N, scaled, and one rounding of the product: γ_{N+1}·scale·Σ|dz·w| + u·|ref|;
//   dW [N,K], db  Σ_rows round(dz)·round(a) (and Σ round(dz)): the rows of a block in one chain,
//                 then the blocks' partials added in order: a term passes at most (rows of its
//                 block) + (blocks) <= B + 1 roundings: γ_{B+1}·Σ|dz·a|.
// dZ is taken from the kernel (its dlogits output): softmax_xent's arithmetic, checked on its own
// against cpu::softmax_xent and bitwise against cuda::softmax_xent by the tests, so these
// references are those of the same dZ (a reference dZ one ulp apart could round to another TF32 or
// BF16 value and move a product by 2⁻¹¹ or 2⁻⁸ relative, far outside these bounds).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/precision.hpp"

namespace mnist::test {

inline double head_gamma(int n) {
  const double u = 1.0 / 16777216.0;
  return n * u / (1.0 - n * u);
}

struct HeadReference {
  std::vector<double> logits, logits_bound;  // [B,N]
  std::vector<double> dA, dA_bound;          // [B,K]
  std::vector<double> dW, dW_bound;          // [N,K]
  std::vector<double> db, db_bound;          // [N]
};

// A [B,K], W [N,K], b [N] (the inputs), dz [B,N] (the kernel's dlogits, unrounded).
inline HeadReference head_reference(const std::vector<float>& A, const std::vector<float>& W,
                                    const std::vector<float>& b, const std::vector<float>& dz, int B, int K, int N,
                                    float mask_scale, GemmPrecision prec) {
  const double u = 1.0 / 16777216.0;
  const auto round_all = [prec](const std::vector<float>& v) {
    std::vector<double> o(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) o[i] = double(round_input(prec, v[i]));
    return o;
  };
  const std::vector<double> ra = round_all(A), rw = round_all(W), rdz = round_all(dz);
  const std::size_t sB = std::size_t(B), sK = std::size_t(K), sN = std::size_t(N);
  HeadReference h;
  h.logits.resize(sB * sN);
  h.logits_bound.resize(sB * sN);
  for (std::size_t r = 0; r < sB; ++r)
    for (std::size_t n = 0; n < sN; ++n) {
      double s = 0, mag = std::fabs(double(b[n]));
      for (std::size_t k = 0; k < sK; ++k) {
        s += ra[r * sK + k] * rw[n * sK + k];
        mag += std::fabs(ra[r * sK + k] * rw[n * sK + k]);
      }
      h.logits[r * sN + n] = s + double(b[n]);
      h.logits_bound[r * sN + n] = head_gamma(K + 1) * mag;
    }
  h.dA.resize(sB * sK);
  h.dA_bound.resize(sB * sK);
  for (std::size_t r = 0; r < sB; ++r)
    for (std::size_t k = 0; k < sK; ++k) {
      double s = 0, mag = 0;
      for (std::size_t n = 0; n < sN; ++n) {
        s += rdz[r * sN + n] * rw[n * sK + k];
        mag += std::fabs(rdz[r * sN + n] * rw[n * sK + k]);
      }
      const bool kept = A[r * sK + k] > 0.0f;
      const double ref = kept ? s * double(mask_scale) : 0.0;
      h.dA[r * sK + k] = ref;
      h.dA_bound[r * sK + k] = kept ? head_gamma(N + 1) * double(mask_scale) * mag + u * std::fabs(ref) : 0.0;
    }
  h.dW.assign(sN * sK, 0.0);
  h.dW_bound.assign(sN * sK, 0.0);
  h.db.assign(sN, 0.0);
  h.db_bound.assign(sN, 0.0);
  for (std::size_t r = 0; r < sB; ++r)
    for (std::size_t n = 0; n < sN; ++n) {
      const double d = rdz[r * sN + n];
      h.db[n] += d;
      h.db_bound[n] += std::fabs(d);
      for (std::size_t k = 0; k < sK; ++k) {
        h.dW[n * sK + k] += d * ra[r * sK + k];
        h.dW_bound[n * sK + k] += std::fabs(d * ra[r * sK + k]);
      }
    }
  for (double& x : h.dW_bound) x *= head_gamma(B + 1);
  for (double& x : h.db_bound) x *= head_gamma(B + 1);
  return h;
}

}  // namespace mnist::test
