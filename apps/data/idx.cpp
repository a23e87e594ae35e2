#include "apps/data/idx.hpp"

#include <zlib.h>
#if MNIST_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "runtime/error.hpp"
#include "runtime/huge_pages.hpp"

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
      std::string what = msg ? msg : "zlib error";
      if (what.compare(0, path.size() + 2, path + ": ") == 0) what.erase(0, path.size() + 2);  // zlib prefixes the path
      throw InputError(cat(path, ": corrupt compressed data (", what, ")"));
    }
    if (r == 0) {
      // zlib reports a gzip stream cut short as a normal end of file with Z_BUF_ERROR pending.
      int code = Z_OK;
      gzerror(f, &code);
      if (code == Z_BUF_ERROR)
        throw InputError(cat(path, ": corrupt compressed data (the gzip stream ends early: truncated file)"));
      break;
    }
    got += std::size_t(r);
  }
  return got;
}

// The bytes of an IDX file, uncompressed: from memory (the libdeflate fast path) or streamed
// through zlib (every other case, and the one that words the errors of a damaged file).
class Source {
 public:
  Source(const std::string& path, GzFile f) : path_(path), f_(std::move(f)) {}
  explicit Source(const std::string& path, std::vector<uint8_t> bytes) : path_(path), mem_(std::move(bytes)) {}
  // Up to n bytes into dst; how many there were.
  std::size_t read(uint8_t* dst, std::size_t n) {
    if (f_) return read_some(f_.get(), path_, dst, n);
    const std::size_t k = std::min(n, mem_.size() - pos_);
    std::memcpy(dst, mem_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  bool direct() const { return f_ && gzdirect(f_.get()); }  // zlib reads the file as it is (not gzip)
  // When the source is in memory and exactly n bytes are left: those bytes as a vector of their
  // own, made from the inflated buffer in place (no second buffer of the payload's size, whose
  // fresh pages cost more than the copy), and true. Otherwise (a stream, or a size that read_idx
  // reports as truncated or as trailing bytes) false, and nothing is consumed.
  bool take_exactly(std::size_t n, std::vector<uint8_t>& out) {
    if (f_ || mem_.size() - pos_ != n) return false;
    mem_.erase(mem_.begin(), mem_.begin() + std::ptrdiff_t(pos_));
    out = std::move(mem_);
    mem_.clear();
    pos_ = 0;
    return true;
  }

 private:
  std::string path_;
  GzFile f_;
  std::vector<uint8_t> mem_;
  std::size_t pos_ = 0;
};

#if MNIST_HAVE_LIBDEFLATE
// Whole-file inflation of a well-formed single-member gzip file with libdeflate, ~3x the speed of
// zlib's streaming gzread (the 47 MB of MNIST's training images are most of a run's start-up).
// Returns false on any doubt (not gzip, a trailer size past the 1 GiB limit, several members,
// a decoding error, a size other than the trailer's): the caller then reads the file with zlib,
// which reports what is wrong in its own words.
bool inflate_whole(const std::string& path, std::vector<uint8_t>& out) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> fp(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!fp || std::fseek(fp.get(), 0, SEEK_END) != 0) return false;
  const long size = std::ftell(fp.get());
  if (size < 18 || std::fseek(fp.get(), 0, SEEK_SET) != 0) return false;  // a gzip member has >= 18 bytes
  std::vector<uint8_t> in(static_cast<std::size_t>(size));
  if (std::fread(in.data(), 1, in.size(), fp.get()) != in.size() || in[0] != 0x1f || in[1] != 0x8b) return false;
  const std::size_t n = in.size();
  const uint32_t isize = uint32_t(in[n - 4]) | uint32_t(in[n - 3]) << 8 | uint32_t(in[n - 2]) << 16 | uint32_t(in[n - 1]) << 24;
  if (isize > (uint32_t(1) << 30) + 64) return false;  // read_idx's 1 GiB limit, plus the header
  std::unique_ptr<libdeflate_decompressor, void (*)(libdeflate_decompressor*)> d(libdeflate_alloc_decompressor(),
                                                                                libdeflate_free_decompressor);
  if (!d) return false;
  reserve_huge(out, isize);  // (runtime/huge_pages.hpp: first touched by the resize)
  out.resize(isize);
  std::size_t in_used = 0, out_used = 0;
  const libdeflate_result r =
      libdeflate_gzip_decompress_ex(d.get(), in.data(), n, out.data(), out.size(), &in_used, &out_used);
  return r == LIBDEFLATE_SUCCESS && in_used == n && out_used == isize;
}
#endif

Source open_source(const std::string& path) {
#if MNIST_HAVE_LIBDEFLATE
  std::vector<uint8_t> bytes;
  if (inflate_whole(path, bytes)) return Source(path, std::move(bytes));
#endif
  errno = 0;
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) throw InputError(cat(path, ": cannot open (", errno ? std::strerror(errno) : "unknown error", ")"));
  return Source(path, std::move(f));
}

}  // namespace

IdxArray read_idx(const std::string& path, int expect_ndims) {
  Source f = open_source(path);
  const bool gz_name = ends_with(path, ".gz");
  uint8_t magic[4];
  const std::size_t got = f.read(magic, 4);
  if (gz_name && f.direct())
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
    if (f.read(b, 4) < 4)
      throw InputError(cat(path, ": truncated in the header (dimension ", i, ")"));
    const uint32_t d = (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | b[3];
    if (d == 0) throw InputError(cat(path, ": dimension ", i, " is 0"));
    total *= d;  // <= 2^30 * 2^32 fits in 64 bits: checked before the next multiplication
    if (total > kMaxBytes)
      throw InputError(cat(path, ": dimensions describe more than 1 GiB of data (dimension ", i, " = ", d, ")"));
    out.dims.push_back(d);
  }
  if (f.take_exactly(std::size_t(total), out.data)) return out;
  // Streamed: the buffer grows with the bytes actually read (doubling from 64 KiB), so a tiny file
  // whose header claims up to 1 GiB is reported as truncated without allocating that much first.
  std::size_t payload = 0;
  while (payload < total) {
    const std::size_t want = std::size_t(std::min<uint64_t>(total - payload, std::max<uint64_t>(payload, 1u << 16)));
    out.data.resize(payload + want);
    const std::size_t got = f.read(out.data.data() + payload, want);
    payload += got;
    if (got < want) break;
  }
  if (payload < total)
    throw InputError(cat(path, ": truncated: header declares ", total, " data bytes, file has ", payload));
  uint8_t extra;
  if (f.read(&extra, 1) != 0)
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
