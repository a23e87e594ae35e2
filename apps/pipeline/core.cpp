#include "apps/pipeline/core.hpp"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <ostream>

#include "apps/io/atomic_file.hpp"
#include "apps/io/checkpoint.hpp"
#include "layers/cpu_blas.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"

namespace mnist {

namespace {
const std::chrono::steady_clock::time_point g_process_start = std::chrono::steady_clock::now();
}  // namespace

double process_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - g_process_start).count();
}

std::string data_dir(const AppOptions& o) {
  return o.data_dir.empty() ? std::string("data/") + to_string(o.dataset) : o.data_dir;
}

void set_threads(const AppOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
}

ModelSpec model_spec(const AppOptions& o, int input_dim) {
  ModelSpec s;
  s.input = input_dim;
  s.hidden = o.hidden;
  s.dropout = float(o.dropout);  // classes: the spec's own (the ten digits or garments)
  return s;
}

EngineConfig engine_config(const AppOptions& o, const ModelSpec& spec) {
  EngineConfig c;
  c.spec = spec;
  c.batch_size = o.batch_size;
  c.seed = o.seed;
  c.init = o.init;
  c.gemm = o.gemm;
  c.kernels = o.kernels;
  c.precision = o.precision;
  c.graph_steps = o.graph_steps;
  c.autotune = o.autotune;
  c.pdl = o.pdl;
  c.carveout = o.carveout;
  c.tail_rows = o.tail_rows;
  c.tail_layer0 = o.layer0 == Layer0::Inside;
  c.tail_layer0_cluster = o.layer0_cluster;
  return c;
}

namespace {
// The CUDA engine's flags that the CPU engine has no use for, given other than their defaults: said
// in one line rather than ignored in silence (--precision applies to both engines).
void cpu_ignores(const AppOptions& o, std::ostream& log) {
  const AppOptions d;
  std::string flags;
  if (o.gemm != d.gemm) flags += cat(" --gemm ", to_string(o.gemm));
  if (o.kernels != d.kernels) flags += cat(" --kernels ", to_string(o.kernels));
  if (o.autotune != d.autotune) flags += cat(" --autotune ", to_string(o.autotune));
  if (o.pdl != d.pdl) flags += cat(" --pdl ", to_string(o.pdl));
  if (o.carveout != d.carveout) flags += cat(" --carveout ", to_string(o.carveout));
  if (o.tail_rows != d.tail_rows) flags += cat(" --tail-rows ", to_string(o.tail_rows));
  if (o.layer0 != d.layer0) flags += cat(" --layer0 ", to_string(o.layer0));
  if (o.layer0_cluster != d.layer0_cluster) flags += cat(" --layer0-cluster ", to_string(o.layer0_cluster));
  if (o.graph_steps != d.graph_steps) flags += cat(" --graph-steps ", o.graph_steps);
  if (!flags.empty()) log << "notice: the CPU path has no use for" << flags << " (CUDA only)\n";
}
}  // namespace

std::unique_ptr<Engine> make_engine(const AppOptions& o, const EngineConfig& cfg, std::ostream& log) {
  const DeviceInfo dev = o.device == Device::Cpu ? DeviceInfo{} : query_device();
  if (o.device == Device::Cuda) {
    if (!dev.available) throw CudaError(cat("--device cuda: ", describe(dev)));
    return make_cuda_engine(cfg);
  }
  if (o.device == Device::Auto && dev.available) return make_cuda_engine(cfg);
  if (o.device == Device::Auto) log << "notice: " << describe(dev) << "; using the CPU path\n";
  cpu_ignores(o, log);
  return make_cpu_engine(cfg);
}

std::string device_name(const Engine& engine) {
  if (engine.name() == "cuda") return query_device().name;
  // (the kernels OpenBLAS chose: layers/cpu_blas.hpp; asked after the run, so it is loaded)
  const std::string blas = cpu::blas_corename();
  return cat("CPU (", omp_get_max_threads(), " threads", blas.empty() ? "" : cat(", OpenBLAS ", blas), ")");
}

