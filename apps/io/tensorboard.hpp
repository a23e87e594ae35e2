// TensorBoard event files, as Keras's TensorBoard(log_dir, histogram_freq=1) callback writes them,
// readable by `tensorboard --logdir <out>/logs`.
//
// File: <dir>/events.out.tfevents.<unix-seconds>.<hostname>.<pid>.<counter>.v2 (TensorFlow's
// name for a summary file writer). Content: TFRecords, each
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// where data is a serialized tensorflow.Event (apps/io/proto/tensorboard.proto). The first
// record is Event{wall_time, file_version: "brain.Event:2"}; each later one carries ONE summary
// value (a scalar as simple_value, or a HistogramProto), as TensorFlow's writer does.
//
// Durability: records are kept in memory and flush() rewrites the whole file through
// write_file_atomic, so a kill at any moment leaves the file as of the previous flush, never a
// torn record. The files are small (a few KB per epoch).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "apps/pipeline/history.hpp"
#include "layers/model.hpp"

namespace mnist {

class BackgroundWriter;

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. crc32c("123456789") is
// 0xE3069283. `crc` continues a previous value (0 to start).
uint32_t crc32c(const void* data, std::size_t n, uint32_t crc = 0);
// TFRecord's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8, on 32 bits.
uint32_t masked_crc32c(const void* data, std::size_t n);

// Frames one record (length, masked CRC of the length, data, masked CRC of the data).
std::string encode_tfrecord(const std::string& data);
// Splits a whole file's bytes into record payloads, verifying both CRCs of every record.
// Throws InputError("<what>: record <i> at byte <offset>: <problem>") on a bad CRC, a truncated
// header or payload, or a length larger than the rest of the file.
std::vector<std::string> decode_tfrecords(const std::string& bytes, const std::string& what);
// decode_tfrecords of a file's contents (what = path).
std::vector<std::string> read_tfrecords(const std::string& path);

// One histogram as stored (HistogramProto): bucket i counts values in
// [bucket_limit[i-1], bucket_limit[i]) (from min for i == 0; the last bucket includes max).
struct TbHistogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};

// The bucketing used for every histogram written here: `buckets` equal-width buckets between
// the values' min and max (TensorFlow 2's tf.summary.histogram default is 30 equal-width
// buckets too); bucket_limit are the right edges, the last one equal to max. When every value
// is the same (e.g. zero-initialised biases), one bucket [v, v] holds them all. Non-finite
// values are not counted (num counts the finite ones). n == 0 gives an empty histogram.
// Precondition: buckets >= 1.
TbHistogram make_histogram(const float* values, std::size_t n, int buckets = 30);

// A decoded Event: either the file_version record, or one or more summary values.
struct TbValue {
  std::string tag;
  bool has_simple_value = false;
  float simple_value = 0;
  bool has_histogram = false;
  TbHistogram histogram;
};
struct TbEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;  // empty unless this is the file_version record
  std::vector<TbValue> values;
};

// Parses one record's payload; throws InputError("<what>: not a valid Event") when it is not.
TbEvent decode_event(const std::string& record, const std::string& what);
// read_tfrecords + decode_event of every record, in file order.
std::vector<TbEvent> read_events(const std::string& path);

// Writer of one event file (one "run" directory of TensorBoard).
class TensorBoardWriter {
 public:
  // Creates `dir` (mkdir -p), picks the file name and writes the file_version record (the file
  // exists from here on). Throws Error naming the path when the directory or file cannot be made.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;
  TensorBoardWriter(TensorBoardWriter&&) noexcept;
  TensorBoardWriter& operator=(TensorBoardWriter&&) noexcept;

  const std::string& path() const;

  // Queue one Event each (wall_time = now); nothing reaches the disk before flush().
  void add_scalar(const std::string& tag, double value, int64_t step);
  void add_histogram(const std::string& tag, const float* values, std::size_t n, int64_t step,
                     int buckets = 30);

  // Atomically rewrites the file with every record so far. Throws Error naming the path.
  void flush();
  // The same write, queued on `writer` (with a copy of the records so far).
  void flush(BackgroundWriter& writer);
  // Every framed record so far: the bytes flush() writes.
  const std::string& contents() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Keras's tag for a weight histogram: weight.path + "/histogram", i.e. "<layer>/<weight>/histogram"
// with weight "kernel" or "bias" (Keras 3's TensorBoard callback; Keras 2 / tf.keras wrote
// "<layer>/kernel_0/histogram" from the TF variable name "hidden1/kernel:0").
std::string keras_histogram_tag(const std::string& layer, const std::string& weight);

// What Keras's TensorBoard(log_dir, histogram_freq=1) writes at each epoch end, into
// <log_dir>/train and <log_dir>/validation:
//   train:      epoch_loss, epoch_accuracy, epoch_learning_rate (scalars), and a histogram of
//               every Dense kernel and bias: hidden1/kernel/histogram, hidden1/bias/histogram,
//               ..., output/kernel/histogram, output/bias/histogram
//   validation: epoch_loss, epoch_accuracy
// with step = the 0-based epoch index (EpochRecord::epoch - 1), as Keras counts.
class KerasTensorBoard {
 public:
  // Creates both writers (and their directories) now.
  explicit KerasTensorBoard(const std::string& log_dir);

  // Logs epoch `rec` and flushes both files (on `writer`, in the background, when given).
  // `params` is the flat array of `layout` (the weights at the end of this epoch; host memory);
  // kernels are logged in their stored [out, in] order (a histogram does not depend on it).
  // Layer names come from layer_list(spec).
  void on_epoch_end(const EpochRecord& rec, const ModelSpec& spec, const ParamLayout& layout,
                    const std::vector<float>& params, BackgroundWriter* writer = nullptr);

  const std::string& train_path() const { return train_.path(); }
  const std::string& validation_path() const { return val_.path(); }

 private:
  TensorBoardWriter train_, val_;
};

}  // namespace mnist
