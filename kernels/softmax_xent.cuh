// Fused softmax + sparse cross-entropy (loss, gradient and correct count in one pass), and the
// row-wise softmax used for predictions. Twins of cpu::softmax_xent / cpu::softmax.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/labels.cuh"
#include "kernels/metrics.cuh"

namespace mnist::cuda {

// softmax_xent runs one thread per row, kXentRowsPerBlock rows per block: block b holds rows
// [b·256, b·256 + 256), thread t of it row b·256 + t.
constexpr int kXentRowsPerBlock = 256;

// Blocks of a softmax_xent launch over B rows: the number of per-block slots its scratch needs.
constexpr int softmax_xent_blocks(int B) { return B <= 0 ? 0 : (B + kXentRowsPerBlock - 1) / kXentRowsPerBlock; }

// Where the blocks of one softmax_xent launch meet: one Metrics slot per block and a completion
// counter. Owned by the caller (sized once, softmax_xent_blocks of the most rows it will pass);
// *done must be 0 before the first launch, and every launch leaves it 0 again (the last block
// resets it), so a captured graph can replay it. Launches that may run at the same time (other
// streams) need scratches of their own. Unused (may be empty) when the launch is one block.
struct XentScratch {
  Metrics* blocks = nullptr;  // [capacity]
  unsigned* done = nullptr;   // [1]
  int capacity = 0;
};

// Over logits [B,C] and the labels of its B rows (each < C; kernels/labels.cuh): adds Σ_rows (logsumexp(z) - z[label]) to
// metrics->loss_sum and the number of rows whose argmax (first maximum) equals the label to
// metrics->correct (device accumulators, see metrics.cuh); when dlogits [B,C] is not null it
// receives (softmax(z) - onehot(label)) * grad_scale (dlogits must not alias logits). Each row is
// xent_row (step_math.cuh, also the fused step's): exponents of z - max(z) <= 0, a label >= C
// makes that row's loss NaN. (The CPU twin returns the loss and writes *correct; here both
// accumulate on the device.)
//
// Bitwise contract: the loss added is a function of the rows' losses l_r and of B only (not of
// the order in which the blocks run or finish, nor of the device), summed in double as
//   lane sums   P_{b,w} = the pairwise tree over the 32 rows b·256 + 32w + i (i = 0..31, rows
//                         >= B count as +0): step k = 1, 2, 4, 8, 16 replaces x_i by
//                         x_i + x_{i+k} for every i that is a multiple of 2k; P = x_0;
//   block sums  S_b = (((P_{b,0} + P_{b,1}) + P_{b,2}) + ...) + P_{b,7}  (cub::BlockReduce's
//                     default order: B <= 256 gives the bits of the one-block kernel before it);
//   the launch  metrics->loss_sum += S_0 when there is one block, else
//               metrics->loss_sum += (((0 + S_0) + S_1) + ...) + S_{n-1} in block order,
// added by the last block to finish (its count on scratch.done): each block writes S_b to
// scratch.blocks[b] first. The correct count is an integer sum (any order). One launch.
void softmax_xent(float* dlogits, Metrics* metrics, const XentScratch& scratch, const float* logits,
                  const LabelInput& labels, int B, int C, float grad_scale, cudaStream_t stream);

// probs [B,C] = row-wise softmax of logits [B,C]. probs may alias logits.
void softmax(float* probs, const float* logits, int B, int C, cudaStream_t stream);

}  // namespace mnist::cuda
