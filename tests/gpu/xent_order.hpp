// The order in which cuda::softmax_xent adds its rows' losses (the bitwise contract of
// kernels/softmax_xent.cuh), written out on the host: given the losses that the kernel computes
// for each row, the sum it must add to metrics->loss_sum, bit for bit. Used by the GPU test
// (test_softmax.cu) and the host emulation (emu/emu_kernels.cpp).
#pragma once

#include <cstddef>
#include <vector>

namespace mnist::test {

// Row losses l [B] -> the launch's addend: per block of rows_per_block rows (a multiple of 32;
// rows past B count as +0) a pairwise tree in each 32-row warp (step k = 1, 2, ..., 16 adds
// x[i + k] into x[i] for i a multiple of 2k), the warps' sums left to right; one block: that sum;
// several: 0 + S_0 + S_1 + ... left to right in block order. reverse_blocks adds the blocks in the
// opposite order (what a kernel that summed in finishing order could give): tests show their data
// tells the two apart.
inline double xent_contract_sum(const std::vector<double>& l, int rows_per_block, bool reverse_blocks = false) {
  const std::size_t R = std::size_t(rows_per_block), B = l.size();
  const std::size_t blocks = (B + R - 1) / R;
  std::vector<double> S(blocks);
  std::vector<double> x(R);
  for (std::size_t b = 0; b < blocks; ++b) {
    for (std::size_t i = 0; i < R; ++i) x[i] = b * R + i < B ? l[b * R + i] : 0.0;
    for (std::size_t k = 1; k < 32; k *= 2)
      for (std::size_t i = 0; i < R; i += 2 * k) x[i] += x[i + k];
    S[b] = x[0];
    for (std::size_t w = 1; w < R / 32; ++w) S[b] += x[32 * w];
  }
  if (blocks == 1) return S[0];
  double total = 0;
  for (std::size_t j = 0; j < blocks; ++j) total += S[reverse_blocks ? blocks - 1 - j : j];
  return total;
}

}  // namespace mnist::test
