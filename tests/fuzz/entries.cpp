#include "tests/fuzz/entries.hpp"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "apps/data/idx.hpp"
#include "apps/data/mnist.hpp"
#include "apps/io/checkpoint.hpp"
#include "apps/io/safetensors.hpp"
#include "layers/model.hpp"
#include "runtime/error.hpp"

// An invariant of a loader's successful result; a failure is a bug, reported like a crash.
#define FUZZ_EXPECT(cond)                                                                    \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace mnist::fuzz {
namespace {

constexpr const char* kScratchFiles[] = {"x-idx", "x-idx.gz", "y-idx.gz", "images", "labels", "images.gz", "labels.gz"};

std::string& scratch_path() {
  static std::string dir;
  return dir;
}

void remove_scratch() {
  for (const char* f : kScratchFiles) ::unlink((scratch_path() + "/" + f).c_str());
  ::rmdir(scratch_path().c_str());
}

// A per-process scratch directory, under $MNIST_FUZZ_SCRATCH when set (run.sh removes it), else on
// tmpfs: fuzzers write millions of inputs. Removed at exit.
const std::string& scratch_dir() {
  std::string& dir = scratch_path();
  if (dir.empty()) {
    struct stat st;
    const char* env = std::getenv("MNIST_FUZZ_SCRATCH");
    std::string base = env && *env ? env : "";
    if (base.empty()) base = ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    ::mkdir(base.c_str(), 0700);
    dir = base + "/mnist_fuzz_" + std::to_string(::getpid());
    FUZZ_EXPECT(::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST);
    std::atexit(remove_scratch);
  }
  return dir;
}

void write_raw(const std::string& path, const uint8_t* data, std::size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_EXPECT(f != nullptr);
  FUZZ_EXPECT(size == 0 || std::fwrite(data, 1, size, f) == size);
  FUZZ_EXPECT(std::fclose(f) == 0);
}

void write_gzip(const std::string& path, const uint8_t* data, std::size_t size) {
  gzFile f = gzopen(path.c_str(), "wb1");
  FUZZ_EXPECT(f != nullptr);
  FUZZ_EXPECT(size == 0 || gzwrite(f, data, unsigned(size)) == int(size));
  FUZZ_EXPECT(gzclose(f) == Z_OK);
}

void write_file(const std::string& path, const uint8_t* data, std::size_t size, bool gz) {
  if (gz)
    write_gzip(path, data, size);
  else
    write_raw(path, data, size);
}

// What read_idx returned must be what the header promised.
void check_idx(const IdxArray& a) {
  FUZZ_EXPECT(a.dims.size() >= 1 && a.dims.size() <= 4);
  uint64_t total = 1;
  for (uint32_t d : a.dims) {
    FUZZ_EXPECT(d > 0);
    total *= d;
  }
  FUZZ_EXPECT(total <= (uint64_t(1) << 30));
  FUZZ_EXPECT(a.data.size() == total);
}

// When the file's bytes are known (raw, or compressed by us), the payload must be exactly the
// bytes after the header.
void check_idx_payload(const IdxArray& a, const uint8_t* file, std::size_t size) {
  const std::size_t header = 4 + 4 * a.dims.size();
  FUZZ_EXPECT(size == header + a.data.size());
  for (std::size_t i = 0; i < a.data.size(); ++i) FUZZ_EXPECT(a.data[i] == file[header + i]);
}

bool parse_small_int(const std::string& s, int max, int& out) {
  if (s.empty() || s.size() > 6) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > max) return false;
  out = int(v);
  return true;
}

// The small model named by a checkpoint's metadata, if any (keeps allocations small).
bool small_spec(const std::map<std::string, std::string>& meta, ModelSpec& spec) {
  auto in = meta.find("input"), hid = meta.find("hidden");
  if (in == meta.end() || hid == meta.end()) return false;
  if (!parse_small_int(in->second, 4096, spec.input)) return false;
  spec.hidden.clear();
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = hid->second.find(',', start);
    int w = 0;
    if (!parse_small_int(hid->second.substr(start, comma - start), 256, w)) return false;
    spec.hidden.push_back(w);
    if (spec.hidden.size() > 8) return false;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return true;
}

void check_tensors(const std::vector<TensorF32>& ts) {
  for (const TensorF32& t : ts) {
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      FUZZ_EXPECT(d >= 0);
      count *= uint64_t(d);
    }
    FUZZ_EXPECT(t.data.size() == count);
  }
}

// Loads `tensors` into the layout of `spec`; on success the parameters must round-trip.
void load_into(const ModelSpec& spec, const std::vector<TensorF32>& tensors) {
  const ParamLayout layout = make_layout(spec);
  std::vector<float> flat;
  try {
    tensors_to_params(layout, tensors, flat, "fuzz-input");
  } catch (const InputError&) {
    return;
  }
  FUZZ_EXPECT(flat.size() == layout.storage);
  const std::vector<TensorF32> back = params_to_tensors(layout, flat);
  FUZZ_EXPECT(back.size() == tensors.size());
  for (const TensorF32& b : back) {
    bool found = false;
    for (const TensorF32& t : tensors) {
      if (t.name != b.name) continue;
      found = true;
      FUZZ_EXPECT(t.shape == b.shape && t.data.size() == b.data.size());
      // Bitwise: NaN payloads must survive too.
      for (std::size_t i = 0; i < t.data.size(); ++i)
        FUZZ_EXPECT(std::memcmp(&t.data[i], &b.data[i], sizeof(float)) == 0);
    }
    FUZZ_EXPECT(found);
  }
}

