// safetensors files (the format of Hugging Face's `safetensors`, loadable by
// safetensors.torch.load_file): an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__":
// {string: string}}, then the raw little-endian tensor bytes. Only F32 tensors are written or read.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mnist {

struct TensorF32 {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // product(shape) values
};

// The whole file as bytes; tensors are stored in the given order, header padded with spaces to
// a multiple of 8 bytes (as the reference implementation does); every tensor's checksum is added
// to the metadata.
std::string encode_safetensors(const std::vector<TensorF32>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// A name read from a checkpoint, fit for a one-line message: control characters (with `ascii`,
// every byte outside printable ASCII) escaped as \xNN, at most 64 bytes shown ("..." after).
std::string printable_name(const std::string& name, bool ascii = false);

// Integrity: encode_safetensors records, for each tensor, the CRC-32 of its bytes as metadata
// "crc32.<name>" = 8 hex digits (PyTorch ignores metadata it does not know). decode_safetensors
// verifies it where present (files from elsewhere have none and still load) and refuses any
// NaN or Inf value, naming the tensor.
inline const std::string kChecksumPrefix = "crc32.";
std::string tensor_checksum(const std::vector<float>& data);

// Parses and validates a file's bytes: header length within the file, JSON well formed, every
// entry has dtype F32, a shape, offsets inside the data section matching the shape, and the
// tensors tile the data section exactly, checksums
// (where recorded) match and every value is finite. Throws InputError("<what>: <problem>") (what = path).
std::vector<TensorF32> decode_safetensors(const std::string& bytes, const std::string& what,
                                          std::map<std::string, std::string>* metadata = nullptr);

}  // namespace mnist
