// The fuzz entry points, shared by the libFuzzer targets (fuzz_idx.cpp, fuzz_checkpoint.cpp, built
// by run.sh with clang) and by the corpus/regression replay (replay.cpp, a normal ctest test).
//
// Each entry feeds arbitrary bytes to a loader of untrusted input and returns normally when the
// loader either accepts the bytes (then checks what it returned) or rejects them with InputError,
// the contract of apps/data and apps/io. Anything else -- another exception, a failed invariant
// (abort), a sanitizer report -- is a bug. Each runs the loader on a thread with a 64 KiB stack,
// so that unbounded recursion (a JSON value nested deeply) shows up with inputs of a few KB.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mnist::fuzz {

// IDX reader. The first byte selects the variant, the rest is the file:
//   mode % 4 == 0  raw bytes in "x-idx"           -> read_idx(path, 0)
//   mode % 4 == 1  raw bytes in "x-idx.gz"        -> read_idx (not gzip / corrupt gzip paths)
//   mode % 4 == 2  the bytes gzip-compressed, ".gz" -> read_idx(path, 0)
//   mode % 4 == 3  two files for load_image_set: 2 bytes (big-endian) = length of the images
//                  file, then the images file, then the labels file; bit 2 of mode gzips both.
void idx_input(const uint8_t* data, std::size_t size);

// Checkpoint loader: decode_safetensors on the bytes, then tensors_to_params against the default
// model (784-128-64-10) and, when the metadata names a small model ("input" <= 4096, "hidden"
// widths <= 256), against that one as well, so that small seeds reach the success path.
void checkpoint_input(const uint8_t* data, std::size_t size);

}  // namespace mnist::fuzz