std::string kernel_path(const Engine& engine) {
  if (engine.name() != "cuda") return engine.name();
  // The engine resolved --kernels (auto, or a fallback it gave notice of); the graph path says when
  // its last layer runs as the head kernel (kernels/head.cuh), the tail path when its launches are
  // programmatic (kernels/pdl.cuh) and ask for the largest shared-memory carveout ("+smem"), and
  // when its tail kernel takes 16-row blocks ("+rows16": --tail-rows 16, or the race's pick) and when it
  // computes layer 0's forward itself ("+l0": the race's pick, or --layer0 inside), in clusters of N
  // blocks ("+l0xN", --layer0-cluster).
  if (engine.fused_step()) return cat("cuda ", to_string(Kernels::Fused));
  if (engine.tail_kernel()) return cat("cuda ", to_string(Kernels::Tail), engine.programmatic_launch() ? "+pdl" : "",
                                      engine.max_carveout() ? "+smem" : "", engine.tail_rows16() ? "+rows16" : "",
                                      engine.tail_layer0() ? "+l0" : "",
                                      engine.tail_layer0_cluster() > 1 ? cat("x", engine.tail_layer0_cluster()) : "");
  return cat("cuda ", to_string(Kernels::Graph), engine.head_kernel() ? "+head" : "");
}

TrainValSplit split_for_training(const AppOptions& o, const ImageSet& all) {
  TrainValSplit s = split_train_val(all, o.val_split, o.split, o.seed);
  if (o.batch_size > s.train.n)
    throw InputError(cat("--batch-size ", o.batch_size, " is larger than the ", s.train.n, " training examples (",
                         all.n, " less --val-split ", shortest(o.val_split), "'s ", s.val.n, ")"));
  return s;
}

std::string dataset_fingerprint(const MnistData& d) {
  // FNV-1a's xor-multiply step over 64-bit little-endian words in 4 independent lanes (a byte
  // at a time, one chain, it cost ~70 ms for MNIST's 55 MB; this is ~10x faster), the tail
  // bytes and the lengths folded in, then the lanes combined in order.
  constexpr uint64_t kPrime = 1099511628211ull;
  uint64_t lane[4] = {1469598103934665603ull, 1469598103934665603ull ^ 1, 1469598103934665603ull ^ 2,
                      1469598103934665603ull ^ 3};
  auto mix = [&lane](const std::vector<uint8_t>& bytes) {
    const std::size_t words = bytes.size() / 8;
    std::size_t w = 0;
    for (; w + 4 <= words; w += 4)
      for (int l = 0; l < 4; ++l) {
        uint64_t x;
        std::memcpy(&x, bytes.data() + (w + std::size_t(l)) * 8, 8);
        lane[l] = (lane[l] ^ x) * kPrime;
      }
    for (std::size_t i = w * 8; i < bytes.size(); ++i) lane[0] = (lane[0] ^ bytes[i]) * kPrime;
    lane[1] = (lane[1] ^ uint64_t(bytes.size())) * kPrime;
  };
  for (const ImageSet* s : {&d.train, &d.test}) {
    mix(s->images);
    mix(s->labels);
  }
  uint64_t h = lane[0];
  for (int l = 1; l < 4; ++l) h = (h ^ lane[l]) * kPrime;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return cat("train ", d.train.n, "x", d.train.rows, "x", d.train.cols, ", test ", d.test.n, "x", d.test.rows, "x",
             d.test.cols, ", fnv1a64x4 ", hex);
}

std::vector<Top1> top1(const std::vector<float>& probs, int n, int classes) {
  std::vector<Top1> out;
  for (int i = 0; i < n; ++i) {
    const float* p = probs.data() + std::size_t(i) * std::size_t(classes);
    const int best = int(std::max_element(p, p + classes) - p);
    out.push_back({best, double(p[best])});
  }
  return out;
}

std::vector<Top1> predict_top1(Engine& engine, const uint8_t* images, int count) {
  const int classes = engine.layout().dense.back().out;
  std::vector<float> probs(std::size_t(count) * std::size_t(classes));
  if (count > 0) engine.predict(probs.data(), images, count);
  return top1(probs, count, classes);
}

void print_sample_predictions(const std::vector<Top1>& p, const ImageSet& test, std::ostream& log) {
  log << "\nSample Predictions:\n";
  char line[128];
  for (std::size_t i = 0; i < p.size(); ++i) {
    std::snprintf(line, sizeof line, "  Image %zu: True=%d, Predicted=%d, Confidence=%.3f\n", i, int(test.labels[i]),
                  p[i].label, p[i].confidence);
    log << line;
  }
}

FitOptions fit_options(const AppOptions& o) {
  FitOptions fo;
  fo.epochs = o.epochs;
  fo.lr = o.lr;
  fo.patience = o.patience;
  fo.lr_factor = o.lr_factor;
  fo.lr_patience = o.lr_patience;
  fo.min_lr = o.min_lr;
  return fo;
}

