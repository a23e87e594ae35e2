// mnist_cuda (no subcommand): the tutorial's pipeline. Everything is validated (flags, data, the
// resume state, the output folder, the engine's memory) before the first byte is written to --out;
// the folder is then locked for the whole run.
#include <signal.h>
#include <sys/stat.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <iostream>
#include <map>
#include <ostream>

#include "apps/io/architecture.hpp"
#include "apps/io/background_writer.hpp"
#include "apps/io/history_io.hpp"
#include "apps/io/plot.hpp"
#include "apps/io/png.hpp"
#include "apps/io/tensorboard.hpp"
#include "apps/pipeline/app.hpp"
#include "apps/pipeline/core.hpp"
#include "apps/pipeline/progress_bar.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"

namespace mnist {
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

// The interrupted run's state, checked against this run's flags and data.
ResumeState load_checked_resume(const std::string& path, const ParamLayout& layout,
                                const std::map<std::string, std::string>& config, const std::string& dir) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw InputError(cat("--resume: ", path, " does not exist (no interrupted run in this --out)"));
  // The flags and the data first: a state of another --hidden or other images is named as such,
  // not as tensors of the wrong size.
  std::map<std::string, std::string> saved = resume_config(path);
  const auto data = saved.find("data");
  if (data != saved.end() && data->second != config.at("data"))
    throw InputError(cat("--resume: --data ", dir, " holds other data than the run saved in ", path, " (",
                         config.at("data"), "; the run had ", data->second.substr(0, 80), ")"));
  const std::string diff = resume_flag_diff(std::move(saved), config);
  if (!diff.empty())
    throw InputError(cat("--resume: ", path, " belongs to a run with other flags", diff,
                         " (only --epochs, --threads, --graph-steps, --pdl, --carveout, --layer0-cluster, --quiet and the --data path may change)"));
  return load_resume(path, layout);
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

// The files of a run that exist now, for the closing "Wrote" line: a resumed run may not have
// rewritten best_model.safetensors, and a user may have deleted it.
std::string written_files(const OutputDir& out) {
  std::string list;
  for (const char* f : {"best_model.safetensors", "resume.safetensors", "history.csv", "history.jsonl", "history.png",
                        "history.svg", "report.json", "samples.png", "predictions.png", "model.dot", "model.svg", "model.png", "logs"}) {
    struct stat st;
    if (::stat(out.path(f).c_str(), &st) == 0)
      list += cat(list.empty() ? "" : ", ", f, std::string(f) == "logs" ? "/ (TensorBoard)" : "");
  }
  return list;
}

}  // namespace

// The resume rule, one for every flag: a resumed run must compute what the interrupted run would
// have computed, so every flag that can change a number must be the same (the learning rate
// included) and the data must be the same data (by fingerprint, wherever --data points). Only
// --epochs (train longer or shorter), --threads, --graph-steps, --pdl, --carveout, --layer0-cluster, --quiet and
// the --data path may change. `backend` is the engine actually used (auto resolves to cpu or cuda). --autotune counts on
// CUDA (the tiles and path it keeps are saved with the state and preset on resume; without it the
// size models' choices): a file from before the flag existed ran without it ("off"). --tail-rows
// counts on CUDA too (other sums of the later layers' gradients): a file from before it ran 32; so
// does --layer0 (another sum of layer 0's products): a file from before it ran "separate".
std::map<std::string, std::string> run_config(const AppOptions& o, const std::string& backend,
                                              const std::string& fingerprint) {
  std::map<std::string, std::string> c = {{"hidden", hidden_string(o.hidden)}, {"dropout", cat(o.dropout)},     {"init", to_string(o.init)},
          {"batch_size", cat(o.batch_size)},   {"val_split", cat(o.val_split)}, {"split", to_string(o.split)},
          {"seed", cat(o.seed)},               {"patience", cat(o.patience)},   {"precision", to_string(o.precision)},
          {"lr_factor", cat(o.lr_factor)},     {"lr_patience", cat(o.lr_patience)}, {"min_lr", cat(o.min_lr)},
          {"lr", shortest(o.lr)},              {"backend", backend},             {"gemm", to_string(o.gemm)},
          {"kernels", to_string(o.kernels)},   {"data", fingerprint}};
  if (backend == "cuda") {
    c["autotune"] = to_string(o.autotune);
    c["tail_rows"] = to_string(o.tail_rows);
    c["layer0"] = to_string(o.layer0);
  }
  return c;
}

