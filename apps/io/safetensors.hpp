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
// a multiple of 8 bytes (as the reference implementation does).
std::string encode_safetensors(const std::vector<TensorF32>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Parses and validates a file's bytes: header length within the file, JSON well formed, every
// entry has dtype F32, a shape, offsets inside the data section matching the shape, and the
// tensors tile the data section exactly. Throws InputError("<what>: <problem>") (what = path).
// A name read from a checkpoint, fit for a one-line message: control characters escaped as \xNN,
// at most 64 bytes shown ("..." after).
std::string printable_name(const std::string& name);

std::vector<TensorF32> decode_safetensors(const std::string& bytes, const std::string& what,
                                          std::map<std::string, std::string>* metadata = nullptr);

}  // namespace mnist
