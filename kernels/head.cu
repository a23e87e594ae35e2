#include "kernels/head.cuh"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/gemm_round.cuh"
#include "kernels/load_l2.cuh"
#include "kernels/mma.cuh"
#include "kernels/row_block.cuh"
#include "kernels/step_math.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kHeadThreads = 256;
// Shared memory: a pool of floats carved per launch (HeadParams offsets), plus the fixed arrays of
// head_kernel. 44 KB + 1.8 KB: under the 48 KB of static shared memory.
constexpr int kHeadPoolFloats = 11264;
constexpr int kHeadMaxChunk = 128;                  // rows of A staged at once (a multiple of 32)
constexpr int kHeadMaxGroupsPerBlock = 8;           // 32 · ceil(sqrt(65536 / 1024)) = 256 rows a block
constexpr int kHeadUnroll = 4;                      // independent FMA chains a thread interleaves
static_assert(kHeadMaxChunk <= kHeadThreads, "one thread per row of a chunk (xent_row)");
static_assert(kHeadMaxChunk % kHeadGroupRows == 0 && 8 * kHeadMaxGroupsPerBlock <= kHeadThreads, "group layout");

struct HeadParams {
  float* dW;
  float* db;
  float* dA;
  Metrics* metrics;
  Metrics* slots;     // one per 32 rows (several blocks)
  unsigned* done;     // completion counter (several blocks)
  float* partial;     // [blocks][N][K+1] (training, several blocks)
  const float* A;
  const float* W;
  const float* b;
  LabelInput labels;
  float* logits;      // test output
  float* dlogits;     // test output
  float mask_scale, grad_scale;
  int B, K, N;
  int rows_per_block, chunk;  // multiples of 32
  // Pool offsets (floats): W rounded [N][K]; dW accumulators [N][K+1]; the chunk's A rounded
  // [chunk][K+1] (column K = 1, the db column); logits [chunk][zs]; rounded dZ [chunk][N].
  int off_acc, off_a, off_z, off_dz, zs;
};


constexpr int kHeadSumLoads = 32;  // the last block's loads in flight per dW/db element (one L2 trip per 32 blocks)
// dst (row stride `stride`) = src [rows][cols] rounded to PREC, by asynchronous copies
// (rowblock::stage_async: a short loop, no registers held, all copies in flight at once); `between`
// runs while they fly (the label loads). The caller's __syncthreads publishes dst.
template <GemmPrecision PREC, typename Between>
__device__ __forceinline__ void stage_rounded(float* __restrict__ dst, int stride, const float* __restrict__ src,
                                              int rows, int cols, Between&& between) {
  rowblock::stage_async<kHeadThreads>(dst, stride, src, rows, cols);
  cp_async_commit();
  between();
  cp_async_wait<0>();
  rowblock::round_staged<PREC, kHeadThreads>(dst, stride, src, rows, cols);
}


// The pool layout for chunks of `chunk` rows (offsets in floats; total returned).
struct PoolPlan {
  int off_acc, off_a, off_z, off_dz, zs, total;
};
PoolPlan pool_plan(int K, int N, int chunk, bool backward) {
  PoolPlan p{};
  p.zs = N | 1;  // odd row stride: xent_row's thread-per-row reads hit distinct banks
  p.off_acc = N * K;
  p.off_a = p.off_acc + (backward ? N * (K + 1) : 0);
  p.off_z = p.off_a + chunk * (K + 1);
  p.off_dz = p.off_z + chunk * p.zs;
  p.total = p.off_dz + (backward ? chunk * N : 0);
  return p;
}

// Largest chunk (128, 64 or 32 rows, at most rows_per_block) whose pool fits; 0: none does.
int chunk_rows(int K, int N, bool backward, int rows_per_block) {
  for (int c = kHeadMaxChunk; c >= kHeadGroupRows; c /= 2)
    if (c <= rows_per_block && pool_plan(K, N, c, backward).total <= kHeadPoolFloats) return c;
  return 0;
}

