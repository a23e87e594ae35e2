#include "kernels/gather.cuh"

#include <algorithm>

#include <cub/device/device_radix_sort.cuh>

#include "kernels/curand_draw.cuh"
#include "kernels/gemm_round.cuh"
#include "kernels/load_l2.cuh"
#include "kernels/pdl.cuh"
#include "kernels/philox.hpp"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kGatherThreads = 128;
constexpr int kThreads = 256;

// Four pixels as the GEMMs see them (pixel_value).
__device__ __forceinline__ float4 pixels4(uchar4 u) {
  return make_float4(pixel_value(u.x), pixel_value(u.y), pixel_value(u.z), pixel_value(u.w));
}

// Fuses the batch gather with the /255 scaling and the label gather. Reads images [n_images, D]
// uint8, labels [n_images], idx [...] (optional), counters->batch (optional); writes X [B, D]
// float, y [B] (optional). One block per batch row. Row r comes from image idx[base + r] (or
// base + r without idx), where base = first + counters->batch * stride when counters are set.
// VEC: D % 4 == 0 and aligned pointers, so 4 pixels move as one uchar4 load and one float4 store.
template <bool VEC>
__global__ void __launch_bounds__(kGatherThreads)
    gather_kernel(float* __restrict__ X, uint8_t* __restrict__ y, const uint8_t* __restrict__ images,
                  const uint8_t* __restrict__ labels, const int32_t* __restrict__ idx, int64_t first,
                  const TrainCounters* __restrict__ counters, int stride, int D) {
  const int r = int(blockIdx.x);
  const int64_t base = first + (counters ? int64_t(counters->batch) * stride : 0);
  const int64_t src = idx ? int64_t(idx[base + r]) : base + r;
  const uint8_t* in = images + src * D;
  float* out = X + int64_t(r) * D;
  if constexpr (VEC) {
    const uchar4* in4 = reinterpret_cast<const uchar4*>(in);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int k = int(threadIdx.x); k < D / 4; k += kGatherThreads) {
      const uchar4 u = in4[k];
      out4[k] = pixels4(u);
    }
  } else {
    for (int k = int(threadIdx.x); k < D; k += kGatherThreads) out[k] = pixel_value(in[k]);
  }
  if (y && threadIdx.x == 0) y[r] = labels[src];
}

void launch_gather(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, const int32_t* idx,
                   int64_t first, const TrainCounters* counters, int stride, int B, int D, cudaStream_t stream) {
  MNIST_CHECK(B >= 0 && D > 0, "gather_batch: invalid sizes B=", B, " D=", D);
  if (B == 0) return;
  MNIST_CHECK(X && images && (!y || labels), "gather_batch: null pointer");
  const bool vec = D % 4 == 0 && reinterpret_cast<uintptr_t>(images) % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(X) % 16 == 0;
  if (vec)
    gather_kernel<true><<<unsigned(B), kGatherThreads, 0, stream>>>(X, y, images, labels, idx, first, counters,
                                                                    stride, D);
  else
    gather_kernel<false><<<unsigned(B), kGatherThreads, 0, stream>>>(X, y, images, labels, idx, first, counters,
                                                                     stride, D);
  MNIST_LAUNCH_CHECK(stream);
}

// gather_kernel's X (no labels) for rows r < B, rounded to PREC (round_gemm_input), as a grid-stride
// loop over 4-pixel groups (VEC) or pixels, then pdl_wait(): every write before it
// (gather_batch_overlapped's contract).
template <bool VEC, GemmPrecision PREC>
__global__ void __launch_bounds__(kThreads)
    gather_overlapped_kernel(float* __restrict__ X, const uint8_t* __restrict__ images,
                             const int32_t* __restrict__ idx, const TrainCounters* __restrict__ counters, int stride,
                             int B, int D) {
  // 32-bit element indices (the launcher checks B·D + one grid stride < 2^31): a 64-bit division
  // is a call with a stack frame on the device
  const int64_t base = int64_t(counters->batch) * stride;
  const int step = int(gridDim.x) * kThreads;
  if constexpr (VEC) {
    const int d4 = D / 4, total = B * d4;
    for (int e = int(blockIdx.x) * kThreads + int(threadIdx.x); e < total; e += step) {
      const int r = e / d4, k = e - r * d4;
      const uchar4 u = reinterpret_cast<const uchar4*>(images + int64_t(idx[base + r]) * D)[k];
      const float4 v = pixels4(u);
      reinterpret_cast<float4*>(X)[e] = make_float4(round_gemm_input<PREC>(v.x), round_gemm_input<PREC>(v.y),
                                                    round_gemm_input<PREC>(v.z), round_gemm_input<PREC>(v.w));
    }
  } else {
    const int total = B * D;
    for (int e = int(blockIdx.x) * kThreads + int(threadIdx.x); e < total; e += step) {
      const int r = e / D, k = e - r * D;
      X[e] = round_gemm_input<PREC>(pixel_value(images[int64_t(idx[base + r]) * D + k]));
    }
  }
  pdl_start();  // (after the writes: the kernel before may still run until here)
}

