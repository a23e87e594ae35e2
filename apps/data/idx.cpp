#include "apps/data/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "runtime/error.hpp"

namespace mnist {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to n bytes; returns how many were read. zlib reads raw files transparently.
std::size_t read_some(gzFile f, const std::string& path, uint8_t* dst, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const unsigned chunk = unsigned(std::min<std::size_t>(n - got, 1u << 30));
    int r = gzread(f, dst + got, chunk);
    if (r < 0) {
      int code = 0;
      const char* msg = gzerror(f, &code);
      throw InputError(cat(path, ": corrupt compressed data (", msg ? msg : "zlib error", ")"));
    }
    if (r == 0) break;
    got += std::size_t(r);
  }
  return got;
}

}  // namespace

IdxArray read_idx(const std::string& path, int expect_ndims) {
  errno = 0;
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) throw InputError(cat(path, ": cannot open (", errno ? std::strerror(errno) : "unknown error", ")"));
  const bool gz_name = ends_with(path, ".gz");
  uint8_t magic[4];
  const std::size_t got = read_some(f.get(), path, magic, 4);
  if (gz_name && gzdirect(f.get()))
    throw InputError(cat(path, ": the name ends in .gz but the file is not gzip data"));
  if (got < 4) throw InputError(cat(path, ": truncated: ", got, " bytes, too short for the IDX header"));
  if (magic[0] != 0 || magic[1] != 0)
    throw InputError(cat(path, ": bad magic (first two bytes must be zero): not an IDX file"));
  if (magic[2] != 0x08)
    throw InputError(cat(path, ": unsupported IDX element type 0x", std::hex, int(magic[2]),
                         " (only unsigned bytes, 0x08, are supported)"));
  const int ndims = magic[3];
  if (ndims < 1 || ndims > 4) throw InputError(cat(path, ": bad number of dimensions ", ndims, " (1..4)"));
  if (expect_ndims && ndims != expect_ndims)
    throw InputError(cat(path, ": has ", ndims, " dimensions, expected ", expect_ndims));
  IdxArray out;
  uint64_t total = 1;
  constexpr uint64_t kMaxBytes = uint64_t(1) << 30;
  for (int i = 0; i < ndims; ++i) {
    uint8_t b[4];
    if (read_some(f.get(), path, b, 4) < 4)
      throw InputError(cat(path, ": truncated in the header (dimension ", i, ")"));
    const uint32_t d = (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
    if (d == 0) throw InputError(cat(path, ": dimension ", i, " is 0"));
    total *= d;  // <= 2^30 * 2^32 fits in 64 bits: checked before the next multiplication
    if (total > kMaxBytes)
      throw InputError(cat(path, ": dimensions describe more than 1 GiB of data (dimension ", i, " = ", d, ")"));
    out.dims.push_back(d);
  }
  out.data.resize(std::size_t(total));
  const std::size_t payload = read_some(f.get(), path, out.data.data(), out.data.size());
  if (payload < total)
    throw InputError(cat(path, ": truncated: header declares ", total, " data bytes, file has ", payload));
  uint8_t extra;
  if (read_some(f.get(), path, &extra, 1) != 0)
    throw InputError(cat(path, ": trailing bytes after the ", total, " data bytes the header declares"));
  return out;
}

void write_idx(const std::string& path, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes{0, 0, 0x08, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(uint8_t(d >> s));
  bytes.insert(bytes.end(), data.begin(), data.end());
  GzFile f(gzopen(path.c_str(), ends_with(path, ".gz") ? "wb9" : "wbT"));
  if (!f) throw Error(cat(path, ": cannot create"));
  if (gzwrite(f.get(), bytes.data(), unsigned(bytes.size())) != int(bytes.size()))
    throw Error(cat(path, ": write failed"));
}

}  // namespace mnist
