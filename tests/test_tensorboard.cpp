// TensorBoard event files: CRC32C, TFRecord framing (both CRCs, corruption and truncation
// detected), the Event layout Keras writes (file_version first, tags, steps, values) and the
// histograms (bucket counts add up to the number of weights).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "apps/io/atomic_file.hpp"
#include "apps/io/tensorboard.hpp"
#include "helpers.hpp"
#include "layers/model.hpp"
#include "runtime/error.hpp"

namespace fs = std::filesystem;
using namespace mnist;

namespace {


// The single event file of a run directory.
std::string event_file(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) found.push_back(e.path().string());
  REQUIRE(found.size() == 1);
  return found[0];
}

}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value and TFRecord's mask") {
  const std::string s = "123456789";
  CHECK(crc32c(s.data(), s.size()) == 0xE3069283u);
  // Incremental use gives the same value.
  CHECK(crc32c(s.data() + 4, 5, crc32c(s.data(), 4)) == 0xE3069283u);
  CHECK(crc32c(nullptr, 0) == 0u);
  const uint32_t c = 0xE3069283u;
  CHECK(masked_crc32c(s.data(), s.size()) == uint32_t(((c >> 15) | (c << 17)) + 0xa282ead8u));
}

TEST_CASE("TFRecord framing round-trips and detects damage") {
  const std::vector<std::string> payloads = {"", "a", std::string(1000, 'x'), "brain.Event:2"};
  std::string file;
  for (const auto& p : payloads) file += encode_tfrecord(p);
  CHECK(file.size() == 16 * payloads.size() + 0 + 1 + 1000 + 13);
  CHECK(decode_tfrecords(file, "mem") == payloads);

  // Header layout: u64 LE length, then the masked CRC of those 8 bytes.
  const std::string rec = encode_tfrecord("hello");
  CHECK(uint8_t(rec[0]) == 5);
  for (int i = 1; i < 8; ++i) CHECK(rec[std::size_t(i)] == 0);
  const uint32_t len_crc = uint32_t(uint8_t(rec[8])) | uint32_t(uint8_t(rec[9])) << 8 |
                           uint32_t(uint8_t(rec[10])) << 16 | uint32_t(uint8_t(rec[11])) << 24;
  CHECK(len_crc == masked_crc32c(rec.data(), 8));
  CHECK(rec.substr(12, 5) == "hello");

  SUBCASE("a flipped byte in the data fails the data CRC") {
    std::string bad = file;
    bad[16 + 17 + 12 + 500] ^= 0x01;  // inside the 1000-byte payload of record 2
    CHECK_THROWS_AS(decode_tfrecords(bad, "mem"), InputError);
    try {
      decode_tfrecords(bad, "mem");
    } catch (const InputError& e) {
      CHECK(std::string(e.what()).find("record 2") != std::string::npos);
      CHECK(std::string(e.what()).find("data CRC") != std::string::npos);
    }
  }
  SUBCASE("a flipped byte in a length fails the length CRC") {
    std::string bad = file;
    bad[16] ^= 0x40;  // length of record 1
    CHECK_THROWS_WITH_AS(decode_tfrecords(bad, "mem"), doctest::Contains("length CRC"), InputError);
  }
  SUBCASE("a flipped byte in a CRC itself is detected") {
    std::string bad = file;
    bad[file.size() - 1] ^= 0x80;
    CHECK_THROWS_AS(decode_tfrecords(bad, "mem"), InputError);
  }
  SUBCASE("truncation is detected") {
    CHECK_THROWS_WITH_AS(decode_tfrecords(file.substr(0, file.size() - 3), "mem"), doctest::Contains("truncated"),
                         InputError);
    CHECK_THROWS_WITH_AS(decode_tfrecords(file.substr(0, 5), "mem"), doctest::Contains("truncated"), InputError);
  }
}

TEST_CASE("make_histogram: equal-width buckets between min and max") {
  const std::vector<float> v = {-1.0f, -0.5f, 0.0f, 0.25f, 1.0f, NAN};
  const TbHistogram h = make_histogram(v.data(), v.size(), 4);
  CHECK(h.num == 5);
  CHECK(h.min == -1.0);
  CHECK(h.max == 1.0);
  CHECK(h.sum == doctest::Approx(-0.25));
  CHECK(h.sum_squares == doctest::Approx(1 + 0.25 + 0.0625 + 1));
  REQUIRE(h.bucket_limit.size() == 4);
  CHECK(h.bucket_limit[0] == doctest::Approx(-0.5));
  CHECK(h.bucket_limit[3] == 1.0);
  CHECK(h.bucket == std::vector<double>{1, 1, 2, 1});  // max goes into the last bucket

  const std::vector<float> zeros(7, 0.0f);
  const TbHistogram z = make_histogram(zeros.data(), zeros.size());
  CHECK(z.bucket == std::vector<double>{7});
  CHECK(z.bucket_limit == std::vector<double>{0.0});
}