// keys [n] = rng::shuffle_key(seed, epoch, i) & key_mask, vals [n] = i (CUB's pairs). One thread
// per Philox block (4 keys). key_mask is ~0 but for the tests (ShuffleTestHooks).
__global__ void __launch_bounds__(kThreads)
    shuffle_keys_kernel(uint32_t* __restrict__ keys, int32_t* __restrict__ vals, int n, uint64_t seed,
                        uint64_t epoch, uint32_t key_mask) {
  const int64_t g = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t i0 = g * 4;
  if (i0 >= n) return;
  const uint4 r = philox_block(seed, rng::kShuffle, 0, uint64_t(g), epoch);
#pragma unroll
  for (unsigned j = 0; j < 4; ++j) {
    const int64_t i = i0 + j;
    if (i < n) {
      keys[i] = block_word(r, j) & key_mask;
      vals[i] = int32_t(i);
    }
  }
}

// ---- The bucket shuffle (shuffle_order up to kBucketShuffleMax examples; gather.cuh) ----
//
// The permutation wanted is the stable sort of 0..n-1 by key: (key, index) ascending. The keys are
// uniform 32-bit words, so their top `bits` bits cut them into 2^bits buckets of about 2 to 4 keys
// each (bucket_bits), in key order: every key of bucket b is below every key of bucket b + 1. Three
// launches:
//   shuffle_count_kernel   keys [n] and the bucket counts (atomicAdd); the last block to finish
//                          writes start [2^bits + 1], the counts' exclusive scan (start[2^bits] = n)
//   shuffle_place_kernel   each (key, index) into a slot of its bucket, slots [start[b], start[b+1]),
//                          taken with atomicSub on the count: in any order (the next pass does not
//                          care), and the counts are 0 again afterwards, ready for the next call
//   shuffle_rank_kernel    index i's place in its bucket = #{members j: (key_j, j) < (key_i, i)};
//                          order[start[b] + that] = i
// The result depends on the keys only, never on the order in which blocks or atomics run, and equals
// cpu::shuffle_order bit for bit. Each pass is one light thread per element; CUB's radix sort (four
// 8-bit passes over the pairs and a histogram) took 62.8 µs at 48,000 on the H100 at fc62aa1, a
// tenth of issue 12's 0.6 ms epoch. A bucket of m keys costs each member m loads: random keys keep
// m small; equal or clustered keys (only the tests' key_mask makes them) cost time, not correctness.
constexpr int kCountThreads = 1024;  // the count kernel's blocks: its last block scans the counts
constexpr int kMaxBucketBits = 14;   // 2^14 buckets = kCountThreads x kScanRun
constexpr int kScanRun = 16;         // counts a thread of the last block scans (registers)
static_assert(kCountThreads * kScanRun == 1 << kMaxBucketBits, "the last block holds every count once");

// log2 of the bucket count for n keys: the smallest power of two >= n / 4, at most 2^14.
int bucket_bits(int n) {
  int b = 0;
  while (b < kMaxBucketBits && (int64_t(4) << b) < int64_t(n)) ++b;
  return b;
}

__device__ __forceinline__ unsigned bucket_of(uint32_t key, int bits) { return bits ? key >> (32 - bits) : 0u; }