std::string resume_flag_diff(std::map<std::string, std::string> saved, const std::map<std::string, std::string>& config) {
  // (flags the file may predate: what a run before them ran)
  if (config.count("autotune") && !saved.count("autotune")) saved["autotune"] = "off";
  if (config.count("tail_rows") && !saved.count("tail_rows")) saved["tail_rows"] = "32";
  if (config.count("layer0") && !saved.count("layer0")) saved["layer0"] = "separate";
  std::string diff;
  for (const auto& [k, v] : config) {
    auto it = saved.find(k);
    if (it == saved.end() || it->second != v)
      diff += cat("; ", k, " was ", it == saved.end() ? "(unset)" : it->second.substr(0, 80), ", now ", v);
  }
  return diff;
}

int run_train(const AppOptions& o, std::ostream& out) {
  validate_options(o);
  OutputDir::check(o.out_dir);
  NullBuffer null_buffer;
  std::ostream null_stream(&null_buffer);
  std::ostream& log = o.quiet ? null_stream : out;
  set_threads(o);
  // Where a whole run's wall time goes (report.json "phase_seconds").
  using Clock = std::chrono::steady_clock;
  std::vector<std::pair<std::string, double>> phases;
  auto lap = [&phases, t = Clock::now()](const char* name) mutable {
    const auto now = Clock::now();
    phases.emplace_back(name, std::chrono::duration<double>(now - t).count());
    t = now;
  };
  // The CUDA runtime starts (context creation) on another thread while this one decodes the data.
  std::future<void> device_ready;
  if (o.device != Device::Cpu) device_ready = std::async(std::launch::async, warm_up_device);
  const std::string dir = data_dir(o);
  MnistData data = load_mnist_dir(dir);
  lap("load_data");
  log << "Dataset: " << to_string(o.dataset) << " (" << dir << ")\n";
  log << "Training set: " << shape_string(data.train) << "\n";
  log << "Test set: " << shape_string(data.test) << "\n";
  log << "Training data shape: (" << data.train.n << ", " << data.train.dim() << ")\n";
  log << "Data range: [0.00, 1.00] (uint8 pixels scaled by 1/255 as each batch is gathered)\n";

  const TrainValSplit split = split_for_training(o, data.train);
  const ModelSpec spec = model_spec(o, data.train.dim());
  const EngineConfig cfg = engine_config(o, spec);
  if (device_ready.valid()) device_ready.get();
  std::unique_ptr<Engine> engine = make_engine(o, cfg, log);
  if (!engine->notice().empty()) log << engine->notice() << "\n";

  FitControl ctl;
  ctl.interrupt = &g_interrupt;
  ctl.resume_path = o.out_dir + "/resume.safetensors";
  ctl.config = run_config(o, engine->name(), dataset_fingerprint(data));
  ResumeState resume;
  if (o.resume) {
    resume = load_checked_resume(ctl.resume_path, engine->layout(), ctl.config, dir);
    ctl.resume_from = &resume;
  }
  const int train_id = engine->add_dataset(split.train);
  const int val_id = engine->add_dataset(split.val);
  const int test_id = engine->add_dataset(data.test.view());
  lap("engine");

  // Everything is checked: from here on the run writes, holding the folder's lock.
  const OutputDir out_dir(o.out_dir);
  const std::string summary = summary_table(spec, engine->layout());
  log << "\n" << summary;
  log << "Backend: " << engine->name() << " (" << device_name(*engine) << ")\n";
  log << "Train on " << split.train.n << " samples, validate on " << split.val.n << " samples (" << to_string(o.split)
      << " split)\n";

  // What the tutorial shows before training: the sample grid and the architecture picture.
  sample_grid_png(out_dir.path("samples.png"), first_images(data.train, kSamplesShown),
                  std::vector<int>(data.train.labels.begin(), data.train.labels.begin() + std::min(kSamplesShown, data.train.n)),
                  2, 5, o.dataset == Dataset::Fashion ? "Sample Fashion-MNIST Images" : "Sample MNIST Images");
  // Graphviz renders the architecture (two `dot` processes, ~0.1 s of CPU) while the model trains,
  // where a core is free for it: the CUDA engine's host thread leaves them free, and so does a CPU
  // engine on fewer threads than cores. A CPU engine on every core gets it after training instead:
  // beside the engine's team (layers/cpu_engine.cpp), `dot` took a core from it, and on 2 cores the
  // first epoch took 0.35 s against the next ones' 0.26 for the same total.
  std::future<ArchitectureFiles> arch;
  auto start_architecture = [&] {
    arch = std::async(std::launch::async, [&] { return write_architecture(o.out_dir, spec); });
  };
  const bool after_training = engine->name() == "cpu" && omp_get_max_threads() >= omp_get_num_procs();
  if (!after_training) start_architecture();
  auto architecture_done = [&arch, &log] {
    if (!arch.valid()) return;
    for (const auto& w : arch.get().warnings) log << "note: " << w << "\n";
  };

  FitOptions fo = fit_options(o);
  fo.checkpoint = out_dir.path("best_model.safetensors");
  fo.steps_per_epoch = (split.train.n + o.batch_size - 1) / o.batch_size;
  fo.quiet = o.quiet;
  fo.progress_bar = !o.quiet && ProgressBar::is_terminal(out);
  install_stop_handlers();

  // TensorBoard(log_dir=<out>/logs, histogram_freq=1): scalars and weight histograms per epoch.
  KerasTensorBoard tensorboard(out_dir.path("logs"));
  // The per-epoch files (checkpoint, resume state, TensorBoard) are written on this writer's
  // thread while the next epoch trains; fit() flushes it before it returns or throws, and it is
  // destroyed (flushed) before the folder's lock is released.
  BackgroundWriter writer;
  ctl.writer = &writer;
  std::vector<float> params;
  auto on_epoch = [&](const EpochRecord& r, Engine& e) {
    e.get_params(params);
    tensorboard.on_epoch_end(r, spec, e.layout(), params, &writer);
  };

  // SIGINT/SIGTERM at any point: the resume state on disk is current; say so and exit 130.
  auto stopped = [&](const History& h) {
    if (!h.interrupted && !g_interrupt.load()) return false;
    const std::string where = ctl.resume_path + ": continue with --resume";
    if (!h.interrupted) log << "Interrupted after the last epoch; state saved to " << where << "\n";
    if (o.quiet) std::cerr << "mnist_cuda: interrupted; state saved to " << where << "\n";
    return true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  History h = fit(*engine, train_id, val_id, spec, fo, log, on_epoch, ctl);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  lap("fit");
  if (after_training) start_architecture();
  write_history_csv(out_dir.path("history.csv"), h);
  write_history_jsonl(out_dir.path("history.jsonl"), h);
  if (stopped(h)) {
    architecture_done();
    return 130;
  }
  plot_history_png(out_dir.path("history.png"), h);
  plot_history_svg(out_dir.path("history.svg"), h);

  const EpochStats test = engine->evaluate(test_id);
  lap("test");
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
  report.kernels = kernel_path(*engine);
  report.precision = to_string(cfg.precision);
  report.dataset = cat(to_string(o.dataset), " (", dir, ")");
  report.seed = o.seed;
  report.flags = flag_map(o);
  report.history = h;
  report.test_loss = test.loss;
  report.test_accuracy = test.accuracy;
  report.total_seconds = total;
  report.autotune = engine->autotune_report();
  if (!report.autotune.empty()) {
    log << "GEMM tiles timed on this device (--autotune on):\n";
    for (const std::string& l : report.autotune) log << "  " << l << "\n";
  }
  const int shown = std::min(kSamplesShown, data.test.n);
  const std::vector<Top1> predictions = predict_top1(*engine, data.test.images.data(), shown);
  print_sample_predictions(predictions, data.test, log);
  std::vector<std::string> captions;
  for (int i = 0; i < shown; ++i) {
    const Top1& p = predictions[std::size_t(i)];
    const int truth = int(data.test.labels[std::size_t(i)]);
    report.sample_predictions.push_back({i, truth, p.label, p.confidence});
    std::snprintf(line, sizeof line, "%d (%.2f)%s", p.label, p.confidence, p.label == truth ? "" : " X");
    captions.push_back(line);
  }
  image_grid_png(out_dir.path("predictions.png"), first_images(data.test, shown), captions, 2, 5,
                 "Predictions (confidence)");
  architecture_done();
  lap("outputs");
  report.phase_seconds = phases;
  report.phase_seconds.emplace_back("process", process_seconds());
  write_report_json(out_dir.path("report.json"), report);
  log << "\nWrote " << o.out_dir << "/: " << written_files(out_dir) << "\n";
  return stopped(h) ? 130 : 0;
}

}  // namespace mnist
