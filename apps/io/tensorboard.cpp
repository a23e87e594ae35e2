#include "apps/io/tensorboard.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>

#include "apps/io/atomic_file.hpp"
#include "apps/io/background_writer.hpp"
#include "runtime/error.hpp"
#include "tensorboard.pb.h"

namespace mnist {

// ---------------------------------------------------------------------------------------------
// CRC-32C and TFRecord framing

namespace {

struct Crc32cTable {
  uint32_t t[256];
  Crc32cTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
  }
};

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xFFu));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xFFu));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

}  // namespace

uint32_t crc32c(const void* data, std::size_t n, uint32_t crc) {
  static const Crc32cTable table;
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table.t[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, std::size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string encode_tfrecord(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_u64(out, data.size());
  put_u32(out, masked_crc32c(out.data(), 8));
  out += data;
  put_u32(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::vector<std::string> decode_tfrecords(const std::string& bytes, const std::string& what) {
  std::vector<std::string> records;
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const std::size_t index = records.size();
    auto fail = [&](const std::string& problem) {
      return InputError(cat(what, ": record ", index, " at byte ", pos, ": ", problem));
    };
    if (bytes.size() - pos < 12) throw fail("truncated header");
    const uint64_t len = get_u64(bytes.data() + pos);
    if (get_u32(bytes.data() + pos + 8) != masked_crc32c(bytes.data() + pos, 8))
      throw fail("length CRC mismatch (corrupt file)");
    const std::size_t rest = bytes.size() - pos - 12;
    if (rest < 4 || len > rest - 4)
      throw fail(cat("truncated: length ", len, " but only ", rest, " bytes follow the header"));
    const char* data = bytes.data() + pos + 12;
    if (get_u32(data + len) != masked_crc32c(data, std::size_t(len)))
      throw fail("data CRC mismatch (corrupt file)");
    records.emplace_back(data, std::size_t(len));
    pos += 12 + std::size_t(len) + 4;
  }
  return records;
}

std::vector<std::string> read_tfrecords(const std::string& path) {
  return decode_tfrecords(read_file(path), path);
}

// ---------------------------------------------------------------------------------------------
// Histograms and Events

TbHistogram make_histogram(const float* values, std::size_t n, int buckets) {
  MNIST_CHECK(buckets >= 1, "histogram needs at least one bucket, got ", buckets);
  TbHistogram h;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  std::size_t finite = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    h.sum += v;
    h.sum_squares += v * v;
    ++finite;
  }
  h.num = double(finite);
  if (finite == 0) return h;
  h.min = lo;
  h.max = hi;
  if (hi == lo) {
    h.bucket_limit = {hi};
    h.bucket = {double(finite)};
    return h;
  }
  const double width = (hi - lo) / buckets;
  h.bucket_limit.resize(std::size_t(buckets));
  for (int b = 0; b < buckets; ++b) h.bucket_limit[std::size_t(b)] = lo + width * (b + 1);
  h.bucket_limit.back() = hi;
  h.bucket.assign(std::size_t(buckets), 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) continue;
    int b = int((v - lo) / width);
    b = std::min(std::max(b, 0), buckets - 1);
    h.bucket[std::size_t(b)] += 1.0;
  }
  return h;
}

TbEvent decode_event(const std::string& record, const std::string& what) {
  tb::Event ev;
  if (!ev.ParseFromString(record)) throw InputError(cat(what, ": not a valid Event"));
  TbEvent out;
  out.wall_time = ev.wall_time();
  out.step = ev.step();
  if (ev.what_case() == tb::Event::kFileVersion) out.file_version = ev.file_version();
  if (ev.what_case() == tb::Event::kSummary) {
    for (const auto& v : ev.summary().value()) {
      TbValue tv;
      tv.tag = v.tag();
      if (v.value_case() == tb::Summary::Value::kSimpleValue) {
        tv.has_simple_value = true;
        tv.simple_value = v.simple_value();
      } else if (v.value_case() == tb::Summary::Value::kHisto) {
        const auto& p = v.histo();
        tv.has_histogram = true;
        tv.histogram.min = p.min();
        tv.histogram.max = p.max();
        tv.histogram.num = p.num();
        tv.histogram.sum = p.sum();
        tv.histogram.sum_squares = p.sum_squares();
        tv.histogram.bucket_limit.assign(p.bucket_limit().begin(), p.bucket_limit().end());
        tv.histogram.bucket.assign(p.bucket().begin(), p.bucket().end());
      }
      out.values.push_back(std::move(tv));
    }
  }
  return out;
}

std::vector<TbEvent> read_events(const std::string& path) {
  std::vector<TbEvent> events;
  const auto records = read_tfrecords(path);
  events.reserve(records.size());
  for (std::size_t i = 0; i < records.size(); ++i)
    events.push_back(decode_event(records[i], cat(path, ": record ", i)));
  return events;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// TensorFlow numbers the event files of a process with a global counter, so that two writers
// opened in the same second never share a name.
std::atomic<int> g_file_counter{0};

std::string event_file_name() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const long secs = long(std::time(nullptr));
  return cat("events.out.tfevents.", secs, ".", host, ".", ::getpid(), ".", g_file_counter++, ".v2");
}

std::string serialize(const tb::Event& ev) {
  std::string bytes;
  if (!ev.SerializeToString(&bytes)) throw Error("TensorBoard: cannot serialize an Event");
  return bytes;
}

}  // namespace