__global__ void __launch_bounds__(kCountThreads)
    shuffle_count_kernel(uint32_t* __restrict__ keys, unsigned* count, unsigned* __restrict__ start,
                         unsigned* done, int n, int bits, uint64_t seed, uint64_t epoch, uint32_t key_mask) {
  __shared__ unsigned s_scan[kCountThreads];
  __shared__ bool s_last;
  const int tid = int(threadIdx.x);
  const int64_t g = int64_t(blockIdx.x) * kCountThreads + tid;
  const int64_t i0 = g * 4;
  if (i0 < n) {
    const uint4 r = philox_block(seed, rng::kShuffle, 0, uint64_t(g), epoch);
#pragma unroll
    for (unsigned j = 0; j < 4; ++j) {
      const int64_t i = i0 + j;
      if (i < n) {
        const uint32_t k = block_word(r, j) & key_mask;
        keys[i] = k;
        atomicAdd(count + bucket_of(k, bits), 1u);
      }
    }
  }
  __threadfence();  // this block's counts before its count on *done
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  // The last block: start = the exclusive scan of the counts. Thread t holds the counts of buckets
  // t·per .. t·per + per - 1 in registers (per = 2^bits / 1024, or 1: kScanRun independent loads in
  // flight, one L2 round trip), their total is scanned across the block in shared memory.
  const int nb = 1 << bits, per = nb > kCountThreads ? nb / kCountThreads : 1, b0 = tid * per;
  unsigned v[kScanRun];
  unsigned run = 0;
#pragma unroll
  for (int j = 0; j < kScanRun; ++j) {
    v[j] = j < per && b0 + j < nb ? load_l2(count + b0 + j) : 0u;
    run += v[j];
  }
  s_scan[tid] = run;
  __syncthreads();
  for (int d = 1; d < kCountThreads; d *= 2) {  // inclusive Hillis-Steele scan of the runs
    const unsigned add = tid >= d ? s_scan[tid - d] : 0u;
    __syncthreads();
    s_scan[tid] += add;
    __syncthreads();
  }
  unsigned at = s_scan[tid] - run;
#pragma unroll
  for (int j = 0; j < kScanRun; ++j)
    if (j < per && b0 + j < nb) {
      start[b0 + j] = at;
      at += v[j];
    }
  if (tid == 0) {
    start[nb] = unsigned(n);
    *done = 0;  // ready for the next call
  }
}

// slots[start[b] + m] = (key, index) of the m-th arrival in bucket b (any order).
__global__ void __launch_bounds__(kThreads)
    shuffle_place_kernel(const uint32_t* __restrict__ keys, unsigned* count, const unsigned* __restrict__ start,
                         uint2* __restrict__ slots, int n, int bits) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const uint32_t k = keys[i];
  const unsigned b = bucket_of(k, bits);
  slots[start[b] + atomicSub(count + b, 1u) - 1u] = make_uint2(k, unsigned(i));  // the count ends at 0
}

__global__ void __launch_bounds__(kThreads)
    shuffle_rank_kernel(const uint32_t* __restrict__ keys, const unsigned* __restrict__ start,
                        const uint2* __restrict__ slots, int32_t* __restrict__ order, int n, int bits) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const uint32_t k = keys[i];
  const unsigned b = bucket_of(k, bits), s0 = start[b], s1 = start[b + 1];
  unsigned rank = 0;
  for (unsigned s = s0; s < s1; ++s) {
    const uint2 m = slots[s];  // (key, index) of a member, itself included
    rank += (m.x < k || (m.x == k && int64_t(m.y) < i)) ? 1u : 0u;
  }
  order[s0 + rank] = int32_t(i);
}

__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t* __restrict__ order, int n) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) order[i] = int32_t(i);
}

// Carves the shuffle's scratch (each part 256-byte aligned): the bucket shuffle's keys [n], slots
// [n] (key, index pairs), counts [2^bits] and *done (zero before the first call, zero after every call), start
// [2^bits + 1]; CUB's keys in and out and indices in [n each] and its temp storage (above
// kBucketShuffleMax, and for the tests' and the bench's comparison at any n).
struct ShuffleScratch {
  std::size_t keys = 0, slots = 0, count = 0, done = 0, start = 0;
  std::size_t keys_in = 0, keys_out = 0, vals_in = 0, cub = 0, cub_bytes = 0, total = 0;
  int bits = 0;
};