std::unique_ptr<Engine> engine_from_checkpoint(const AppOptions& o, int input_dim, std::ostream& log,
                                               std::string* hidden) {
  std::map<std::string, std::string> meta;
  const std::vector<TensorF32> tensors = decode_safetensors(read_file(o.checkpoint), o.checkpoint, &meta);
  AppOptions mo = o;
  if (meta.count("hidden")) {
    try {
      mo.hidden = parse_hidden(meta["hidden"], "metadata \"hidden\"");
    } catch (const InputError& e) {
      throw InputError(cat(o.checkpoint, ": metadata \"hidden\" does not describe a usable model: ", e.what()));
    }
    if (o.hidden_given && o.hidden != mo.hidden)
      throw InputError(cat("--hidden ", hidden_string(o.hidden), ": ", o.checkpoint, " holds a ",
                           hidden_string(mo.hidden),
                           " model (the architecture comes from the checkpoint; --hidden only serves files without it)"));
  }
  const ModelSpec spec = model_spec(mo, input_dim);
  try {
    spec.validate();
  } catch (const InputError& e) {
    if (!meta.count("hidden")) throw;
    throw InputError(cat(o.checkpoint, ": metadata \"hidden\" does not describe a usable model: ", e.what()));
  }
  if (meta.count("input") && meta["input"] != std::to_string(input_dim)) {
    const std::string& in = meta["input"];
    if (in.empty() || in.size() > 9 || in.find_first_not_of("0123456789") != std::string::npos || in[0] == '0')
      throw InputError(cat(o.checkpoint, ": metadata \"input\" is not a pixel count (", in.size(), " characters: '",
                           in.substr(0, 24), in.size() > 24 ? "...'" : "'", ")"));
    throw InputError(cat(o.checkpoint, ": the model takes ", in, " inputs, the images have ", input_dim, " pixels"));
  }
  // Names, shapes, values and checksums are checked against the layout before any engine memory exists.
  std::vector<float> flat;
  tensors_to_params(make_layout(spec), tensors, flat, o.checkpoint);
  std::unique_ptr<Engine> engine = make_engine(o, engine_config(mo, spec), log);
  engine->set_params(flat);
  if (hidden) *hidden = hidden_string(mo.hidden);
  return engine;
}

void OutputDir::check(const std::string& dir) {
  // The folder itself or, when it does not exist yet, the nearest ancestor that does.
  std::string p = dir;
  struct stat st;
  while (::stat(p.c_str(), &st) != 0) {
    if (errno != ENOENT) throw InputError(cat("--out ", dir, ": ", std::strerror(errno)));
    const std::size_t slash = p.find_last_of('/', p.size() > 1 ? p.size() - 2 : 0);
    p = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  }
  if (!S_ISDIR(st.st_mode))
    throw InputError(cat("--out ", dir, ": ", p == dir ? "" : p + " ", "is not a directory"));
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    throw InputError(cat("--out ", dir, ": ", p == dir ? "" : p + " ", "is not writable (", std::strerror(errno), ")"));
}

OutputDir::OutputDir(const std::string& dir) : dir_(dir) {
  check(dir);
  try {
    make_dirs(dir);
  } catch (const Error& e) {  // (e.g. under /proc or /sys: the ancestor's checks passed, mkdir did not)
    throw InputError(cat("--out ", dir, ": ", e.what()));
  }
  const std::string lock = path("mnist_cuda.lock");
  // Never through a link: a symbolic link planted as the lock would have its target truncated and
  // overwritten with the pid (the files the run writes go through write_file_atomic, which also
  // refuses links).
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0 && errno == ELOOP)
    throw InputError(cat("--out ", dir, ": ", lock, " is a symbolic link, not a lock file; remove it"));
  if (fd_ < 0) throw InputError(cat("--out ", dir, ": cannot create ", lock, " (", std::strerror(errno), ")"));
  struct stat lst;
  if (::fstat(fd_, &lst) != 0 || !S_ISREG(lst.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw InputError(cat("--out ", dir, ": ", lock, " is not a regular file; remove it"));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string pid = n > 0 ? std::string(buf, std::size_t(n)) : "?";
    pid.erase(std::remove_if(pid.begin(), pid.end(), [](char c) { return c < '0' || c > '9'; }), pid.end());
    throw InputError(cat("--out ", dir, ": in use by another mnist_cuda run (pid ", pid.empty() ? "?" : pid,
                         "); wait for it to end or choose another --out"));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    // The lock holds without the pid; a second run then says "pid ?".
  }
}

OutputDir::~OutputDir() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace mnist