// The launch's metric sums from its group slots, in softmax_xent's order (kernels/row_block.cuh).
__device__ void add_group_sums(Metrics* __restrict__ metrics, const volatile Metrics* src, int groups, double* s_loss,
                               unsigned* s_hit, double* s_sum, unsigned* s_sumhit) {
  rowblock::add_group_sums<kHeadMaxChunk>(metrics, src, groups, s_loss, s_hit, s_sum, s_sumhit);
}

// One block: rows [blockIdx.x · rows_per_block, +rows_per_block) ∩ [0, B), in chunks of p.chunk
// rows: stage A (rounded) -> logits -> xent_row per row -> (BACKWARD) dA of the chunk, the chunk's
// rows added into the block's dW accumulators -> the chunk's group sums. Then the block's dW
// partial and group slots go out, and the last block to finish adds the blocks' partials in block
// order and the groups in softmax_xent's order, and resets the counter. One block: no scratch.
template <GemmPrecision PREC, bool BACKWARD>
__global__ void __launch_bounds__(kHeadThreads, 2) head_kernel(const HeadParams p) {
  __shared__ float pool[kHeadPoolFloats];
  __shared__ double s_loss[kHeadMaxChunk];
  __shared__ unsigned s_hit[kHeadMaxChunk];
  __shared__ Metrics s_groups[kHeadMaxGroupsPerBlock];  // this block's group sums
  __shared__ double s_sum[kHeadMaxChunk / 8];
  __shared__ unsigned s_sumhit[kHeadMaxChunk / 8];
  __shared__ bool s_last;
  const int tid = int(threadIdx.x);
  const int K = p.K, N = p.N, KA = K + 1, NE = N * KA;
  float* s_w = pool;
  float* s_acc = pool + p.off_acc;
  float* s_a = pool + p.off_a;
  float* s_z = pool + p.off_z;
  float* s_dz = pool + p.off_dz;
  const int row0 = int(blockIdx.x) * p.rows_per_block;
  const int row_end = row0 + p.rows_per_block < p.B ? row0 + p.rows_per_block : p.B;
  const bool multi = gridDim.x > 1;

  // The label of the row this thread takes in the softmax below: by index three dependent loads
  // (the counters' batch, the row's index, the byte: kernels/labels.cuh), each issued ahead of or
  // during a staging round trip so that none waits alone: the batch before W's copies, each chunk's
  // index before its A copies and its byte while they fly (as the tail kernel, kernels/tail.cu;
  // StagedRowIndex, kernels/row_index.cuh).
  StagedRowIndex lrow(p.labels.rows);
  stage_rounded<PREC>(s_w, K, p.W, N, K, [&] {
    if constexpr (BACKWARD)
      for (int e = tid; e < NE; e += kHeadThreads) s_acc[e] = 0.0f;
    lrow.settle();
  });

  for (int c0 = row0; c0 < row_end; c0 += p.chunk) {
    const int rows = row_end - c0 < p.chunk ? row_end - c0 : p.chunk;
    const int32_t lidx = tid < rows ? lrow.index(c0 + tid) : 0;
    // Stage the chunk of A (its rows are contiguous), rounded, and the ones column.
    uint8_t label = 0;
    stage_rounded<PREC>(s_a, KA, p.A + std::size_t(c0) * K, rows, K, [&] {
      if (tid < rows) label = p.labels.labels[lrow.source(c0 + tid, lidx)];
      for (int r = tid; r < rows; r += kHeadThreads) s_a[r * KA + K] = 1.0f;
    });
    __syncthreads();  // (the first chunk: also W and the accumulators)

    // Logits: output o = (r = o % rows, n = o / rows), a warp's 32 rows of (mostly) one class (W
    // broadcast, A rows at stride K+1: distinct banks). kHeadUnroll chains interleaved, each over
    // k = 0..K-1.
    for (int o0 = tid; o0 < rows * N; o0 += kHeadUnroll * kHeadThreads) {
      float acc[kHeadUnroll];
      int r[kHeadUnroll], n[kHeadUnroll];
#pragma unroll
      for (int j = 0; j < kHeadUnroll; ++j) {
        const int o = o0 + j * kHeadThreads < rows * N ? o0 + j * kHeadThreads : o0;
        r[j] = o % rows;
        n[j] = o / rows;
        acc[j] = 0.0f;
      }
      for (int k = 0; k < K; ++k)
#pragma unroll
        for (int j = 0; j < kHeadUnroll; ++j) acc[j] = fmaf(s_a[r[j] * KA + k], s_w[n[j] * K + k], acc[j]);
      float bias[kHeadUnroll];  // read before the first logits store: a load after it would wait for it
#pragma unroll
      for (int j = 0; j < kHeadUnroll; ++j) bias[j] = p.b[n[j]];
#pragma unroll
      for (int j = 0; j < kHeadUnroll; ++j) {
        if (o0 + j * kHeadThreads >= rows * N) continue;
        const float z = dense_unit(acc[j], bias[j], false, 0u, 1.0f, 0, 0, 0, 0);  // acc + bias
        s_z[r[j] * p.zs + n[j]] = z;
        if (p.logits) p.logits[std::size_t(c0 + r[j]) * N + n[j]] = z;
      }
    }
    __syncthreads();

    // Softmax + cross-entropy: thread r takes row c0 + r (rows past the chunk's end count as +0).
    if (tid < p.chunk) {
      double loss = 0;
      unsigned hit = 0;
      if (tid < rows) {
        const int row = c0 + tid;
        float* dz = BACKWARD ? s_dz + tid * N : nullptr;
        const XentRow x = xent_row(s_z + tid * p.zs, N, label, p.grad_scale, dz,
                                   BACKWARD && p.dlogits ? p.dlogits + std::size_t(row) * N : nullptr);
        loss = x.loss;
        hit = x.hit ? 1u : 0u;
        if constexpr (BACKWARD)
          for (int j = 0; j < N; ++j) dz[j] = round_gemm_input<PREC>(dz[j]);
      }
      s_loss[tid] = loss;
      s_hit[tid] = hit;
    }
    __syncthreads();

    if constexpr (BACKWARD) {
      // dA [rows, K]: o = (r = o / K, k = o % K), coalesced along k; each a chain over n = 0..N-1
      // of round(dZ)·round(W), then the previous layer's mask (its raw activation, A itself).
      if (p.dA)
        for (int o0 = tid; o0 < rows * K; o0 += kHeadUnroll * kHeadThreads) {
          float acc[kHeadUnroll];
          int r[kHeadUnroll], k[kHeadUnroll];
#pragma unroll
          for (int j = 0; j < kHeadUnroll; ++j) {
            const int o = o0 + j * kHeadThreads < rows * K ? o0 + j * kHeadThreads : 0;
            r[j] = o / K;
            k[j] = o % K;
            acc[j] = 0.0f;
          }
          for (int n = 0; n < N; ++n)
#pragma unroll
            for (int j = 0; j < kHeadUnroll; ++j) acc[j] = fmaf(s_dz[r[j] * N + n], s_w[n * K + k[j]], acc[j]);
#pragma unroll
          for (int j = 0; j < kHeadUnroll; ++j) {
            if (o0 + j * kHeadThreads >= rows * K) continue;
            const std::size_t o = std::size_t(c0 + r[j]) * K + k[j];
            p.dA[o] = p.A[o] > 0.0f ? acc[j] * p.mask_scale : 0.0f;
          }
        }
      // dW and db: element e = (n = e / (K+1), c = e % (K+1)), owned by one thread for the whole
      // launch; the chunk's rows added in ascending order.
      for (int e0 = tid; e0 < NE; e0 += kHeadUnroll * kHeadThreads) {
        float acc[kHeadUnroll];
        int n[kHeadUnroll], c[kHeadUnroll];
#pragma unroll
        for (int j = 0; j < kHeadUnroll; ++j) {
          const int e = e0 + j * kHeadThreads < NE ? e0 + j * kHeadThreads : e0;
          n[j] = e / KA;
          c[j] = e % KA;
          acc[j] = s_acc[e];
        }
        for (int r = 0; r < rows; ++r)
#pragma unroll
          for (int j = 0; j < kHeadUnroll; ++j) acc[j] = fmaf(s_dz[r * N + n[j]], s_a[r * KA + c[j]], acc[j]);
#pragma unroll
        for (int j = 0; j < kHeadUnroll; ++j)
          if (e0 + j * kHeadThreads < NE) s_acc[e0 + j * kHeadThreads] = acc[j];
      }
    }

    // The chunk's 32-row groups: softmax_xent's pairwise tree (step k = 1, 2, ..., 16 adds x[i + k]
    // into x[i] for i a multiple of 2k), here by one thread per group, in registers.
    if (tid < p.chunk / kHeadGroupRows && tid * kHeadGroupRows < rows) {
      const Metrics m = rowblock::group_sum(s_loss + tid * kHeadGroupRows, s_hit + tid * kHeadGroupRows);
      const int g = (c0 - row0) / kHeadGroupRows + tid;  // the block's group index
      s_groups[g] = m;
      if (multi) p.slots[c0 / kHeadGroupRows + tid] = m;
    }
    __syncthreads();  // before the next chunk overwrites A, the logits, dZ and the losses
  }

  const int groups = (p.B + kHeadGroupRows - 1) / kHeadGroupRows;
  if (!multi) {  // the only block: its accumulators are the results
    if constexpr (BACKWARD)
      for (int e = tid; e < NE; e += kHeadThreads) {
        const int n = e / KA, c = e % KA;
        if (c == K)
          p.db[n] = s_acc[e];
        else
          p.dW[std::size_t(n) * K + c] = s_acc[e];
      }
    add_group_sums(p.metrics, s_groups, groups, s_loss, s_hit, s_sum, s_sumhit);
    return;
  }
  if constexpr (BACKWARD)
    for (int e = tid; e < NE; e += kHeadThreads) p.partial[std::size_t(blockIdx.x) * NE + e] = s_acc[e];
  __threadfence();  // each thread's partials and slots before the block's count
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(p.done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!s_last) return;
  // The last block: every other block's partials and slots are out.
  __threadfence();
  if constexpr (BACKWARD) {
    const int blocks = int(gridDim.x);
    for (int e = tid; e < NE; e += kHeadThreads) {
      // 0 + P_0 + P_1 + ...: kHeadSumLoads partials loaded at once, added in order
      const float acc = sum_strided_in_order<kHeadSumLoads>(p.partial + e, NE, blocks);
      const int n = e / KA, c = e % KA;
      if (c == K)
        p.db[n] = acc;
      else
        p.dW[std::size_t(n) * K + c] = acc;
    }
  }
  add_group_sums(p.metrics, p.slots, groups, s_loss, s_hit, s_sum, s_sumhit);
  if (tid == 0) *p.done = 0;  // ready for the next launch (graph replays included)
}