std::size_t align256(std::size_t x) { return (x + 255) / 256 * 256; }

// with_cub: also CUB's part (its size query is host work, skipped on the bucket shuffle's calls).
ShuffleScratch shuffle_scratch(int n, bool with_cub) {
  ShuffleScratch s;
  const std::size_t words = align256(std::size_t(n) * 4);
  s.bits = bucket_bits(n);
  const std::size_t nb = std::size_t(1) << s.bits;
  s.keys = 0;
  s.slots = words;
  s.count = words + align256(std::size_t(n) * 8);
  s.done = s.count + align256(nb * 4);
  s.start = s.done + 256;
  s.keys_in = s.start + align256((nb + 1) * 4);
  s.keys_out = s.keys_in + words;
  s.vals_in = s.keys_out + words;
  s.cub = s.vals_in + words;
  if (!with_cub) {
    s.total = s.keys_in;
    return s;
  }
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, s.cub_bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), n));
  s.total = s.cub + align256(s.cub_bytes);
  return s;
}

ShuffleTestHooks g_shuffle_hooks;

}  // namespace

void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, const int32_t* idx, int B,
                  int D, cudaStream_t stream) {
  MNIST_CHECK(idx || B == 0, "gather_batch: null index array");
  launch_gather(X, y, images, labels, idx, 0, nullptr, 0, B, D, stream);
}

void gather_batch(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, const int32_t* idx,
                  const TrainCounters* counters, int stride, int B, int D, cudaStream_t stream) {
  MNIST_CHECK((idx && counters) || B == 0, "gather_batch: null index array or counters");
  MNIST_CHECK(stride >= B, "gather_batch: stride ", stride, " < batch ", B);
  launch_gather(X, y, images, labels, idx, 0, counters, stride, B, D, stream);
}

namespace {
template <bool VEC>
void launch_overlapped(dim3 grid, float* X, const uint8_t* images, const int32_t* idx, const TrainCounters* counters,
                       int stride, int B, int D, cudaStream_t stream, GemmPrecision round) {
  switch (round) {
    case GemmPrecision::FP32:
      return launch_kernel(gather_overlapped_kernel<VEC, GemmPrecision::FP32>, grid, dim3(kThreads), 0, stream, X,
                           images, idx, counters, stride, B, D);
    case GemmPrecision::TF32:
      return launch_kernel(gather_overlapped_kernel<VEC, GemmPrecision::TF32>, grid, dim3(kThreads), 0, stream, X,
                           images, idx, counters, stride, B, D);
    case GemmPrecision::BF16:
      return launch_kernel(gather_overlapped_kernel<VEC, GemmPrecision::BF16>, grid, dim3(kThreads), 0, stream, X,
                           images, idx, counters, stride, B, D);
  }
  MNIST_CHECK(false, "gather_batch_overlapped: unknown precision");
}
}  // namespace

void gather_batch_overlapped(float* X, const uint8_t* images, const int32_t* idx, const TrainCounters* counters,
                             int stride, int B, int D, cudaStream_t stream, GemmPrecision round) {
  MNIST_CHECK(B >= 0 && D > 0, "gather_batch_overlapped: invalid sizes B=", B, " D=", D);
  MNIST_CHECK(stride >= B, "gather_batch_overlapped: stride ", stride, " < batch ", B);
  if (B == 0) return;
  MNIST_CHECK(X && images && idx && counters, "gather_batch_overlapped: null pointer");
  static const int sms = [] {
    int device = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    return n;
  }();
  const bool vec = D % 4 == 0 && reinterpret_cast<uintptr_t>(images) % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(X) % 16 == 0;
  const int64_t work = (int64_t(B) * (vec ? D / 4 : D) + kThreads - 1) / kThreads;  // blocks of one element a thread
  const dim3 grid(unsigned(std::max<int64_t>(1, std::min<int64_t>(work, 4 * int64_t(sms)))));
  // (the kernel's int element index, one grid stride past the last element included)
  MNIST_CHECK(int64_t(B) * D + int64_t(grid.x) * kThreads < (int64_t(1) << 31), "gather_batch_overlapped: ", B, " x ", D,
              " pixels exceed its 32-bit indices");
  if (vec)
    launch_overlapped<true>(grid, X, images, idx, counters, stride, B, D, stream, round);
  else
    launch_overlapped<false>(grid, X, images, idx, counters, stride, B, D, stream, round);
  MNIST_LAUNCH_CHECK(stream);
}

