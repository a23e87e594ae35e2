#include "apps/pipeline/app.hpp"

#include <omp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

extern char** environ;

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <ostream>
#include <sstream>

#include "apps/io/atomic_file.hpp"
#include "apps/io/architecture.hpp"
#include "apps/io/checkpoint.hpp"
#include "apps/io/history_io.hpp"
#include "apps/io/plot.hpp"
#include "apps/io/png.hpp"
#include "apps/io/tensorboard.hpp"
#include "apps/pipeline/trainer.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"

namespace mnist {

std::vector<int> parse_hidden(const std::string& s) {
  if (s.empty()) throw InputError("--hidden '': at least one hidden width is required");
  // Every comma-separated token must be plain decimal digits: "128,", ",64", "1,,2", " 12", "+12"
  // and "12x" are all rejected (std::getline would silently drop a trailing empty token).
  std::vector<int> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = s.find(',', start);
    const std::string tok = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    long v = 0;
    bool ok = !tok.empty() && tok.size() <= 6;
    for (char c : tok) {
      if (c < '0' || c > '9') ok = false;
      if (ok) v = v * 10 + (c - '0');
    }
    if (!ok || v < 1 || v > 65536) {
      // The value may come from a checkpoint's metadata: keep the message one short line.
      auto shown = [](const std::string& t) {
        std::string o;
        for (char c : t.substr(0, 64)) o += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? '?' : c;
        return t.size() > 64 ? o + "..." : o;
      };
      throw InputError(cat("--hidden '", shown(s), "': '", shown(tok), "' is not a width in [1, 65536]"));
    }
    out.push_back(int(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void validate_options(const AppOptions& o) {
  parse_hidden(o.hidden);
  if (!(o.dropout >= 0.0 && o.dropout < 1.0)) throw InputError(cat("--dropout must be in [0, 1), got ", o.dropout));
  if (o.init != "keras" && o.init != "torch") throw InputError(cat("--init must be keras or torch, got '", o.init, "'"));
  if (o.epochs < 1 || o.epochs > 100000) throw InputError(cat("--epochs must be in [1, 100000], got ", o.epochs));
  if (o.batch_size < 1 || o.batch_size > 65536)
    throw InputError(cat("--batch-size must be in [1, 65536], got ", o.batch_size));
  if (!(o.lr > 0.0 && o.lr <= 10.0)) throw InputError(cat("--lr must be in (0, 10], got ", o.lr));
  if (!(o.val_split > 0.0 && o.val_split < 1.0))
    throw InputError(cat("--val-split must be in (0, 1), got ", o.val_split));
  if (o.split != "keras" && o.split != "random") throw InputError(cat("--split must be keras or random, got '", o.split, "'"));
  if (o.patience < 1) throw InputError(cat("--patience must be >= 1, got ", o.patience));
  if (!(o.lr_factor > 0.0 && o.lr_factor < 1.0)) throw InputError(cat("--lr-factor must be in (0, 1), got ", o.lr_factor));
  if (o.lr_patience < 1) throw InputError(cat("--lr-patience must be >= 1, got ", o.lr_patience));
  if (!(o.min_lr >= 0.0 && o.min_lr <= o.lr)) throw InputError(cat("--min-lr must be in [0, --lr = ", o.lr, "], got ", o.min_lr));
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
    throw InputError(cat("--device must be auto, cpu or cuda, got '", o.device, "'"));
  if (o.gemm != "native" && o.gemm != "cublas") throw InputError(cat("--gemm must be native or cublas, got '", o.gemm, "'"));
  if (o.kernels != "fused" && o.kernels != "graph")
    throw InputError(cat("--kernels must be fused or graph, got '", o.kernels, "'"));
  if (o.precision != "fp32" && o.precision != "tf32" && o.precision != "bf16")
    throw InputError(cat("--precision must be fp32, tf32 or bf16, got '", o.precision, "'"));
  if (o.graph_steps < 1 || o.graph_steps > 1000)
    throw InputError(cat("--graph-steps must be in [1, 1000], got ", o.graph_steps));
  if (o.dataset != "mnist" && o.dataset != "fashion")
    throw InputError(cat("--dataset must be mnist or fashion, got '", o.dataset, "'"));
  if (o.threads < 0 || o.threads > 1024) throw InputError(cat("--threads must be in [0, 1024], got ", o.threads));
}

ModelSpec model_spec(const AppOptions& o, int input_dim) {
  ModelSpec s;
  s.input = input_dim;
  s.hidden = parse_hidden(o.hidden);
  s.dropout = float(o.dropout);
  s.classes = 10;
  return s;
}

EngineConfig engine_config(const AppOptions& o, const ModelSpec& spec) {
  EngineConfig c;
  c.spec = spec;
  c.batch_size = o.batch_size;
  c.seed = o.seed;
  c.init = o.init == "torch" ? Init::Torch : Init::Keras;
  c.gemm = o.gemm == "cublas" ? Gemm::Cublas : Gemm::Native;
  c.kernels = o.kernels == "graph" ? Kernels::Graph : Kernels::Fused;
  c.precision = o.precision == "tf32" ? Precision::TF32 : o.precision == "bf16" ? Precision::BF16 : Precision::FP32;
  c.graph_steps = o.graph_steps;
  return c;
}

std::unique_ptr<Engine> make_engine(const AppOptions& o, const EngineConfig& cfg, std::ostream& log) {
  if (o.device == "cpu") return make_cpu_engine(cfg);
  const DeviceInfo dev = query_device();
  if (o.device == "cuda") {
    if (!dev.available) throw CudaError(cat("--device cuda: ", describe(dev)));
    return make_cuda_engine(cfg);
  }
  if (!dev.available) {
    log << "notice: " << describe(dev) << "; using the CPU path\n";
    return make_cpu_engine(cfg);
  }
  return make_cuda_engine(cfg);
}

namespace {

std::atomic<bool> g_interrupt{false};

extern "C" void on_stop_signal(int) { g_interrupt.store(true); }

// SIGINT/SIGTERM ask fit() to stop after the current step and write a resume checkpoint. The
// handler resets itself, so a second Ctrl-C kills the process at once.
void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// The flags that fix a run's trajectory: a resumed run must use the same ones.
std::map<std::string, std::string> run_config(const AppOptions& o) {
  return {{"hidden", o.hidden},         {"dropout", cat(o.dropout)},  {"init", o.init},
          {"batch_size", cat(o.batch_size)}, {"val_split", cat(o.val_split)}, {"split", o.split},
          {"seed", cat(o.seed)},        {"dataset", o.dataset},       {"patience", cat(o.patience)},
          {"precision", o.precision},
          {"lr_factor", cat(o.lr_factor)}, {"lr_patience", cat(o.lr_patience)}, {"min_lr", cat(o.min_lr)}};
}

std::string data_dir(const AppOptions& o) { return o.data_dir.empty() ? "data/" + o.dataset : o.data_dir; }

void set_threads(const AppOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
}

void print_predictions(Engine& engine, const ImageSet& test, int count, std::ostream& log) {
  count = std::min(count, test.n);
  std::vector<float> probs(std::size_t(count) * 10);
  engine.predict(probs.data(), test.images.data(), count);
  log << "\nSample Predictions:\n";
  char line[128];
  for (int i = 0; i < count; ++i) {
    const float* p = probs.data() + std::size_t(i) * 10;
    const int pred = int(std::max_element(p, p + 10) - p);
    std::snprintf(line, sizeof line, "  Image %d: True=%d, Predicted=%d, Confidence=%.3f\n", i, int(test.labels[std::size_t(i)]),
                  pred, double(p[pred]));
    log << line;
  }
}

}  // namespace

namespace {
// Discards what it is given: the sink of --quiet.
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};

std::string device_name(const Engine& engine) {
  if (engine.name() == "cuda") return query_device().name;
  return cat("CPU (", omp_get_max_threads(), " threads)");
}

std::vector<SamplePrediction> sample_predictions(Engine& engine, const ImageSet& test, int count) {
  count = std::min(count, test.n);
  std::vector<float> probs(std::size_t(count) * 10);
  engine.predict(probs.data(), test.images.data(), count);
  std::vector<SamplePrediction> out;
  for (int i = 0; i < count; ++i) {
    const float* p = probs.data() + std::size_t(i) * 10;
    const int pred = int(std::max_element(p, p + 10) - p);
    out.push_back({i, int(test.labels[std::size_t(i)]), pred, double(p[pred])});
  }
  return out;
}

std::vector<GrayImage> first_images(const ImageSet& s, int count) {
  std::vector<GrayImage> out;
  for (int i = 0; i < std::min(count, s.n); ++i) {
    GrayImage g;
    g.width = s.cols;
    g.height = s.rows;
    auto first = s.images.begin() + std::ptrdiff_t(std::size_t(i) * std::size_t(s.dim()));
    g.pixels.assign(first, first + s.dim());
    out.push_back(std::move(g));
  }
  return out;
}

// The callbacks' settings of the flags (epochs, Adam's rate, EarlyStopping, ReduceLROnPlateau).
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

std::map<std::string, std::string> flag_map(const AppOptions& o) {
  return {{"epochs", cat(o.epochs)},         {"batch_size", cat(o.batch_size)}, {"lr", cat(o.lr)},
          {"hidden", o.hidden},              {"dropout", cat(o.dropout)},       {"val_split", cat(o.val_split)},
          {"split", o.split},                {"seed", cat(o.seed)},             {"patience", cat(o.patience)},
          {"lr_factor", cat(o.lr_factor)},   {"lr_patience", cat(o.lr_patience)}, {"min_lr", cat(o.min_lr)},
          {"device", o.device},              {"gemm", o.gemm},                  {"dataset", o.dataset},
          {"init", o.init},                  {"graph_steps", cat(o.graph_steps)}, {"out", o.out_dir},
          {"kernels", o.kernels},            {"precision", o.precision}};
}

}  // namespace

int run_train(const AppOptions& o, std::ostream& out) {
  validate_options(o);
  NullBuffer null_buffer;
  std::ostream null_stream(&null_buffer);
  std::ostream& log = o.quiet ? null_stream : out;
  set_threads(o);
  const std::string dir = data_dir(o);
  MnistData data = load_mnist_dir(dir);
  log << "Dataset: " << o.dataset << " (" << dir << ")\n";
  log << "Training set: " << shape_string(data.train) << "\n";
  log << "Test set: " << shape_string(data.test) << "\n";
  log << "Training data shape: (" << data.train.n << ", " << data.train.dim() << ")\n";
  log << "Data range: [0.00, 1.00] (uint8 pixels scaled by 1/255 as each batch is gathered)\n";

  ImageSet train, val;
  split_train_val(data.train, o.val_split, o.split == "random" ? SplitMode::Random : SplitMode::Keras, o.seed, train, val);
  if (o.batch_size > train.n)
    throw InputError(cat("--batch-size ", o.batch_size, " is larger than the ", train.n, " training examples"));

  const ModelSpec spec = model_spec(o, data.train.dim());
  const EngineConfig cfg = engine_config(o, spec);
  std::unique_ptr<Engine> engine = make_engine(o, cfg, log);
  const std::string summary = summary_table(spec, engine->layout());
  log << "\n" << summary;
  log << "Backend: " << engine->name() << " (" << device_name(*engine) << ")\n";
  log << "Train on " << train.n << " samples, validate on " << val.n << " samples (" << o.split << " split)\n";

  // What the tutorial shows before training: the sample grid and the architecture picture.
  make_dirs(o.out_dir);
  sample_grid_png(o.out_dir + "/samples.png", first_images(data.train, 10),
                  std::vector<int>(data.train.labels.begin(), data.train.labels.begin() + std::min(10, data.train.n)),
                  2, 5, o.dataset == "fashion" ? "Sample Fashion-MNIST Images" : "Sample MNIST Images");
  const ArchitectureFiles arch = write_architecture(o.out_dir, spec);
  for (const auto& w : arch.warnings) log << "note: " << w << "\n";

  const int train_id = engine->add_dataset(train.view());
  const int val_id = engine->add_dataset(val.view());
  const int test_id = engine->add_dataset(data.test.view());

  FitOptions fo = fit_options(o);
  fo.checkpoint = o.out_dir + "/best_model.safetensors";
  fo.steps_per_epoch = (train.n + o.batch_size - 1) / o.batch_size;
  fo.quiet = o.quiet;

  FitControl ctl;
  ctl.interrupt = &g_interrupt;
  ctl.resume_path = o.out_dir + "/resume.safetensors";
  ctl.config = run_config(o);
  ResumeState resume;
  if (o.resume) {
    resume = load_resume(ctl.resume_path, engine->layout());
    std::string diff;
    for (const auto& [k, v] : ctl.config) {
      auto it = resume.config.find(k);
      if (it == resume.config.end() || it->second != v)
        diff += cat("; ", k, " was ", it == resume.config.end() ? "(unset)" : it->second, ", now ", v);
    }
    if (!diff.empty())
      throw InputError(cat("--resume: ", ctl.resume_path, " belongs to a run with other flags", diff));
    ctl.resume_from = &resume;
  }
  install_stop_handlers();

  // TensorBoard(log_dir=<out>/logs, histogram_freq=1): scalars and weight histograms per epoch.
  KerasTensorBoard tensorboard(o.out_dir + "/logs");
  std::vector<float> params;
  auto on_epoch = [&](const EpochRecord& r, Engine& e) {
    e.get_params(params);
    tensorboard.on_epoch_end(r, spec, e.layout(), params);
  };

  const auto t0 = std::chrono::steady_clock::now();
  History h = fit(*engine, train_id, val_id, spec, fo, log, on_epoch, ctl);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_history_csv(o.out_dir + "/history.csv", h);
  write_history_jsonl(o.out_dir + "/history.jsonl", h);
  if (h.interrupted) return 130;
  plot_history_png(o.out_dir + "/history.png", h);

  const EpochStats test = engine->evaluate(test_id);
  char line[128];
  out << "\nResults (" << engine->name() << "):\n";
  std::snprintf(line, sizeof line, "Test Loss: %.4f\nTest Accuracy: %.4f\n", test.loss, test.accuracy);
  out << line;
  std::snprintf(line, sizeof line, "Training time: %.2f s (%.3f s/epoch over %zu epochs)\n", total,
                total / double(std::max<std::size_t>(h.epochs.size(), 1)), h.epochs.size());
  out << line;

  ReportInfo report;
  report.model_summary = summary;
  report.params = engine->layout().count;
  report.hidden = spec.hidden;
  report.dropout = spec.dropout;
  report.device = device_name(*engine);
  report.backend = engine->name();
  report.dataset = o.dataset + " (" + dir + ")";
  report.seed = o.seed;
  report.flags = flag_map(o);
  report.history = h;
  report.test_loss = test.loss;
  report.test_accuracy = test.accuracy;
  report.total_seconds = total;
  report.sample_predictions = sample_predictions(*engine, data.test, 10);
  log << "\nSample Predictions:\n";
  std::vector<std::string> captions;
  for (const SamplePrediction& p : report.sample_predictions) {
    std::snprintf(line, sizeof line, "  Image %d: True=%d, Predicted=%d, Confidence=%.3f\n", p.index, p.true_label,
                  p.predicted, p.confidence);
    log << line;
    std::snprintf(line, sizeof line, "%d (%.2f)%s", p.predicted, p.confidence, p.predicted == p.true_label ? "" : " X");
    captions.push_back(line);
  }
  image_grid_png(o.out_dir + "/predictions.png", first_images(data.test, 10), captions, 2, 5,
                 "Predictions (confidence)");
  write_report_json(o.out_dir + "/report.json", report);
  log << "\nWrote " << o.out_dir << "/: best_model.safetensors, resume.safetensors, history.{csv,jsonl,png}, "
      << "report.json, samples.png, predictions.png, model.dot" << (arch.rendered.empty() ? "" : " (+svg/png)")
      << ", logs/ (TensorBoard)\n";
  return 0;
}

namespace {
// The model of a checkpoint on the chosen backend: its widths from the checkpoint's metadata
// (flags otherwise), its names, shapes and dtypes checked against that model.
std::unique_ptr<Engine> engine_from_checkpoint(const AppOptions& o, int input_dim, std::ostream& log,
                                               std::string* hidden) {
  std::map<std::string, std::string> meta;
  const std::vector<TensorF32> tensors = decode_safetensors(read_file(o.checkpoint), o.checkpoint, &meta);
  AppOptions mo = o;
  ModelSpec spec;
  try {
    if (meta.count("hidden")) mo.hidden = meta["hidden"];
    spec = model_spec(mo, input_dim);
    spec.validate();
  } catch (const InputError& e) {
    if (!meta.count("hidden")) throw;
    throw InputError(cat(o.checkpoint, ": metadata \"hidden\" does not describe a usable model: ", e.what()));
  }
  if (meta.count("input") && meta["input"] != std::to_string(input_dim))
    throw InputError(cat(o.checkpoint, ": the model takes ", meta["input"].substr(0, 16), " inputs, the images have ",
                         input_dim, " pixels"));
  // Names, shapes and dtypes are checked against the layout before any engine memory exists.
  std::vector<float> flat;
  tensors_to_params(make_layout(spec), tensors, flat, o.checkpoint);
  std::unique_ptr<Engine> engine = make_engine(o, engine_config(mo, spec), log);
  engine->set_params(flat);
  if (hidden) *hidden = mo.hidden;
  return engine;
}
}  // namespace

int run_evaluate(const AppOptions& o, std::ostream& log) {
  validate_options(o);
  set_threads(o);
  if (o.checkpoint.empty()) throw InputError("evaluate: --checkpoint FILE is required");
  const std::string dir = data_dir(o);
  MnistData data = load_mnist_dir(dir);
  std::string hidden;
  std::unique_ptr<Engine> engine = engine_from_checkpoint(o, data.test.dim(), log, &hidden);
  const EpochStats test = engine->evaluate(engine->add_dataset(data.test.view()));
  char line[128];
  std::snprintf(line, sizeof line, "Test Loss: %.4f\nTest Accuracy: %.4f\n", test.loss, test.accuracy);
  log << "Checkpoint: " << o.checkpoint << " (hidden " << hidden << ", backend " << engine->name() << ")\n" << line;
  print_predictions(*engine, data.test, 10, log);
  return 0;
}

int run_predict(const AppOptions& o, std::ostream& log) {
  validate_options(o);
  if (o.checkpoint.empty()) throw InputError("predict: --checkpoint FILE is required");
  if (o.images.empty()) throw InputError("predict: give at least one PNG file");
  std::vector<uint8_t> pixels;
  for (const std::string& path : o.images) {
    const std::vector<uint8_t> img = to_mnist_28x28(read_png_gray(path));
    pixels.insert(pixels.end(), img.begin(), img.end());
  }
  std::string hidden;
  std::unique_ptr<Engine> engine = engine_from_checkpoint(o, 28 * 28, log, &hidden);
  const int n = int(o.images.size());
  std::vector<float> probs(std::size_t(n) * 10);
  engine->predict(probs.data(), pixels.data(), n);
  char line[512];
  for (int i = 0; i < n; ++i) {
    const float* p = probs.data() + std::size_t(i) * 10;
    const int pred = int(std::max_element(p, p + 10) - p);
    std::snprintf(line, sizeof line, "%s: class %d (confidence %.3f)\n", o.images[std::size_t(i)].c_str(), pred,
                  double(p[pred]));
    log << line;
  }
  return 0;
}

namespace {

struct CompareRow {
  std::string backend, device;
  double test_acc = 0, test_loss = 0, sec_per_epoch = 0, total = 0;
  int epochs = 0;
  std::size_t params = 0;
  std::string note;
};

CompareRow train_engine_quietly(const AppOptions& o, const MnistData& data, const std::string& device) {
  AppOptions q = o;
  q.device = device;
  ImageSet train, val;
  split_train_val(data.train, o.val_split, o.split == "random" ? SplitMode::Random : SplitMode::Keras, o.seed, train, val);
  if (o.batch_size > train.n)
    throw InputError(cat("--batch-size ", o.batch_size, " is larger than the ", train.n, " training examples"));
  const ModelSpec spec = model_spec(q, data.train.dim());
  NullBuffer nb;
  std::ostream null_stream(&nb);
  std::unique_ptr<Engine> engine = make_engine(q, engine_config(q, spec), null_stream);
  const int tr = engine->add_dataset(train.view()), va = engine->add_dataset(val.view());
  const int te = engine->add_dataset(data.test.view());
  FitOptions fo = fit_options(o);
  fo.quiet = true;
  const auto t0 = std::chrono::steady_clock::now();
  const History h = fit(*engine, tr, va, spec, fo, null_stream);
  CompareRow r;
  r.total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const EpochStats t = engine->evaluate(te);
  r.backend = "mnist_cuda " + engine->name();
  r.device = device_name(*engine);
  r.test_acc = t.accuracy;
  r.test_loss = t.loss;
  r.epochs = int(h.epochs.size());
  double secs = 0;
  for (const auto& e : h.epochs) secs += e.seconds;
  r.sec_per_epoch = secs / std::max(1, r.epochs);
  r.params = engine->layout().count;
  return r;
}

// Runs argv (no shell) and returns its exit status; stdout/stderr go to `log_path`.
int spawn_wait(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// The first interpreter that imports torch, or "" (with the reason in *why).
std::string python_with_torch(const AppOptions& o, const std::string& log_path, std::string* why) {
  std::vector<std::string> candidates;
  if (!o.python.empty()) candidates.push_back(o.python);
  else candidates = {"python3", "/usr/bin/python3"};
  for (const auto& py : candidates)
    if (spawn_wait({py, "-c", "import torch"}, log_path) == 0) return py;
  *why = "no python3 with torch (tried";
  for (const auto& py : candidates) *why += " " + py;
  *why += ")";
  return "";
}

}  // namespace

int run_compare(const AppOptions& o, std::ostream& log) {
  validate_options(o);
  set_threads(o);
  const std::string dir = data_dir(o);
  const MnistData data = load_mnist_dir(dir);
  make_dirs(o.out_dir);
  std::vector<CompareRow> rows;
  std::vector<std::string> skipped;
  const DeviceInfo dev = query_device();
  std::vector<std::string> devices;
  if (o.device == "auto" || o.device == "cuda") {
    if (dev.available) devices.push_back("cuda");
    else if (o.device == "cuda") throw CudaError(cat("--device cuda: ", describe(dev)));
    else skipped.push_back("mnist_cuda cuda: " + describe(dev));
  }
  if (o.device != "cuda") devices.push_back("cpu");
  for (const auto& d : devices) {
    log << "compare: training mnist_cuda on " << d << " (" << o.epochs << " epochs max, seed " << o.seed << ") ...\n";
    log.flush();
    rows.push_back(train_engine_quietly(o, data, d));
  }

  // PyTorch: the tutorial's loop (TensorDataset + DataLoader), same flags and seed.
  const std::string script =
      o.pytorch_script.empty() ? std::string(MNIST_SOURCE_DIR) + "/profiling/pytorch_mnist.py" : o.pytorch_script;
  const std::string py_log = o.out_dir + "/compare_pytorch.log";
  std::string why;
  if (access(script.c_str(), R_OK) != 0) {
    skipped.push_back("pytorch: " + script + " not found (--pytorch-script)");
  } else if (const std::string py = python_with_torch(o, py_log, &why); py.empty()) {
    skipped.push_back("pytorch: " + why);
  } else {
    const std::string pdev = dev.available && o.device != "cpu" ? "cuda" : "cpu";
    const std::string json_path = o.out_dir + "/compare_pytorch.json";
    log << "compare: training PyTorch (tutorial loop) on " << pdev << " ...\n";
    log.flush();
    std::vector<std::string> argv{py, script, "--data", dir, "--device", pdev, "--mode", "tutorial",
                                  "--epochs", cat(o.epochs), "--batch-size", cat(o.batch_size), "--seed", cat(o.seed),
                                  "--val-split", cat(o.val_split), "--split", o.split, "--patience", cat(o.patience),
                                  "--json", json_path, "--quiet"};
    if (o.threads > 0) argv.insert(argv.end(), {"--threads", cat(o.threads)});
    const int rc = spawn_wait(argv, py_log);
    if (rc != 0) {
      skipped.push_back(cat("pytorch: the script failed (exit ", rc, "), see ", py_log));
    } else {
      try {
        const nlohmann::json j = nlohmann::json::parse(read_file(json_path));
        CompareRow r;
        r.backend = "pytorch " + j.value("torch", std::string("?")) + " (tutorial loop)";
        r.device = j.value("device", pdev);
        r.test_acc = j.at("test_acc").get<double>();
        r.test_loss = j.value("test_loss", 0.0);
        r.epochs = j.at("epochs").get<int>();
        double secs = 0;
        for (const auto& s : j.at("epoch_seconds")) secs += s.get<double>();
        r.sec_per_epoch = secs / std::max(1, r.epochs);
        r.total = secs;
        r.params = 109386;
        if (j.contains("params")) r.params = j["params"].get<std::size_t>();
        rows.push_back(r);
      } catch (const std::exception& e) {
        skipped.push_back(cat("pytorch: unreadable result ", json_path, " (", e.what(), ")"));
      }
    }
  }

  char line[512];
  std::string table = "FRAMEWORK COMPARISON (" + o.dataset + ", seed " + cat(o.seed) + ", batch " + cat(o.batch_size) +
                      ", up to " + cat(o.epochs) + " epochs, early stopping patience " + cat(o.patience) + ")\n";
  std::snprintf(line, sizeof line, "| %-34s | %-28s | %9s | %9s | %10s | %8s | %6s | %8s |\n", "backend", "device",
                "test acc", "test loss", "s/epoch", "total s", "epochs", "params");
  table += line;
  table += "|" + std::string(36, '-') + "|" + std::string(30, '-') + "|" + std::string(11, '-') + "|" +
           std::string(11, '-') + "|" + std::string(12, '-') + "|" + std::string(10, '-') + "|" + std::string(8, '-') +
           "|" + std::string(10, '-') + "|\n";
  nlohmann::json js = {{"dataset", o.dataset}, {"seed", o.seed}, {"batch_size", o.batch_size}, {"rows", nlohmann::json::array()}};
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "| %-34s | %-28s | %9.4f | %9.4f | %10.4f | %8.2f | %6d | %8zu |\n",
                  r.backend.c_str(), r.device.substr(0, 28).c_str(), r.test_acc, r.test_loss, r.sec_per_epoch, r.total,
                  r.epochs, r.params);
    table += line;
    js["rows"].push_back({{"backend", r.backend}, {"device", r.device}, {"test_acc", r.test_acc},
                          {"test_loss", r.test_loss}, {"seconds_per_epoch", r.sec_per_epoch}, {"total_seconds", r.total},
                          {"epochs", r.epochs}, {"params", r.params}});
  }
  for (const auto& s : skipped) table += "skipped: " + s + "\n";
  js["skipped"] = skipped;
  log << "\n" << table;
  write_file_atomic(o.out_dir + "/compare.md", table);
  write_file_atomic(o.out_dir + "/compare.json", js.dump(2) + "\n");
  return 0;
}

}  // namespace mnist
