#include "kernels/gather.cuh"

#include <cub/device/device_radix_sort.cuh>

#include "kernels/curand_draw.cuh"
#include "kernels/philox.hpp"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"

namespace mnist::cuda {
namespace {

constexpr int kGatherThreads = 128;
constexpr int kThreads = 256;

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
      out4[k] = make_float4(pixel_value(u.x), pixel_value(u.y), pixel_value(u.z), pixel_value(u.w));
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

// keys [n] = rng::shuffle_key(seed, epoch, i), vals [n] = i. One thread per Philox block (4 keys).
__global__ void __launch_bounds__(kThreads)
    shuffle_keys_kernel(uint32_t* __restrict__ keys, int32_t* __restrict__ vals, int n, uint64_t seed,
                        uint64_t epoch) {
  const int64_t g = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t i0 = g * 4;
  if (i0 >= n) return;
  const uint4 r = philox_block(seed, rng::kShuffle, 0, uint64_t(g), epoch);
#pragma unroll
  for (unsigned j = 0; j < 4; ++j) {
    const int64_t i = i0 + j;
    if (i < n) {
      keys[i] = block_word(r, j);
      vals[i] = int32_t(i);
    }
  }
}

__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t* __restrict__ order, int n) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) order[i] = int32_t(i);
}

// Carves the shuffle's scratch: keys in, keys out, indices in (n each, 256-byte aligned), then
// CUB's temp storage.
struct ShuffleScratch {
  std::size_t keys_in = 0, keys_out = 0, vals_in = 0, cub = 0, cub_bytes = 0, total = 0;
};

std::size_t align256(std::size_t x) { return (x + 255) / 256 * 256; }

ShuffleScratch shuffle_scratch(int n) {
  ShuffleScratch s;
  const std::size_t words = align256(std::size_t(n) * 4);
  s.keys_in = 0;
  s.keys_out = words;
  s.vals_in = 2 * words;
  s.cub = 3 * words;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, s.cub_bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), n));
  s.total = s.cub + align256(s.cub_bytes);
  return s;
}

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

void gather_rows(float* X, uint8_t* y, const uint8_t* images, const uint8_t* labels, int64_t first, int B, int D,
                 cudaStream_t stream) {
  MNIST_CHECK(first >= 0, "gather_rows: negative first row");
  launch_gather(X, y, images, labels, nullptr, first, nullptr, 0, B, D, stream);
}

std::size_t shuffle_temp_bytes(int n) {
  MNIST_CHECK(n >= 0, "shuffle_temp_bytes: negative size");
  return shuffle_scratch(n).total;
}

void shuffle_order(int32_t* order, void* temp, std::size_t temp_bytes, int n, uint64_t seed, uint64_t epoch,
                   cudaStream_t stream) {
  MNIST_CHECK(n >= 0, "shuffle_order: negative size");
  if (n == 0) return;
  const ShuffleScratch s = shuffle_scratch(n);
  MNIST_CHECK(order && temp, "shuffle_order: null pointer");
  MNIST_CHECK(temp_bytes >= s.total, "shuffle_order: ", temp_bytes, " bytes of scratch, needs ", s.total,
              " (shuffle_temp_bytes)");
  auto* base = static_cast<unsigned char*>(temp);
  auto* keys_in = reinterpret_cast<uint32_t*>(base + s.keys_in);
  auto* keys_out = reinterpret_cast<uint32_t*>(base + s.keys_out);
  auto* vals_in = reinterpret_cast<int32_t*>(base + s.vals_in);
  const int64_t groups = (int64_t(n) + 3) / 4;
  shuffle_keys_kernel<<<unsigned((groups + kThreads - 1) / kThreads), kThreads, 0, stream>>>(keys_in, vals_in, n,
                                                                                              seed, epoch);
  MNIST_LAUNCH_CHECK(stream);
  std::size_t cub_bytes = s.cub_bytes;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + s.cub, cub_bytes, keys_in, keys_out, vals_in, order, n, 0, 32,
                                             stream));
  MNIST_LAUNCH_CHECK(stream);
}

void identity_order(int32_t* order, int n, cudaStream_t stream) {
  MNIST_CHECK(n >= 0, "identity_order: negative size");
  if (n == 0) return;
  MNIST_CHECK(order, "identity_order: null pointer");
  iota_kernel<<<unsigned((int64_t(n) + kThreads - 1) / kThreads), kThreads, 0, stream>>>(order, n);
  MNIST_LAUNCH_CHECK(stream);
}

}  // namespace mnist::cuda
