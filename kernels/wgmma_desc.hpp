// The shared-memory matrix descriptor of Hopper's wgmma (PTX ISA, "Matrix Descriptor Format" of
// the asynchronous warpgroup-level matrix instructions): one 64-bit word that tells the tensor
// cores where an operand tile lies in shared memory. Pure bit packing, shared by the device
// wrappers (kernels/wgmma.cuh) and their host emulation (tests/gpu/emu/ov/kernels/wgmma.cuh),
// which decodes the word independently to find every element.
//
//   bits  0..13  start address >> 4 (shared-window byte address, 16-byte aligned)
//   bits 16..29  leading dimension byte offset >> 4 (LBO)
//   bits 32..45  stride dimension byte offset >> 4 (SBO)
//   bits 49..51  matrix base offset (0: the canonical layouts, no swizzle)
//   bits 62..63  swizzle mode (0: none, the "interleave" layout; 1: 128B, 2: 64B, 3: 32B)
//
// The no-swizzle K-major canonical layout (the only one used here): the operand is cut into core
// matrices of 8 rows x 16 bytes (4 tf32 or 8 bf16 along k), each stored as 128 contiguous bytes
// (row r at +16·r); core matrices adjacent along k lie LBO bytes apart, those adjacent along m (A)
// or n (B) SBO bytes apart. So element (x, k) of a tile of E-byte elements sits at
//   start + (x/8)·SBO + (k·E/16)·LBO + (x%8)·16 + (k·E)%16.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MNIST_WGMMA_HD __host__ __device__
#else
#define MNIST_WGMMA_HD
#endif

namespace mnist::cuda {

MNIST_WGMMA_HD constexpr uint64_t wgmma_desc_bits(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return uint64_t((smem_addr >> 4) & 0x3FFFu) | uint64_t((lbo_bytes >> 4) & 0x3FFFu) << 16 |
         uint64_t((sbo_bytes >> 4) & 0x3FFFu) << 32;  // base offset 0, swizzle 0 (none)
}

}  // namespace mnist::cuda
