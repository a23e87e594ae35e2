// IDX files (the MNIST format): a 4-byte magic (0, 0, type, ndims), ndims big-endian uint32
// dimensions, then the row-major payload. Only unsigned-byte payloads (type 0x08) are accepted.
// Files may be raw or gzip-compressed (zlib); a name ending in ".gz" must hold gzip data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mnist {

struct IdxArray {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;  // product(dims) bytes
};

// Reads and validates one IDX file: magic, type, number of dimensions (`expect_ndims`, or any of
// 1..4 when 0), each dimension > 0, a payload size that does not overflow (at most 1 GiB), and
// exactly that many payload bytes (a truncated file and trailing bytes are both errors).
// Throws InputError("<path>: <what is wrong>").
IdxArray read_idx(const std::string& path, int expect_ndims = 0);

// Writes an IDX ubyte file (raw, or gzip when the name ends in ".gz"). Used by tests and tools.
void write_idx(const std::string& path, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data);

}  // namespace mnist
