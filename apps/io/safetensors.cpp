#include "apps/io/safetensors.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace mnist {

static_assert(sizeof(float) == 4, "F32 tensors are 4-byte floats");

std::string printable_name(const std::string& name, bool ascii) {
  std::string out;
  for (std::size_t i = 0; i < name.size() && i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F || (ascii && c >= 0x80))
      out += cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
    else
      out += char(c);
  }
  if (name.size() > 64) out += "...";
  return out;
}

std::string tensor_checksum(const std::vector<float>& data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(data.data());
  std::size_t left = data.size() * sizeof(float);
  while (left > 0) {  // crc32 takes a uInt length
    const uInt n = uInt(std::min<std::size_t>(left, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    left -= n;
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return hex;
}

namespace {

// A JSON value for a message. Scalars are shown (clipped); arrays and objects only by their type:
// dump() recurses, and a hostile header can nest a million levels deep.
std::string brief(const nlohmann::json& v) {
  if (v.is_structured()) return std::string("a JSON ") + v.type_name();
  std::string s = v.dump();
  if (s.size() > 64) s = s.substr(0, 64) + "...";
  return s;
}

// The string value of __metadata__[key], when the header has one.
bool metadata_entry(const nlohmann::json& header, const std::string& key, std::string* value) {
  const auto m = header.find("__metadata__");
  if (m == header.end() || !m->is_object()) return false;
  const auto v = m->find(key);
  if (v == m->end() || !v->is_string()) return false;
  *value = v->get<std::string>();
  return true;
}

}  // namespace

std::string encode_safetensors(const std::vector<TensorF32>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::map<std::string, std::string> meta = metadata;
  for (const TensorF32& t : tensors) meta[kChecksumPrefix + t.name] = tensor_checksum(t.data);
  if (!meta.empty()) header["__metadata__"] = meta;
  std::size_t offset = 0;
  for (const TensorF32& t : tensors) {
    int64_t count = 1;
    for (int64_t d : t.shape) count *= d;
    MNIST_CHECK(std::size_t(count) == t.data.size(), t.name, ": shape holds ", count, " values, data has ",
                t.data.size());
    const std::size_t bytes = t.data.size() * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((n >> (8 * i)) & 0xFF);
  out += json;
  out.reserve(out.size() + offset);
  for (const TensorF32& t : tensors)  // x86-64 and aarch64 are little-endian, as the format is
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
  return out;
}

std::vector<TensorF32> decode_safetensors(const std::string& bytes, const std::string& what,
                                          std::map<std::string, std::string>* metadata) {
  if (bytes.size() < 8) throw InputError(cat(what, ": truncated: ", bytes.size(), " bytes, no safetensors header"));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[std::size_t(i)])) << (8 * i);
  if (n < 2)
    throw InputError(cat(what, ": header length ", n, " is too small: the header is a JSON object, at least \"{}\""));
  if (n > bytes.size() - 8)
    throw InputError(cat(what, ": header length ", n, " does not fit in a file of ", bytes.size(), " bytes"));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n));
  } catch (const nlohmann::json::exception& e) {
    // The message quotes the last token read: megabytes long, or bytes that are not UTF-8. Shown
    // clipped, every byte outside printable ASCII escaped.
    std::string msg = e.what(), shown;
    for (std::size_t i = 0; i < msg.size() && i < 240; i += 64) shown += printable_name(msg.substr(i, 64), true);
    if (msg.size() > 240) shown += "...";
    throw InputError(cat(what, ": bad safetensors header: ", shown));
  }
  if (!header.is_object()) throw InputError(cat(what, ": bad safetensors header: not a JSON object"));
  const std::size_t data_begin = 8 + std::size_t(n);
  const std::size_t data_size = bytes.size() - data_begin;
  std::vector<TensorF32> out;
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  std::string stored;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (metadata && it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) (*metadata)[m.key()] = m->get<std::string>();
      continue;
    }
    const nlohmann::json& e = *it;
    const std::string name = printable_name(it.key());
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw InputError(cat(what, ": tensor '", name, "' lacks dtype, shape or data_offsets"));
    if (!e["dtype"].is_string() || e["dtype"] != "F32")
      throw InputError(cat(what, ": tensor '", name, "' has dtype ", brief(e["dtype"]), ", expected \"F32\""));
    TensorF32 t;
    t.name = it.key();
    uint64_t count = 1;
    if (!e["shape"].is_array()) throw InputError(cat(what, ": tensor '", name, "' shape is not a list"));
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t(1) << 31))
        throw InputError(cat(what, ": tensor '", name, "' has a bad dimension ", brief(d)));
      t.shape.push_back(d.get<int64_t>());
      count *= uint64_t(t.shape.back());
      if (count > data_size) throw InputError(cat(what, ": tensor '", name, "' is larger than the file"));
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw InputError(cat(what, ": tensor '", name, "' data_offsets is not [begin, end]"));
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en)
      throw InputError(cat(what, ": tensor '", name, "' data_offsets [", b, ", ", en, "] are reversed (begin after end)"));
    if (en > data_size)
      throw InputError(cat(what, ": tensor '", name, "' data_offsets [", b, ", ", en, "] lie outside the ",
                           data_size, " data bytes (truncated file?)"));
    if (en - b != count * sizeof(float))
      throw InputError(cat(what, ": tensor '", name, "' has ", en - b, " data bytes, its shape needs ",
                           count * sizeof(float)));
    t.data.resize(count);
    if (count) std::memcpy(t.data.data(), bytes.data() + data_begin + b, count * sizeof(float));
    if (metadata_entry(header, kChecksumPrefix + t.name, &stored) && stored != tensor_checksum(t.data))
      throw InputError(cat(what, ": tensor '", name, "' fails its checksum (crc32 ", tensor_checksum(t.data),
                           ", recorded ", printable_name(stored), "): the file is corrupt"));
    for (std::size_t i = 0; i < t.data.size(); ++i)
      if (!std::isfinite(t.data[i]))
        throw InputError(cat(what, ": tensor '", name, "' holds ", t.data[i], " at index ", i,
                             ": a checkpoint must hold finite numbers only"));
    ranges.emplace_back(b, en);
    out.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  std::size_t expect = 0;
  for (const auto& r : ranges) {
    if (r.first != expect) throw InputError(cat(what, ": tensors overlap or leave gaps in the data section"));
    expect = r.second;
  }
  if (expect != data_size)
    throw InputError(cat(what, ": ", data_size - expect, " trailing bytes after the last tensor"));
  return out;
}

}  // namespace mnist
