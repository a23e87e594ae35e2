// The IDX reader on good files (raw and gzip) and on each kind of broken file: every broken
// case must raise an InputError whose message names the file and the problem.
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>

#include "apps/data/idx.hpp"
#include "apps/data/mnist.hpp"
#include "helpers.hpp"
#include "runtime/error.hpp"
#include "runtime/huge_pages.hpp"

using namespace mnist;

namespace {

// One directory for the whole file, removed at exit.
std::string tmp_dir() {
  static const test::TempDir dir("idx_test");
  return dir.path();
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<uint8_t> idx_bytes(std::vector<uint8_t> magic, const std::vector<uint32_t>& dims, std::size_t payload) {
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) magic.push_back(uint8_t(d >> s));
  for (std::size_t i = 0; i < payload; ++i) magic.push_back(uint8_t(i * 7));
  return magic;
}

// Asserts that reading `path` throws InputError mentioning the path and `needle`.
void expect_input_error(const std::string& path, const std::string& needle, int ndims = 0) {
  try {
    read_idx(path, ndims);
    FAIL("no error for " << path);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    CHECK_MESSAGE(msg.find(path) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(needle) != std::string::npos, msg);
  }
}

// Writes `data` under `dims` to tmp_dir() + name (gzip where the name ends in .gz), reads it back
// and checks it whole; returns the path.
std::string check_round_trip(const char* name, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  const std::string p = tmp_dir() + name;
  write_idx(p, dims, data);
  const IdxArray a = read_idx(p, int(dims.size()));
  CHECK(a.dims == dims);
  CHECK(a.data == data);
  return p;
}

}  // namespace

TEST_CASE("read_idx reads raw and gzip files written by write_idx") {
  std::vector<uint8_t> data(3 * 4 * 5);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 13 + 1);
  for (const char* name : {"/ok.idx", "/ok.idx.gz"}) check_round_trip(name, {3, 4, 5}, data);
}

// Large enough for the buffers to be advised onto huge pages (runtime/huge_pages.hpp) and, for a
// gzip file, for its inflated buffer to become the payload itself (idx.cpp's take_exactly).
TEST_CASE("read_idx: a payload of several MiB, and one byte short of it or past it") {
  std::vector<uint8_t> data(std::size_t(6) << 20);
  uint32_t x = 12345;
  for (uint8_t& b : data) b = uint8_t((x = x * 1664525u + 1013904223u) >> 24);
  for (const char* name : {"/big.idx", "/big.idx.gz"}) {
    const std::string p = check_round_trip(name, {3, 1024, 2048}, data);
    // The same bytes under a header that claims one more, and one fewer, than the file holds.
    const bool gz = std::string(name).find(".gz") != std::string::npos;
    for (const uint32_t claim : {uint32_t(data.size() + 1), uint32_t(data.size() - 1)}) {
      std::vector<uint8_t> bytes{0, 0, 8, 1};
      for (int s = 24; s >= 0; s -= 8) bytes.push_back(uint8_t(claim >> s));
      bytes.insert(bytes.end(), data.begin(), data.end());
      gzFile f = gzopen(p.c_str(), gz ? "wb1" : "wbT");
      REQUIRE(f != nullptr);
      REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
      gzclose(f);
      expect_input_error(p, claim > data.size() ? "truncated" : "trailing bytes", 1);
    }
  }
}

TEST_CASE("reserve_huge: the vector's capacity and contents are a plain reserve's") {
  for (const std::size_t n : {std::size_t(100), std::size_t(5) << 20, (std::size_t(9) << 20) + 7}) {
    std::vector<uint8_t> v{1, 2, 3};
    reserve_huge(v, n);
    CHECK(v.capacity() >= n);
    CHECK(v == std::vector<uint8_t>{1, 2, 3});
    v.resize(n, 9);
    CHECK(v[2] == 3);
    CHECK(v[n - 1] == 9);
    reserve_huge(v, 10);  // smaller than the capacity: nothing changes
    CHECK(v.size() == n);
  }
}

