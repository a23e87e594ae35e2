// Host emulation of the bits of the CUDA runtime the kernels use: one fiber per CUDA thread
// (emu_fiber.h), a barrier per block for __syncthreads, blocks run one after another.
#pragma once
// Code that must tell the emulation from a real CUDA build (the GPU tests: they are host C++ in
// both, so __CUDACC__ says nothing) asks for this.
#define MNIST_HOST_EMULATION 1
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
#include <type_traits>
#include <atomic>
#include <algorithm>
#include <stdexcept>
#include <cstdlib>
#include <limits>
typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorUnknown = 999 };
inline const char* cudaGetErrorName(cudaError_t) { return "emu"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emu"; }
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };  // CUDA: __align__(4)
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
#include "emu_fiber.h"
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // (transform.py rewrites the static declarations of the kernels: emu::shared_obj)
namespace emu {
// Every static __shared__ object's bytes [begin, end), registered at its first use (the bank-conflict
// model, banks.cpp, records the accesses that fall in them or in a block's dynamic shared memory).
// A fixed array: the model reads it from inside the kernels' own accesses, a vector's reallocation
// among them.
struct SharedRanges {
  static constexpr unsigned kMax = 4096;
  std::uintptr_t begin[kMax], end[kMax];
  std::uintptr_t lo = ~std::uintptr_t(0), hi = 0;
  unsigned count = 0;
  void add(std::uintptr_t b, std::uintptr_t e) {
    if (count == kMax) {
      std::fprintf(stderr, "emu: more than %u static __shared__ objects\n", kMax);
      std::abort();
    }
    begin[count] = b;
    end[count] = e;
    lo = std::min(lo, b);
    hi = std::max(hi, e);
    ++count;
  }
};
inline SharedRanges& static_shared_ranges() {
  static SharedRanges r;
  return r;
}
// A static `__shared__ T name;` of a kernel (transform.py turns it into `auto& name =
// emu::shared_obj<T, ID>();`, ID unique per file and line): one object per declaration, shared by every thread
// (blocks run one after another), zero-initialised once. It sits at an address aligned to alignof(T)
// and to nothing more (offset alignof(T) into a 64-byte aligned buffer), as the device may place it:
// a wider access than the type guarantees (float4 reads of a float array) is then misaligned here
// too, and the emulation's UBSan alignment check (run.sh) reports it. The H100 faulted on exactly
// that on 2026-11-26 (a float struct read as float4) while the emulation, with the object 16-byte
// aligned by chance, passed.
template <class T, int ID>
T& shared_obj() {
  static_assert(std::is_trivially_copyable<T>::value, "a __shared__ object is raw memory on the device");
  constexpr std::size_t a = alignof(T) < 16 ? alignof(T) : 0;
  // A block in flight beside other blocks of its kernel (a programmatic, cluster or cooperative
  // launch): its own object,
  // poisoned (0xFF) as the device leaves it undefined.
  if (Fiber* f = scheduler().current; f && f->block->own_statics) {
    std::unique_ptr<unsigned char[]>& slot = f->block->statics[ID];
    if (!slot) {
      slot.reset(new unsigned char[sizeof(T) + 128]);
      std::memset(slot.get(), 0xFF, sizeof(T) + 128);
    }
    const std::uintptr_t base = (reinterpret_cast<std::uintptr_t>(slot.get()) + 63) & ~std::uintptr_t(63);
    return *reinterpret_cast<T*>(base + a);
  }
  alignas(64) static unsigned char storage[sizeof(T) + 64];  // static: zero-initialised
  static const bool registered = [] {
    static_shared_ranges().add(std::uintptr_t(storage + a), std::uintptr_t(storage + a + sizeof(T)));
    return true;
  }();
  (void)registered;
  return *reinterpret_cast<T*>(storage + a);
}
}  // namespace emu
extern dim3 blockDim, gridDim;
inline void __syncthreads() { emu::wait(emu::current_block().sync); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) { emu::spin_yield(); }  // a spin-wait's pause: let the others run
// prmt.b32's default mode: byte i of the result is byte (s >> 4i) & 7 of the 8 bytes {y, x} (x in
// bytes 0..3); the sign-replicate bit (s >> 4i) & 8 is not modelled: none of the kernels sets it.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xFFu) << (8 * i);
  return r;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicSub(unsigned* p, unsigned v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
  unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
extern long long g_emu_launches;
namespace emu {
// The order in which a launch's blocks run (one after another): on the GPU blocks run and finish
// in any order, so a kernel's result must not depend on it. Tests set it to check that (e.g. a
// last-block-to-finish reduction that must add the blocks in index order).
enum class BlockOrder { Index, Reverse, Shuffled };
inline BlockOrder g_block_order = BlockOrder::Index;
inline std::vector<dim3> block_sequence(dim3 grid) {
  std::vector<dim3> seq;
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) seq.push_back(dim3(bx, by));
  if (g_block_order == BlockOrder::Reverse) std::reverse(seq.begin(), seq.end());
  static uint64_t state = 0x9E3779B97F4A7C15ull;  // one LCG across launches: reproducible runs
  if (g_block_order == BlockOrder::Shuffled)  // Fisher-Yates with the LCG's draws
    for (std::size_t i = seq.size(); i > 1; --i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      std::swap(seq[i - 1], seq[std::size_t(state >> 33) % i]);
    }
  return seq;
}
// A kernel's identity: the function's address, whether the launch names the function or a variable
// that points to it (`auto k = pick(...); k<<<...>>>`: not the variable's address).
template <class F>
const void* kernel_key(F* kernel) {
  return reinterpret_cast<const void*>(kernel);
}
// The start of every launch that runs its blocks here (not a programmatic one): the launch before it
// has ended, and the launch's kernel, grid and block size are the ones its threads see.
inline void begin_launch(dim3 grid, unsigned threads, const void* kernel) {
  flush_pending();
  ++g_emu_launches;
  g_launch_kernel = kernel;
  blockDim = dim3(threads);
  gridDim = grid;
}

inline void launch(dim3 grid, unsigned threads, const std::function<void()>& body, const void* kernel = nullptr) {
  if (grid.x == 0 || grid.y == 0 || threads == 0 || threads > 1024) throw std::runtime_error("bad launch config");
  begin_launch(grid, threads, kernel);
  for (const dim3 blk : block_sequence(grid)) {
    std::vector<Block> one(1);
    one[0].bx = blk.x;
    one[0].by = blk.y;
    one[0].sync.expected = threads;
    one[0].sync.what = "__syncthreads";
    run(one, threads, body, "a kernel launch");
  }
}
}
// The device's arithmetic, where the host's differs (run.sh adds -mfma -ffp-contract=fast to the
// emulated kernels for nvcc's default FMA contraction; README.md says what matches).
// CUDA's expf is not correctly rounded: libdevice's __nv_expf (libdevice.10.bc, non-FTZ path)
// reduces a·log2(e) to n + f with f in [0, 1) by the FMA sequence below and returns
// ex2.approx.ftz(f)·2ⁿ; ex2.approx (the MUFU unit) is documented to 2 ulp and its bits are not
// public. The model: the exact 2^f moved 0.3 ulp up or down (a hash of f's bits picks the
// direction), then rounded (f = 0 gives exactly 1). With the reduction's own roundings (1.63 ulp
// at worst near the overflow end with an exact 2^f), the emulated expf is within 1.88 ulp of exp
// over [-103, 88.72] (every float near the ends, a sweep between; the documented bound is 2 ulp)
// and 31% of its results are not the nearest float (glibc's: 0.06%), so a tolerance that holds
// only for a correctly rounded exp fails here as on the GPU.
// -DEMU_HOST_MATH keeps the host's expf (to compare).
namespace emu {
inline float bits_to_float(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }
inline float ex2_approx_ftz(float f) {
  if (std::isnan(f)) return f;
  if (std::fpclassify(f) == FP_SUBNORMAL || f == 0.0f) return 1.0f;
  const double y = std::exp2(double(f));
  if (y < 0x1p-126) return 0.0f;  // .ftz: subnormal results flush to zero
  if (y > double(std::numeric_limits<float>::max())) return INFINITY;
  const float r = float(y);
  const double ulp = double(std::nextafter(r, INFINITY)) - double(r);
  const uint32_t h = float_to_bits(f) * 0x9E3779B1u;
  return float(y + ((h >> 31) ? 0.3 : -0.3) * ulp);
}
inline float device_expf(float a) {
  const float l2e = bits_to_float(0x3FB8AA3Bu), l2e_lo = bits_to_float(0x32A57060u);
  float t = std::fma(a, l2e / 252.0f, 0.5f);
  t = t > 0.0f ? (t < 1.0f ? t : 1.0f) : 0.0f;                  // saturate (NaN -> 0)
  const float j = float(12582913.0 + std::floor(252.0 * double(t)));  // fma.rm(t, 252, 2^23·1.5 + 1)
  const float n = j - 12583039.0f;                                 // j - (2^23·1.5 + 127)
  float f = std::fma(a, l2e, -n);
  f = std::fma(a, l2e_lo, f);
  return ex2_approx_ftz(f) * bits_to_float(float_to_bits(j) << 23);  // · 2ⁿ
}
}  // namespace emu
#ifndef EMU_HOST_MATH
#define expf(x) ::emu::device_expf(x)
#endif
using std::isfinite;
using std::isnan;

