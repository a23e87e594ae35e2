// mnist_cuda compare: the same model, flags and seed trained on every available backend (the CUDA
// engine, the CPU path, PyTorch's tutorial loop through profiling/pytorch_mnist.py), one table.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ostream>

#include "apps/io/atomic_file.hpp"
#include "apps/pipeline/app.hpp"
#include "apps/pipeline/core.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"

extern char** environ;

namespace mnist {
namespace {

struct CompareRow {
  std::string backend, device, kernels, precision;
  double test_acc = 0, test_loss = 0, sec_per_epoch = 0, total = 0;
  int epochs = 0;
  std::size_t params = 0;
};

CompareRow train_engine_quietly(const AppOptions& o, const MnistData& data, Device device) {
  AppOptions q = o;
  q.device = device;
  const TrainValSplit split = split_for_training(o, data.train);
  const ModelSpec spec = model_spec(q, data.train.dim());
  const EngineConfig cfg = engine_config(q, spec);
  NullBuffer nb;
  std::ostream null_stream(&nb);
  std::unique_ptr<Engine> engine = make_engine(q, cfg, null_stream);
  const int tr = engine->add_dataset(split.train), va = engine->add_dataset(split.val);
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
  r.kernels = kernel_path(*engine);
  r.precision = to_string(cfg.precision);
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
  // (never through a link left under that name: the child's open then fails, and so does the run)
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
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
  OutputDir::check(o.out_dir);
  // A PyTorch peer the user named must be there: a missing one is a usage error before any
  // training, not a "skipped" row after it (unnamed, the row is skipped where torch is missing).
  if (!o.pytorch_script.empty() && access(o.pytorch_script.c_str(), R_OK) != 0)
    throw InputError(cat("--pytorch-script ", o.pytorch_script, ": cannot be read (", std::strerror(errno), ")"));
  if (!o.python.empty() && spawn_wait({o.python, "-c", "import torch"}, "/dev/null") != 0)
    throw InputError(cat("--python ", o.python, ": cannot run it, or it cannot import torch"));
  set_threads(o);
  const std::string dir = data_dir(o);
  const MnistData data = load_mnist_dir(dir);
  split_for_training(o, data.train);  // the split and --batch-size, checked before anything is written
  const OutputDir out_dir(o.out_dir);
  std::vector<CompareRow> rows;
  std::vector<std::string> skipped;
  const DeviceInfo dev = query_device();
  std::vector<Device> devices;
  if (o.device == Device::Auto || o.device == Device::Cuda) {
    if (dev.available) devices.push_back(Device::Cuda);
    else if (o.device == Device::Cuda) throw CudaError(cat("--device cuda: ", describe(dev)));
    else skipped.push_back("mnist_cuda cuda: " + describe(dev));
  }
  if (o.device != Device::Cuda) devices.push_back(Device::Cpu);
  for (const Device d : devices) {
    log << "compare: training mnist_cuda on " << to_string(d) << " (" << o.epochs << " epochs max, seed " << o.seed << ") ...\n";
    log.flush();
    rows.push_back(train_engine_quietly(o, data, d));
  }

  // PyTorch: the tutorial's loop (TensorDataset + DataLoader), same flags and seed.
  const std::string script =
      o.pytorch_script.empty() ? std::string(MNIST_SOURCE_DIR) + "/profiling/pytorch_mnist.py" : o.pytorch_script;
  const std::string py_log = out_dir.path("compare_pytorch.log");
  std::string why;
  if (access(script.c_str(), R_OK) != 0) {
    skipped.push_back("pytorch: " + script + " not found (--pytorch-script)");  // (the default one)
  } else if (const std::string py = python_with_torch(o, py_log, &why); py.empty()) {
    skipped.push_back("pytorch: " + why);
  } else {
    const std::string pdev = dev.available && o.device != Device::Cpu ? "cuda" : "cpu";
    const std::string json_path = out_dir.path("compare_pytorch.json");
    log << "compare: training PyTorch (tutorial loop) on " << pdev << " ...\n";
    log.flush();
    std::vector<std::string> argv{py, script, "--data", dir, "--device", pdev, "--mode", "tutorial",
                                  "--epochs", cat(o.epochs), "--batch-size", cat(o.batch_size), "--seed", cat(o.seed),
                                  "--val-split", cat(o.val_split), "--split", to_string(o.split), "--patience", cat(o.patience),
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
        r.kernels = "pytorch";
        r.precision = "fp32";
        r.test_acc = j.at("test_acc").get<double>();
        r.test_loss = j.value("test_loss", 0.0);
        r.epochs = j.at("epochs").get<int>();
        double secs = 0;
        for (const auto& s : j.at("epoch_seconds")) secs += s.get<double>();
        r.sec_per_epoch = secs / std::max(1, r.epochs);
        r.total = secs;
        // The script reports its model's size; else the same architecture's count.
        r.params = j.contains("params") ? j["params"].get<std::size_t>()
                                         : make_layout(model_spec(o, data.train.dim())).count;
        rows.push_back(r);
      } catch (const std::exception& e) {
        skipped.push_back(cat("pytorch: unreadable result ", json_path, " (", e.what(), ")"));
      }
    }
  }

  char line[512];
  std::string table = std::string("FRAMEWORK COMPARISON (") + to_string(o.dataset) + ", seed " + cat(o.seed) + ", batch " + cat(o.batch_size) +
                      ", up to " + cat(o.epochs) + " epochs, early stopping patience " + cat(o.patience) + ")\n";
  // The device column as wide as its longest name ("CPU (2 threads, OpenBLAS Cooperlake)"; at most 64).
  int dw = 28;
  for (const auto& r : rows) dw = std::max(dw, int(std::min<std::size_t>(r.device.size(), 64)));
  std::snprintf(line, sizeof line, "| %-34s | %-*s | %-12s | %-9s | %9s | %9s | %10s | %8s | %6s | %8s |\n",
                "backend", dw, "device", "kernels", "precision", "test acc", "test loss", "s/epoch", "total s", "epochs",
                "params");
  table += line;
  for (int w : {34, dw, 12, 9, 9, 9, 10, 8, 6, 8}) table += "|" + std::string(std::size_t(w) + 2, '-');
  table += "|\n";
  nlohmann::json js = {{"dataset", to_string(o.dataset)}, {"seed", o.seed}, {"batch_size", o.batch_size}, {"rows", nlohmann::json::array()}};
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "| %-34s | %-*s | %-12s | %-9s | %9.4f | %9.4f | %10.4f | %8.2f | %6d | %8zu |\n",
                  r.backend.c_str(), dw, r.device.substr(0, std::size_t(dw)).c_str(), r.kernels.c_str(), r.precision.c_str(), r.test_acc, r.test_loss, r.sec_per_epoch, r.total,
                  r.epochs, r.params);
    table += line;
    js["rows"].push_back({{"backend", r.backend}, {"device", r.device}, {"kernels", r.kernels},
                          {"precision", r.precision}, {"test_acc", r.test_acc},
                          {"test_loss", r.test_loss}, {"seconds_per_epoch", r.sec_per_epoch}, {"total_seconds", r.total},
                          {"epochs", r.epochs}, {"params", r.params}});
  }
  for (const auto& s : skipped) table += "skipped: " + s + "\n";
  js["skipped"] = skipped;
  log << "\n" << table;
  write_file_atomic(out_dir.path("compare.md"), table);
  write_file_atomic(out_dir.path("compare.json"), js.dump(2) + "\n");
  return 0;
}

}  // namespace mnist
