// The mnist_cuda commands, independent of the CLI parser: options in, files and lines out.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "apps/data/mnist.hpp"
#include "layers/engine.hpp"

namespace mnist {

struct AppOptions {
  // model
  std::string hidden = "128,64";
  double dropout = 0.2;
  std::string init = "keras";  // keras | torch
  // training
  int epochs = 20;
  int batch_size = 128;
  double lr = 1e-3;
  double val_split = 0.2;
  std::string split = "keras";  // keras (last fraction) | random (seeded)
  uint64_t seed = 42;
  int patience = 5;
  double lr_factor = 0.5;
  int lr_patience = 2;
  double min_lr = 1e-7;
  // where and how
  std::string device = "auto";  // auto | cpu | cuda
  std::string gemm = "native";  // native | cublas (CUDA only)
  std::string kernels = "fused";   // fused | graph (CUDA only)
  std::string precision = "fp32";  // fp32 | tf32 | bf16
  int graph_steps = 25;         // CUDA only: training steps per graph replay
  std::string dataset = "mnist";
  std::string data_dir;  // default data/<dataset>
  std::string out_dir = "out";
  int threads = 0;  // CPU threads (0: all)
  bool quiet = false;
  bool resume = false;  // continue the run whose <out>/resume.safetensors is there
  // evaluate / predict
  std::string checkpoint;
  std::vector<std::string> images;
  // compare
  std::string python;          // interpreter with torch (default: the first of python3, /usr/bin/python3 that has it)
  std::string pytorch_script;  // default: <source dir>/profiling/pytorch_mnist.py
};

// Parses "128,64" into widths; throws InputError naming --hidden.
std::vector<int> parse_hidden(const std::string& s);

// Checks every numeric and enumerated option; throws InputError naming the flag.
void validate_options(const AppOptions& o);

ModelSpec model_spec(const AppOptions& o, int input_dim);
EngineConfig engine_config(const AppOptions& o, const ModelSpec& spec);

// Picks the backend: cpu, cuda (an error without a device), or auto (cuda when a device is
// usable, else cpu with a one-line notice on `log`).
std::unique_ptr<Engine> make_engine(const AppOptions& o, const EngineConfig& cfg, std::ostream& log);

int run_train(const AppOptions& o, std::ostream& log);
int run_evaluate(const AppOptions& o, std::ostream& log);
int run_predict(const AppOptions& o, std::ostream& log);
// The tutorial's Part 3, measured: the same model and seed on every available backend (CUDA
// engine, CPU path, PyTorch through profiling/pytorch_mnist.py when torch is importable), one
// table of test accuracy, seconds per epoch, total time and parameters; <out>/compare.{md,json}.
int run_compare(const AppOptions& o, std::ostream& log);

}  // namespace mnist
