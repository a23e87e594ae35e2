// The model's layout, summary, initialisation, checkpoints (with their checksums) and atomic writes.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "apps/io/atomic_file.hpp"
#include "apps/io/checkpoint.hpp"
#include "helpers.hpp"
#include "layers/model.hpp"
#include "runtime/error.hpp"

using namespace mnist;

TEST_CASE("the tutorial's model has 109,386 parameters in 128-byte aligned tensors") {
  ModelSpec spec;
  ParamLayout L = make_layout(spec);
  CHECK(L.count == 109386);
  REQUIRE(L.dense.size() == 3);
  CHECK(L.dense[0].in == 784);
  CHECK(L.dense[0].out == 128);
  CHECK(L.dense[2].out == 10);
  CHECK(L.dense[0].relu);
  CHECK_FALSE(L.dense[2].relu);
  for (const auto& s : L.dense) {
    CHECK(s.w_offset % 32 == 0);
    CHECK(s.b_offset % 32 == 0);
    CHECK(s.b_offset >= s.w_offset + s.w_count());
  }
  CHECK(L.storage >= L.count);
  ModelSpec deep;
  deep.hidden = {256, 128, 64};
  CHECK(make_layout(deep).count == std::size_t(784 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10));
}

TEST_CASE("ModelSpec::validate rejects bad widths and rates") {
  ModelSpec s;
  s.hidden = {};
  CHECK_THROWS_AS(s.validate(), InputError);
  s.hidden = {0};
  CHECK_THROWS_AS(s.validate(), InputError);
  s.hidden = {128};
  s.dropout = 1.0f;
  CHECK_THROWS_AS(s.validate(), InputError);
  s.dropout = -0.1f;
  CHECK_THROWS_AS(s.validate(), InputError);
}

TEST_CASE("summary_table lists the Keras layers and totals") {
  ModelSpec spec;
  const std::string t = summary_table(spec, make_layout(spec));
  for (const char* s : {"hidden1 (Dense)", "dropout1 (Dropout)", "hidden2 (Dense)", "dropout2 (Dropout)",
                        "output (Dense)", "(None, 128)", "100,480", "8,256", "650", "Total params: 109,386"})
    CHECK_MESSAGE(t.find(s) != std::string::npos, s);
  spec.dropout = 0;
  CHECK(summary_table(spec, make_layout(spec)).find("Dropout") == std::string::npos);
}

TEST_CASE("init: Glorot-uniform bounds and zero biases (Keras); 1/sqrt(fan_in) (Torch); seeded") {
  ModelSpec spec;
  ParamLayout L = make_layout(spec);
  std::vector<float> a, b, c;
  init_params(a, L, Init::Keras, 1);
  init_params(b, L, Init::Keras, 1);
  init_params(c, L, Init::Keras, 2);
  CHECK(a == b);
  CHECK(a != c);
  for (const auto& s : L.dense) {
    const double lim = std::sqrt(6.0 / (s.in + s.out));
    double sum2 = 0, mx = 0;
    for (std::size_t i = 0; i < s.w_count(); ++i) {
      const double w = a[s.w_offset + i];
      mx = std::max(mx, std::abs(w));
      sum2 += w * w;
    }
    CHECK(mx <= lim);
    CHECK(mx > 0.95 * lim);
    // Var of U(-lim, lim) = lim²/3; sample of ≥ 640 values: within 20%.
    CHECK(sum2 / double(s.w_count()) == doctest::Approx(lim * lim / 3).epsilon(0.2));
    for (int j = 0; j < s.out; ++j) CHECK(a[s.b_offset + std::size_t(j)] == 0.0f);
  }
  std::vector<float> t;
  init_params(t, L, Init::Torch, 1);
  const auto& s0 = L.dense[0];
  double mx = 0, bsum = 0;
  for (std::size_t i = 0; i < s0.w_count(); ++i) mx = std::max(mx, double(std::abs(t[s0.w_offset + i])));
  for (int j = 0; j < s0.out; ++j) bsum += std::abs(t[s0.b_offset + std::size_t(j)]);
  CHECK(mx <= 1.0 / std::sqrt(784.0));
  CHECK(bsum > 0);
}