TEST_CASE("read_idx rejects each kind of broken file with a clear message") {
  const std::string d = tmp_dir();
  write_bytes(d + "/magic", idx_bytes({1, 0, 8, 1}, {4}, 4));
  expect_input_error(d + "/magic", "bad magic");
  write_bytes(d + "/type", idx_bytes({0, 0, 0x0D, 1}, {4}, 16));
  expect_input_error(d + "/type", "element type");
  write_bytes(d + "/ndims0", idx_bytes({0, 0, 8, 0}, {}, 0));
  expect_input_error(d + "/ndims0", "number of dimensions");
  write_bytes(d + "/ndims", idx_bytes({0, 0, 8, 1}, {4}, 4));
  expect_input_error(d + "/ndims", "expected 3", 3);
  write_bytes(d + "/zero", idx_bytes({0, 0, 8, 3}, {0, 28, 28}, 0));
  expect_input_error(d + "/zero", "is 0");
  write_bytes(d + "/overflow", idx_bytes({0, 0, 8, 3}, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, 0));
  expect_input_error(d + "/overflow", "more than 1 GiB");
  write_bytes(d + "/short_header", {0, 0, 8, 3, 0, 0});
  expect_input_error(d + "/short_header", "truncated");
  write_bytes(d + "/tiny", {0, 0});
  expect_input_error(d + "/tiny", "truncated");
  write_bytes(d + "/truncated", idx_bytes({0, 0, 8, 3}, {2, 28, 28}, 2 * 28 * 28 - 1));
  expect_input_error(d + "/truncated", "truncated");
  write_bytes(d + "/extra", idx_bytes({0, 0, 8, 1}, {10}, 11));
  expect_input_error(d + "/extra", "trailing bytes");
  write_bytes(d + "/plain.gz", idx_bytes({0, 0, 8, 1}, {10}, 10));
  expect_input_error(d + "/plain.gz", "not gzip");
  expect_input_error(d + "/does_not_exist", "cannot open");
  // A gzip stream cut in the middle.
  write_idx(d + "/full.gz", {1000}, std::vector<uint8_t>(1000, 3));
  std::ifstream in(d + "/full.gz", std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), {});
  gz.resize(gz.size() / 2);
  write_bytes(d + "/cut.gz", gz);
  CHECK_THROWS_AS(read_idx(d + "/cut.gz"), InputError);
}

// .gz files are inflated whole by libdeflate where it is built in, and streamed through zlib
// otherwise or whenever the fast path has a doubt: both must give the same bytes and errors.
TEST_CASE("read_idx: several gzip members, damaged gzip data, an IDX error inside good gzip") {
  const std::string d = tmp_dir();
  const std::vector<uint8_t> bytes = idx_bytes({0, 0, 8, 2}, {40, 100}, 4000);
  // Two gzip members, as `cat a.gz b.gz` makes: zlib reads them as one stream.
  auto write_member = [](const std::string& path, const char* mode, const uint8_t* p, std::size_t n) {
    gzFile g = gzopen(path.c_str(), mode);
    REQUIRE(g);
    REQUIRE(gzwrite(g, p, unsigned(n)) == int(n));
    REQUIRE(gzclose(g) == Z_OK);
  };
  write_member(d + "/two.gz", "wb9", bytes.data(), 1000);
  write_member(d + "/two.gz", "ab9", bytes.data() + 1000, bytes.size() - 1000);
  IdxArray a = read_idx(d + "/two.gz", 2);
  CHECK(a.dims == std::vector<uint32_t>{40, 100});
  CHECK(a.data == std::vector<uint8_t>(bytes.begin() + 12, bytes.end()));
  // A flipped byte inside the compressed data: refused, never returned as data.
  write_member(d + "/ok.gz", "wb9", bytes.data(), bytes.size());
  std::ifstream in(d + "/ok.gz", std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), {});
  gz[gz.size() / 2] ^= 0x55;
  write_bytes(d + "/flipped.gz", gz);
  CHECK_THROWS_AS(read_idx(d + "/flipped.gz"), InputError);
  // Good gzip around a bad IDX: the IDX checks speak.
  const std::vector<uint8_t> extra = idx_bytes({0, 0, 8, 1}, {10}, 11);
  write_member(d + "/extra.gz", "wb9", extra.data(), extra.size());
  expect_input_error(d + "/extra.gz", "trailing bytes");
  const std::vector<uint8_t> cut = idx_bytes({0, 0, 8, 1}, {10}, 9);
  write_member(d + "/short.gz", "wb9", cut.data(), cut.size());
  expect_input_error(d + "/short.gz", "truncated");
}