// Training blocks take 32·G rows, G = ceil(sqrt(B / 1024)): the block's three GEMMs grow with its
// rows, the last block's sum over the partials with the blocks (profiling/NOTES.md, "Head kernel").
constexpr int kHeadSqrtRows = 1024;
int ceil_sqrt_groups(int B) {  // ceil(sqrt(B / kHeadSqrtRows)) for B >= 1
  int g = 1;
  while (g * g * kHeadSqrtRows < B) ++g;
  return g;
}

template <GemmPrecision PREC>
void launch(const HeadParams& p, bool backward, int blocks, cudaStream_t stream) {
  if (backward)
    head_kernel<PREC, true><<<unsigned(blocks), kHeadThreads, 0, stream>>>(p);
  else
    head_kernel<PREC, false><<<unsigned(blocks), kHeadThreads, 0, stream>>>(p);
}

void run(HeadParams p, bool backward, const XentScratch& xent, cudaStream_t stream, GemmPrecision prec,
         const char* who) {
  MNIST_CHECK(p.B >= 0 && p.B <= kHeadMaxRows, who, ": ", p.B, " rows (at most ", kHeadMaxRows, ")");
  MNIST_CHECK(head_supported(p.K, p.N), who, ": a last layer of ", p.K, " inputs and ", p.N,
              " classes does not fit the head kernel (head_supported)");
  if (p.B == 0) return;
  MNIST_CHECK(p.metrics && p.A && p.W && p.b && p.labels.present(), who, ": null pointer");
  const int blocks = head_blocks(p.B, backward);
  p.rows_per_block = head_rows_per_block(p.B, backward);
  p.chunk = chunk_rows(p.K, p.N, backward, p.rows_per_block);
  const PoolPlan plan = pool_plan(p.K, p.N, p.chunk, backward);
  p.off_acc = plan.off_acc;
  p.off_a = plan.off_a;
  p.off_z = plan.off_z;
  p.off_dz = plan.off_dz;
  p.zs = plan.zs;
  MNIST_CHECK(blocks == 1 || (xent.blocks && xent.done && xent.capacity >= head_xent_slots(p.B)), who, ": ", p.B,
              " rows need a scratch of ", head_xent_slots(p.B), " group slots and a counter (have ", xent.capacity,
              ")");
  p.slots = xent.blocks;
  p.done = xent.done;
  switch (prec) {
    case GemmPrecision::FP32: launch<GemmPrecision::FP32>(p, backward, blocks, stream); break;
    case GemmPrecision::TF32: launch<GemmPrecision::TF32>(p, backward, blocks, stream); break;
    case GemmPrecision::BF16: launch<GemmPrecision::BF16>(p, backward, blocks, stream); break;
  }
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace

bool head_supported(int K, int N) {
  return N >= 1 && N <= kHeadMaxClasses && K >= 1 && chunk_rows(K, N, true, kHeadGroupRows) > 0;
}

int head_rows_per_block(int B, bool backward) {
  return backward && B > 0 ? kHeadGroupRows * ceil_sqrt_groups(B) : kHeadGroupRows;
}

int head_blocks(int B, bool backward) {
  if (B <= 0) return 0;
  const int R = head_rows_per_block(B, backward);
  return (B + R - 1) / R;
}

int head_xent_slots(int B) { return B <= 0 ? 0 : (B + kHeadGroupRows - 1) / kHeadGroupRows; }

std::size_t head_partial_floats(int B, int K, int N) {
  // The most blocks of a launch over r <= B rows: within one rows-per-block step G (r in
  // (1024 (G-1)², 1024 G²]) the count grows with r, so the candidates are each step's largest r.
  int most = 0;
  for (int G = 1; B > 0 && kHeadSqrtRows * (G - 1) * (G - 1) < B; ++G) {
    const int r = std::min(B, kHeadSqrtRows * G * G);
    most = std::max(most, head_blocks(r, true));
  }
  return most > 1 ? std::size_t(most) * std::size_t(N) * std::size_t(K + 1) : 0;
}

void head_train(float* dW, float* db, float* dA, Metrics* metrics, const HeadScratch& scratch, const float* A,
                const float* W, const float* b, const LabelInput& labels, float mask_scale, float grad_scale, int B,
                int K, int N, cudaStream_t stream, GemmPrecision prec, float* logits, float* dlogits) {
  MNIST_CHECK(B <= 0 || (dW && db), "head_train: null dW/db");
  MNIST_CHECK(head_blocks(B, true) <= 1 || (scratch.partial && scratch.partial_capacity >= head_partial_floats(B, K, N)),
              "head_train: ", B, " rows need ", head_partial_floats(B, K, N), " floats of partials (have ",
              scratch.partial_capacity, ")");
  HeadParams p{};
  p.dW = dW;
  p.db = db;
  p.dA = dA;
  p.metrics = metrics;
  p.partial = scratch.partial;
  p.A = A;
  p.W = W;
  p.b = b;
  p.labels = labels;
  p.logits = logits;
  p.dlogits = dlogits;
  p.mask_scale = mask_scale;
  p.grad_scale = grad_scale;
  p.B = B;
  p.K = K;
  p.N = N;
  run(p, true, scratch.xent, stream, prec, "head_train");
}

void head_evaluate(Metrics* metrics, const XentScratch& scratch, const float* A, const float* W, const float* b,
                   const LabelInput& labels, int B, int K, int N, cudaStream_t stream, GemmPrecision prec,
                   float* logits) {
  HeadParams p{};
  p.metrics = metrics;
  p.A = A;
  p.W = W;
  p.b = b;
  p.labels = labels;
  p.logits = logits;
  p.mask_scale = 1.0f;
  p.B = B;
  p.K = K;
  p.N = N;
  run(p, false, scratch, stream, prec, "head_evaluate");
}

}  // namespace mnist::cuda