TEST_CASE("safetensors checkpoint: byte-level header, round trip, and clear mismatch errors") {
  ModelSpec spec;
  ParamLayout L = make_layout(spec);
  std::vector<float> p;
  init_params(p, L, Init::Torch, 5);
  const test::TempDir tmp("ckpt");
  const std::string& dir = tmp.path();
  const std::string path = dir + "/m.safetensors";
  save_weights(path, spec, L, p);
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  REQUIRE(n % 8 == 0);
  const std::string header = bytes.substr(8, n);
  CHECK(header.find("\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[128,784],\"data_offsets\":[0,401408]}") !=
        std::string::npos);
  CHECK(header.find("\"fc3.bias\"") != std::string::npos);
  CHECK(bytes.size() == 8 + n + 109386 * 4);
  // fc1.weight[0][0] is the first data float, little-endian.
  float first;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  CHECK(first == p[L.dense[0].w_offset]);

  std::vector<float> q;
  load_weights(path, L, q);
  CHECK(q == p);

  // Another architecture: shapes differ, and the message names the tensor.
  ModelSpec other;
  other.hidden = {256, 64};
  try {
    load_weights(path, make_layout(other), q);
    FAIL("wrong architecture accepted");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("'fc1.weight' has shape [128,784], the model needs [256,784]") !=
          std::string::npos);
  }
  ModelSpec deeper;
  deeper.hidden = {128, 64, 32};
  try {
    load_weights(path, make_layout(deeper), q);
    FAIL("missing tensors accepted");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("missing tensor 'fc4.weight'") != std::string::npos);
  }
  // Truncations of every size in the header and data are rejected, never crash.
  for (std::size_t cut : {std::size_t(0), std::size_t(5), std::size_t(8), std::size_t(8 + n / 2), bytes.size() - 1}) {
    CAPTURE(cut);
    CHECK_THROWS_AS(decode_safetensors(bytes.substr(0, cut), "cut"), InputError);
  }
  std::string bad_dtype = bytes;
  const auto pos = bad_dtype.find("F32");
  bad_dtype.replace(pos, 3, "F16");
  CHECK_THROWS_WITH_AS(decode_safetensors(bad_dtype, "x"), doctest::Contains("dtype \"F16\""), InputError);
}

TEST_CASE("write_file_atomic replaces a file whole and leaves no temporary behind") {
  const test::TempDir tmp("atomic");
  const std::string& dir = tmp.path();
  const std::string path = dir + "/f.bin";
  write_file_atomic(path, "old contents");
  write_file_atomic(path, std::string(100000, 'x'));
  CHECK(read_file(path) == std::string(100000, 'x'));
  CHECK(access((path + ".tmp." + std::to_string(getpid())).c_str(), F_OK) != 0);
  CHECK_THROWS_AS(write_file_atomic(dir + "/no/such/dir/f", "x"), Error);

  // A link planted under the temporary file's name (it is predictable: the pid) is removed, never
  // followed: its target keeps its bytes, and the file gets the new ones. A stale temporary file
  // (a killed run with this pid) is replaced likewise.
  const std::string victim = dir + "/victim", tmp_name = path + ".tmp." + std::to_string(getpid());
  write_file_atomic(victim, "precious");
  REQUIRE(symlink(victim.c_str(), tmp_name.c_str()) == 0);
  write_file_atomic(path, "new");
  CHECK(read_file(victim) == "precious");
  CHECK(read_file(path) == "new");
  CHECK(access(tmp_name.c_str(), F_OK) != 0);
  write_file_atomic(tmp_name, "stale");
  write_file_atomic(path, "newer");
  CHECK(read_file(path) == "newer");
  CHECK(access(tmp_name.c_str(), F_OK) != 0);
}

TEST_CASE("safetensors integrity: a CRC-32 per tensor in the metadata, verified when present; NaN/Inf refused") {
  const std::vector<TensorF32> t{{"a", {3}, {1.0f, -2.5f, 3.25f}}, {"b", {2}, {0.5f, 7.0f}}};
  std::map<std::string, std::string> meta;
  const std::string bytes = encode_safetensors(t, {{"format", "pt"}});
  const std::vector<TensorF32> back = decode_safetensors(bytes, "f", &meta);
  REQUIRE(back.size() == 2);
  CHECK(back[0].data == t[0].data);
  CHECK(meta.at("format") == "pt");
  // zlib's crc32 of the little-endian bytes of {1.0f, -2.5f, 3.25f}, computed independently
  // (python3 -c "import zlib,struct; print('%08x' % zlib.crc32(struct.pack('<3f', 1, -2.5, 3.25)))").
  CHECK(meta.at("crc32.a") == "4e863144");
  CHECK(meta.at("crc32.a") == tensor_checksum(t[0].data));

  // Every single-bit flip of the data section is caught, naming the tensor.
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[std::size_t(i)])) << (8 * i);
  for (std::size_t byte = 8 + n; byte < bytes.size(); ++byte)
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[byte] = char(flipped[byte] ^ (1 << bit));
      CAPTURE(byte);
      CAPTURE(bit);
      CHECK_THROWS_WITH_AS(decode_safetensors(flipped, "f"),
                           doctest::Contains(byte < 8 + n + 12 ? "'a' fails its checksum" : "'b' fails its checksum"),
                           InputError);
    }
  // A file without checksums (as other tools write) still loads; NaN and Inf never do.
  std::string plain = bytes;
  for (const char* key : {"\"crc32.a\":\"", "\"crc32.b\":\""}) {
    const std::size_t at = plain.find(key);
    REQUIRE(at != std::string::npos);
    plain.replace(at + 1, 5, "xxxxx");  // same length: the key is renamed, no longer a checksum
  }
  CHECK(decode_safetensors(plain, "f")[1].data == t[1].data);
  CHECK_THROWS_WITH_AS(decode_safetensors(encode_safetensors({{"w", {2}, {1.0f, NAN}}}), "f"),
                       doctest::Contains("'w' holds nan at index 1"), InputError);
  CHECK_THROWS_WITH_AS(decode_safetensors(encode_safetensors({{"w", {1}, {-INFINITY}}}), "f"),
                       doctest::Contains("'w' holds -inf at index 0"), InputError);
}