TEST_CASE("load_image_set checks images against labels") {
  const std::string d = tmp_dir();
  std::vector<uint8_t> img(4 * 28 * 28, 9);
  write_idx(d + "/img", {4, 28, 28}, img);
  write_idx(d + "/lab_ok", {4}, {1, 2, 3, 9});
  write_idx(d + "/lab_count", {5}, {1, 2, 3, 4, 5});
  write_idx(d + "/lab_big", {4}, {1, 2, 10, 4});
  ImageSet s = load_image_set(d + "/img", d + "/lab_ok");
  CHECK(s.n == 4);
  CHECK(s.dim() == 784);
  try {
    load_image_set(d + "/img", d + "/lab_count");
    FAIL("count mismatch accepted");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("4 images but") != std::string::npos);
  }
  try {
    load_image_set(d + "/img", d + "/lab_big");
    FAIL("label 10 accepted");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("label 10 at index 2") != std::string::npos);
  }
  CHECK_THROWS_AS(load_image_set(d + "/lab_ok", d + "/lab_ok"), InputError);  // labels as images: 1 dim
}

TEST_CASE("load_mnist_dir names a missing directory or file") {
  try {
    load_mnist_dir("/nonexistent/mnist");
    FAIL("missing dir accepted");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("/nonexistent/mnist") != std::string::npos);
  }
  try {
    load_mnist_dir(tmp_dir());
    FAIL("dir without files accepted");
  } catch (const InputError& e) {
    CHECK_MESSAGE(std::string(e.what()).find(": missing train-") != std::string::npos, std::string(e.what()));
    CHECK(std::string(e.what()).find("apps/fetch_data.sh") != std::string::npos);
  }
}

TEST_CASE("split_train_val: Keras takes the last fraction in order, random is a seeded partition") {
  ImageSet all;
  all.n = 100;
  all.rows = all.cols = 1;
  for (int i = 0; i < 100; ++i) {
    all.images.push_back(uint8_t(i));
    all.labels.push_back(uint8_t(i % 10));
  }
  const TrainValSplit keras = split_train_val(all, 0.2, SplitMode::Keras, 1);
  REQUIRE(keras.train.n == 80);
  REQUIRE(keras.val.n == 20);
  CHECK(keras.train.dim == 1);
  CHECK(keras.val.dim == 1);
  for (int i = 0; i < 80; ++i) CHECK((keras.train.images[i] == i && keras.train.labels[i] == i % 10));
  for (int i = 0; i < 20; ++i) CHECK((keras.val.images[i] == 80 + i && keras.val.labels[i] == (80 + i) % 10));
  // Nothing copied: the two parts are ranges of all's rows.
  CHECK(keras.train.images == all.images.data());
  CHECK(keras.val.images == all.images.data() + 80);
  CHECK(keras.val.labels == all.labels.data() + 80);
  CHECK(keras.owned_train.n == 0);
  CHECK(keras.owned_val.n == 0);
  auto values = [](const DataView& v) { return std::vector<uint8_t>(v.images, v.images + std::size_t(v.n) * v.dim); };
  TrainValSplit r1 = split_train_val(all, 0.2, SplitMode::Random, 1);
  const TrainValSplit r2 = split_train_val(all, 0.2, SplitMode::Random, 1);
  const TrainValSplit r3 = split_train_val(all, 0.2, SplitMode::Random, 2);
  REQUIRE(r1.train.n == 80);
  REQUIRE(r1.val.n == 20);
  CHECK(values(r1.val) == values(r2.val));
  CHECK(values(r1.val) != values(r3.val));
  const TrainValSplit moved = std::move(r1);  // the views follow their storage
  CHECK(moved.train.images == moved.owned_train.images.data());
  CHECK(moved.val.images == moved.owned_val.images.data());
  std::vector<int> seen(100, 0);
  for (const DataView& v : {moved.train, moved.val})
    for (int i = 0; i < v.n; ++i) {
      seen[v.images[i]]++;
      CHECK(v.labels[i] == v.images[i] % 10);  // each row's label came with it
    }
  for (int c : seen) CHECK(c == 1);
  CHECK_THROWS_AS(split_train_val(all, 0.0, SplitMode::Keras, 1), InputError);
  CHECK_THROWS_AS(split_train_val(all, 1.0, SplitMode::Keras, 1), InputError);
  CHECK_THROWS_AS(split_train_val(all, 0.001, SplitMode::Keras, 1), InputError);  // 0 validation examples
}