// Memory, streams, events: host memory and no-ops. Each call that orders after the launches before
// it first ends a programmatic launch still in flight (emu::flush_pending).
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1 };
#define cudaStreamDefault 0u
#define cudaStreamNonBlocking 1u
#define cudaEventDefault 0u
#define cudaEventDisableTiming 2u
typedef struct CUevent_st* cudaEvent_t;
inline cudaError_t cudaMalloc(void** p, size_t n) { *p = std::aligned_alloc(256, (n + 255) / 256 * 256); return *p ? cudaSuccess : cudaErrorUnknown; }
template <class T> cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc(reinterpret_cast<void**>(p), n); }
inline cudaError_t cudaFree(void* p) { emu::flush_pending(); std::free(p); return cudaSuccess; }
inline cudaError_t cudaMallocHost(void** p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { emu::flush_pending(); if (n) std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) { emu::flush_pending(); if (n) std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemset(void* d, int v, size_t n) { emu::flush_pending(); std::memset(d, v, n); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t = nullptr) { emu::flush_pending(); std::memset(d, v, n); return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = reinterpret_cast<cudaStream_t>(new int(0)); return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { emu::flush_pending(); delete reinterpret_cast<int*>(s); return cudaSuccess; }
extern long long g_emu_stream_syncs;  // the host waits on a stream (the engine counts its syncs)
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { emu::flush_pending(); ++g_emu_stream_syncs; return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { emu::flush_pending(); return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
inline cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* s) { *s = cudaStreamCaptureStatusNone; return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = reinterpret_cast<cudaEvent_t>(new int(0)); return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete reinterpret_cast<int*>(e); return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { emu::flush_pending(); return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned = 0) { emu::flush_pending(); return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { emu::flush_pending(); return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 0; return cudaSuccess; }
// cub::DeviceRadixSort::SortPairs emulation (stable sort by key).
namespace cub {
struct DeviceRadixSort {
  template <class K, class V>
  static cudaError_t SortPairs(void* temp, size_t& bytes, const K* kin, K* kout, const V* vin, V* vout, int n,
                               int = 0, int = 32, cudaStream_t = nullptr) {
    if (!temp) { bytes = size_t(n) * 8 + 777; return cudaSuccess; }
    emu::flush_pending();
    std::vector<int> p(n);
    for (int i = 0; i < n; ++i) p[i] = i;
    std::stable_sort(p.begin(), p.end(), [&](int a, int b) { return kin[a] < kin[b]; });
    for (int i = 0; i < n; ++i) { kout[i] = kin[p[i]]; vout[i] = vin[p[i]]; }
    return cudaSuccess;
  }
};
}