struct TensorBoardWriter::Impl {
  std::string path;
  std::string file;  // every framed record so far
};

TensorBoardWriter::TensorBoardWriter(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  make_dirs(dir);
  impl_->path = (dir.empty() ? std::string(".") : dir) + "/" + event_file_name();
  tb::Event ev;
  ev.set_wall_time(now_seconds());
  ev.set_step(0);
  ev.set_file_version("brain.Event:2");
  impl_->file = encode_tfrecord(serialize(ev));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() = default;
TensorBoardWriter::TensorBoardWriter(TensorBoardWriter&&) noexcept = default;
TensorBoardWriter& TensorBoardWriter::operator=(TensorBoardWriter&&) noexcept = default;

const std::string& TensorBoardWriter::path() const { return impl_->path; }

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  tb::Event ev;
  ev.set_wall_time(now_seconds());
  ev.set_step(step);
  auto* v = ev.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(float(value));
  impl_->file += encode_tfrecord(serialize(ev));
}

void TensorBoardWriter::add_histogram(const std::string& tag, const float* values, std::size_t n,
                                      int64_t step, int buckets) {
  const TbHistogram h = make_histogram(values, n, buckets);
  tb::Event ev;
  ev.set_wall_time(now_seconds());
  ev.set_step(step);
  auto* v = ev.mutable_summary()->add_value();
  v->set_tag(tag);
  auto* p = v->mutable_histo();
  p->set_min(h.min);
  p->set_max(h.max);
  p->set_num(h.num);
  p->set_sum(h.sum);
  p->set_sum_squares(h.sum_squares);
  for (double x : h.bucket_limit) p->add_bucket_limit(x);
  for (double x : h.bucket) p->add_bucket(x);
  impl_->file += encode_tfrecord(serialize(ev));
}

void TensorBoardWriter::flush() { write_file_atomic(impl_->path, impl_->file); }

void TensorBoardWriter::flush(BackgroundWriter& writer) { writer.submit_bytes(impl_->path, impl_->file); }

const std::string& TensorBoardWriter::contents() const { return impl_->file; }

// ---------------------------------------------------------------------------------------------
// Keras layout

std::string keras_histogram_tag(const std::string& layer, const std::string& weight) {
  return layer + "/" + weight + "/histogram";
}

KerasTensorBoard::KerasTensorBoard(const std::string& log_dir)
    : train_(log_dir + "/train"), val_(log_dir + "/validation") {}

void KerasTensorBoard::on_epoch_end(const EpochRecord& rec, const ModelSpec& spec,
                                    const ParamLayout& layout, const std::vector<float>& params,
                                    BackgroundWriter* writer) {
  const int64_t step = rec.epoch - 1;
  train_.add_scalar("epoch_loss", rec.loss, step);
  train_.add_scalar("epoch_accuracy", rec.accuracy, step);
  train_.add_scalar("epoch_learning_rate", rec.lr, step);
  val_.add_scalar("epoch_loss", rec.val_loss, step);
  val_.add_scalar("epoch_accuracy", rec.val_accuracy, step);

  std::vector<std::string> dense_names;
  for (const auto& L : layer_list(spec))
    if (L.type == "Dense") dense_names.push_back(L.name);
  MNIST_CHECK(dense_names.size() == layout.dense.size(), "TensorBoard: model has ",
              dense_names.size(), " Dense layers but the layout ", layout.dense.size());
  MNIST_CHECK(params.size() >= layout.storage, "TensorBoard: params hold ", params.size(),
              " floats, the layout needs ", layout.storage);
  for (std::size_t l = 0; l < layout.dense.size(); ++l) {
    const DenseSlot& s = layout.dense[l];
    train_.add_histogram(keras_histogram_tag(dense_names[l], "kernel"), params.data() + s.w_offset,
                         s.w_count(), step);
    train_.add_histogram(keras_histogram_tag(dense_names[l], "bias"), params.data() + s.b_offset,
                         std::size_t(s.out), step);
  }
  if (writer) {
    train_.flush(*writer);
    val_.flush(*writer);
  } else {
    train_.flush();
    val_.flush();
  }
}

}  // namespace mnist