void idx_body(const uint8_t* data, std::size_t size) {
  if (size < 1) return;
  const uint8_t mode = data[0];
  const uint8_t* body = data + 1;
  const std::size_t n = size - 1;
  const std::string dir = scratch_dir();
  try {
    switch (mode % 4) {
      case 0: {
        const std::string p = dir + "/x-idx";
        write_raw(p, body, n);
        const IdxArray a = read_idx(p, 0);
        check_idx(a);
        // zlib also decompresses gzip data under a name without ".gz" (documented in idx.hpp).
        if (!(n >= 2 && body[0] == 0x1f && body[1] == 0x8b)) check_idx_payload(a, body, n);
        break;
      }
      case 1: {
        const std::string p = dir + "/x-idx.gz";
        write_raw(p, body, n);
        check_idx(read_idx(p, 0));  // a valid gzip stream may legitimately come out of the fuzzer
        break;
      }
      case 2: {
        const std::string p = dir + "/y-idx.gz";
        write_gzip(p, body, n);
        const IdxArray a = read_idx(p, 0);
        check_idx(a);
        check_idx_payload(a, body, n);
        break;
      }
      default: {
        if (n < 2) return;
        const std::size_t split = std::min<std::size_t>((std::size_t(body[0]) << 8) | body[1], n - 2);
        const bool gz = (mode & 4) != 0;
        const std::string pi = dir + (gz ? "/images.gz" : "/images");
        const std::string pl = dir + (gz ? "/labels.gz" : "/labels");
        write_file(pi, body + 2, split, gz);
        write_file(pl, body + 2 + split, n - 2 - split, gz);
        const ImageSet s = load_image_set(pi, pl);
        FUZZ_EXPECT(s.n > 0 && s.rows > 0 && s.cols > 0);
        FUZZ_EXPECT(s.labels.size() == std::size_t(s.n));
        FUZZ_EXPECT(s.images.size() == std::size_t(s.n) * std::size_t(s.rows) * std::size_t(s.cols));
        for (uint8_t l : s.labels) FUZZ_EXPECT(l < 10);
        FUZZ_EXPECT(shape_string(s).size() > 0);
        break;
      }
    }
  } catch (const InputError&) {
    // the expected outcome for a broken file
  }
}

void checkpoint_body(const uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> meta;
  std::vector<TensorF32> tensors;
  try {
    tensors = decode_safetensors(bytes, "fuzz-input", &meta);
  } catch (const InputError&) {
    return;
  }
  check_tensors(tensors);
  // What decodes must re-encode into a file that decodes to the same tensors.
  const std::vector<TensorF32> again = decode_safetensors(encode_safetensors(tensors, meta), "re-encoded");
  FUZZ_EXPECT(again.size() == tensors.size());
  load_into(ModelSpec{}, tensors);
  ModelSpec small;
  if (small_spec(meta, small)) load_into(small, tensors);
}

// Runs `body` on a worker thread with a small stack (64 KiB): the deepest recursion a 4 KB input can
// cause (nesting ~2000 levels) then overflows it, as a million-level nesting overflows the app's
// 8 MiB main stack. One worker serves every input (a thread per input would cost most of the
// fuzzer's time); an exception is carried back to the caller. Under AddressSanitizer (the test
// command's sanitizer pass) frames are several times larger and GCC's runtime refuses a 64 KiB
// thread stack, so the stack is 1 MiB there: still far below what unbounded recursion needs.
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kWorkerStack = std::size_t(1) << 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr std::size_t kWorkerStack = std::size_t(1) << 20;
#else
constexpr std::size_t kWorkerStack = std::size_t(64) << 10;
#endif
#else
constexpr std::size_t kWorkerStack = std::size_t(64) << 10;
#endif

class SmallStackWorker {
 public:
  SmallStackWorker() {
    pthread_attr_t attr;
    FUZZ_EXPECT(pthread_attr_init(&attr) == 0);
    FUZZ_EXPECT(pthread_attr_setstacksize(&attr, kWorkerStack) == 0);
    FUZZ_EXPECT(pthread_create(&thread_, &attr, &SmallStackWorker::main, this) == 0);
    pthread_attr_destroy(&attr);
    pthread_detach(thread_);  // lives as long as the process
  }

  void run(void (*body)(const uint8_t*, std::size_t), const uint8_t* data, std::size_t size) {
    std::unique_lock<std::mutex> lock(mutex_);
    body_ = body;
    data_ = data;
    size_ = size;
    error_ = nullptr;
    pending_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !pending_; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static void* main(void* self) {
    auto* w = static_cast<SmallStackWorker*>(self);
    std::unique_lock<std::mutex> lock(w->mutex_);
    while (true) {
      w->cv_.wait(lock, [w] { return w->pending_; });
      try {
        w->body_(w->data_, w->size_);
      } catch (...) {
        w->error_ = std::current_exception();
      }
      w->pending_ = false;
      w->cv_.notify_all();
    }
    return nullptr;
  }

  pthread_t thread_{};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool pending_ = false;
  void (*body_)(const uint8_t*, std::size_t) = nullptr;
  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::exception_ptr error_;
};

void on_small_stack(void (*body)(const uint8_t*, std::size_t), const uint8_t* data, std::size_t size) {
  static SmallStackWorker* worker = new SmallStackWorker;  // never destroyed: the thread never ends
  worker->run(body, data, size);
}

}  // namespace

void idx_input(const uint8_t* data, std::size_t size) { on_small_stack(idx_body, data, size); }

void checkpoint_input(const uint8_t* data, std::size_t size) { on_small_stack(checkpoint_body, data, size); }

}  // namespace mnist::fuzz