TEST_CASE("KerasTensorBoard writes Keras's runs, tags, steps and histograms") {
  const test::TempDir tmp("tb");
  const std::string& dir = tmp.path();
  ModelSpec spec;  // 784-128-64-10, dropout 0.2
  const ParamLayout layout = make_layout(spec);
  std::vector<float> params;
  init_params(params, layout, Init::Keras, 42);

  const int kEpochs = 3;
  {
    KerasTensorBoard tb(dir + "/logs");
    CHECK(fs::path(tb.train_path()).parent_path() == fs::path(dir + "/logs/train"));
    CHECK(fs::path(tb.validation_path()).parent_path() == fs::path(dir + "/logs/validation"));
    for (int e = 1; e <= kEpochs; ++e) {
      EpochRecord r;
      r.epoch = e;
      r.loss = 1.0 / e;
      r.accuracy = 0.9 + 0.01 * e;
      r.val_loss = 1.5 / e;
      r.val_accuracy = 0.85 + 0.01 * e;
      r.lr = 1e-3 / e;
      tb.on_epoch_end(r, spec, layout, params);
      for (std::size_t i = 0; i < params.size(); i += 3) params[i] *= 1.01f;
    }
  }

  const std::string train = event_file(dir + "/logs/train");
  const std::string val = event_file(dir + "/logs/validation");
  // events.out.tfevents.<secs>.<host>.<pid>.<counter>.v2
  const std::string name = fs::path(train).filename().string();
  CHECK(name.size() > 3);
  CHECK(name.substr(name.size() - 3) == ".v2");
  CHECK(name.find("." + std::to_string(::getpid()) + ".") != std::string::npos);
  CHECK(train != val);

  // Every record passes both CRCs (read_tfrecords verifies them).
  const auto records = read_tfrecords(train);
  const auto events = read_events(train);
  REQUIRE(events.size() == records.size());
  REQUIRE(!events.empty());
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[0].values.empty());
  CHECK(events[0].wall_time > 1.6e9);

  std::map<std::string, std::vector<std::pair<int64_t, double>>> scalars;
  std::map<std::string, int> histo_counts;
  for (std::size_t i = 1; i < events.size(); ++i) {
    CHECK(events[i].file_version.empty());
    REQUIRE(events[i].values.size() == 1);
    const TbValue& v = events[i].values[0];
    CHECK(events[i].step >= 0);
    CHECK(events[i].step < kEpochs);
    if (v.has_simple_value) scalars[v.tag].push_back({events[i].step, v.simple_value});
    if (v.has_histogram) {
      ++histo_counts[v.tag];
      const TbHistogram& h = v.histogram;
      double total = 0;
      for (double c : h.bucket) total += c;
      CHECK(h.bucket.size() == h.bucket_limit.size());
      CHECK(total == h.num);
      std::size_t expect = 0;
      for (std::size_t l = 0; l < layout.dense.size(); ++l) {
        const std::string lname = l + 1 == layout.dense.size() ? "output" : "hidden" + std::to_string(l + 1);
        if (v.tag == lname + "/kernel/histogram") expect = layout.dense[l].w_count();
        if (v.tag == lname + "/bias/histogram") expect = std::size_t(layout.dense[l].out);
      }
      CHECK_MESSAGE(expect > 0, "unexpected histogram tag " << v.tag);
      CHECK(h.num == double(expect));
      CHECK(h.min <= h.max);
    }
  }
  CHECK(scalars.size() == 3);
  REQUIRE(scalars["epoch_loss"].size() == kEpochs);
  REQUIRE(scalars["epoch_accuracy"].size() == kEpochs);
  REQUIRE(scalars["epoch_learning_rate"].size() == kEpochs);
  for (int e = 0; e < kEpochs; ++e) {
    CHECK(scalars["epoch_loss"][std::size_t(e)].first == e);
    CHECK(scalars["epoch_loss"][std::size_t(e)].second == doctest::Approx(1.0 / (e + 1)).epsilon(1e-6));
    CHECK(scalars["epoch_learning_rate"][std::size_t(e)].second == doctest::Approx(1e-3 / (e + 1)).epsilon(1e-6));
  }
  const std::vector<std::string> tags = {"hidden1/kernel/histogram", "hidden1/bias/histogram",
                                         "hidden2/kernel/histogram", "hidden2/bias/histogram",
                                         "output/kernel/histogram",  "output/bias/histogram"};
  CHECK(histo_counts.size() == tags.size());
  for (const auto& t : tags) CHECK_MESSAGE(histo_counts[t] == kEpochs, t);

  // Validation: only loss and accuracy, no histograms.
  const auto vevents = read_events(val);
  CHECK(vevents[0].file_version == "brain.Event:2");
  CHECK(vevents.size() == 1 + 2 * kEpochs);
  std::map<std::string, int> vtags;
  for (std::size_t i = 1; i < vevents.size(); ++i) {
    REQUIRE(vevents[i].values.size() == 1);
    CHECK(vevents[i].values[0].has_simple_value);
    ++vtags[vevents[i].values[0].tag];
  }
  CHECK(vtags == std::map<std::string, int>{{"epoch_accuracy", kEpochs}, {"epoch_loss", kEpochs}});
  CHECK(vevents.back().values[0].simple_value == doctest::Approx(0.85 + 0.03).epsilon(1e-6));

  SUBCASE("a flipped byte in the written file is detected") {
    std::string bytes = read_file(train);
    bytes[bytes.size() / 2] ^= 0x10;
    write_file_atomic(train, bytes);
    CHECK_THROWS_AS(read_tfrecords(train), InputError);
  }
}

TEST_CASE("TensorBoardWriter: the file exists with file_version only until the first flush") {
  const test::TempDir tmp("tbw");
  const std::string& dir = tmp.path();
  TensorBoardWriter w(dir + "/run");
  CHECK(read_events(w.path()).size() == 1);
  w.add_scalar("x", 2.5, 7);
  CHECK(read_events(w.path()).size() == 1);  // queued, not yet flushed
  w.flush();
  const auto ev = read_events(w.path());
  REQUIRE(ev.size() == 2);
  CHECK(ev[1].step == 7);
  CHECK(ev[1].values[0].tag == "x");
  CHECK(ev[1].values[0].simple_value == 2.5f);
  // Two writers in the same directory and second never share a file.
  TensorBoardWriter w2(dir + "/run");
  CHECK(w2.path() != w.path());
}