void gather_rows(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, int64_t first, int B, int D,
                 cudaStream_t stream) {
  MNIST_CHECK(first >= 0, "gather_rows: negative first row");
  launch_gather(X, y, images, labels, nullptr, first, nullptr, 0, B, D, stream);
}

std::size_t shuffle_temp_bytes(int n) {
  MNIST_CHECK(n >= 0, "shuffle_temp_bytes: negative size");
  return shuffle_scratch(n, true).total;
}

void shuffle_order(int32_t* order, void* temp, std::size_t temp_bytes, int n, uint64_t seed, uint64_t epoch,
                   cudaStream_t stream) {
  MNIST_CHECK(n >= 0, "shuffle_order: negative size");
  if (n == 0) return;
  const bool buckets = n <= kBucketShuffleMax && !g_shuffle_hooks.force_cub;
  const ShuffleScratch s = shuffle_scratch(n, !buckets);
  MNIST_CHECK(order && temp, "shuffle_order: null pointer");
  MNIST_CHECK(temp_bytes >= s.total, "shuffle_order: ", temp_bytes, " bytes of scratch, needs ", s.total,
              " (shuffle_temp_bytes)");
  auto* base = static_cast<unsigned char*>(temp);
  const uint32_t mask = g_shuffle_hooks.key_mask;
  const int64_t groups = (int64_t(n) + 3) / 4;
  const unsigned group_blocks = unsigned((groups + kThreads - 1) / kThreads);
  if (buckets) {
    auto* keys = reinterpret_cast<uint32_t*>(base + s.keys);
    auto* slots = reinterpret_cast<uint2*>(base + s.slots);
    auto* count = reinterpret_cast<unsigned*>(base + s.count);
    auto* done = reinterpret_cast<unsigned*>(base + s.done);
    auto* start = reinterpret_cast<unsigned*>(base + s.start);
    const unsigned blocks = unsigned((int64_t(n) + kThreads - 1) / kThreads);
    const unsigned count_blocks = unsigned((groups + kCountThreads - 1) / kCountThreads);
    shuffle_count_kernel<<<count_blocks, kCountThreads, 0, stream>>>(keys, count, start, done, n, s.bits, seed,
                                                                     epoch, mask);
    MNIST_LAUNCH_CHECK(stream);
    shuffle_place_kernel<<<blocks, kThreads, 0, stream>>>(keys, count, start, slots, n, s.bits);
    MNIST_LAUNCH_CHECK(stream);
    shuffle_rank_kernel<<<blocks, kThreads, 0, stream>>>(keys, start, slots, order, n, s.bits);
    MNIST_LAUNCH_CHECK(stream);
    return;
  }
  auto* keys_in = reinterpret_cast<uint32_t*>(base + s.keys_in);
  auto* keys_out = reinterpret_cast<uint32_t*>(base + s.keys_out);
  auto* vals_in = reinterpret_cast<int32_t*>(base + s.vals_in);
  shuffle_keys_kernel<<<group_blocks, kThreads, 0, stream>>>(keys_in, vals_in, n, seed, epoch, mask);
  MNIST_LAUNCH_CHECK(stream);
  std::size_t cub_bytes = s.cub_bytes;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + s.cub, cub_bytes, keys_in, keys_out, vals_in, order, n, 0, 32,
                                             stream));
  MNIST_LAUNCH_CHECK(stream);
}

void shuffle_set_test_hooks(const ShuffleTestHooks& hooks) { g_shuffle_hooks = hooks; }

void identity_order(int32_t* order, int n, cudaStream_t stream) {
  MNIST_CHECK(n >= 0, "identity_order: negative size");
  if (n == 0) return;
  MNIST_CHECK(order, "identity_order: null pointer");
  iota_kernel<<<unsigned((int64_t(n) + kThreads - 1) / kThreads), kThreads, 0, stream>>>(order, n);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
