// The order in which cuda::softmax_xent adds its rows' losses (the bitwise contract of
// kernels/softmax_xent.cuh), written out on the host: from the losses the kernel computes for each
// row, the sum it must add to metrics->loss_sum, bit for bit. Used by the GPU test
// (test_softmax.cu) and the host emulation (emu/emu_kernels.cpp).
#pragma once

#include <cstddef>
#include <vector>

namespace mnist::test {

// Row losses l [B] -> the block sums S_b: per block of rows_per_block rows (a multiple of 32; rows
// past B count as +0) a pairwise tree in each 32-row warp (step k = 1, 2, ..., 16 adds x[i + k]
// into x[i] for i a multiple of 2k), then the warps' sums left to right.
inline std::vector<double> xent_block_sums(const std::vector<double>& l, int rows_per_block) {
  const std::size_t R = std::size_t(rows_per_block), B = l.size();
  std::vector<double> S((B + R - 1) / R), x(R);
  for (std::size_t b = 0; b < S.size(); ++b) {
    for (std::size_t i = 0; i < R; ++i) x[i] = b * R + i < B ? l[b * R + i] : 0.0;
    for (std::size_t k = 1; k < 32; k *= 2)
      for (std::size_t i = 0; i < R; i += 2 * k) x[i] += x[i + k];
    S[b] = x[0];
    for (std::size_t w = 1; w < R / 32; ++w) S[b] += x[32 * w];
  }
  return S;
}

// Block sums S -> the launch's addend: one block, S_0; several, 0 + S_0 + S_1 + ... left to right
// in block order. reverse_blocks adds them in the opposite order (what a kernel that added the
// blocks as they finish could give): tests use it to show that their data tells the orders apart.
inline double xent_launch_sum(const std::vector<double>& S, bool reverse_blocks = false) {
  if (S.size() == 1) return S[0];
  double total = 0;
  for (std::size_t j = 0; j < S.size(); ++j) total += S[reverse_blocks ? S.size() - 1 - j : j];
  return total;
}

}  // namespace mnist::test
