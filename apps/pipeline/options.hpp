// The command line of mnist_cuda: every flag, parsed once into a typed AppOptions by CLI11
// (choices become enums through CheckedTransformer, numbers are range-checked by validators), so
// that nothing below apps/ ever sees a flag's string. A usage error is a CLI::ParseError whose
// message names the flag; main() prints it as one line and exits 2.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "apps/data/mnist.hpp"
#include "layers/engine.hpp"

namespace CLI {
class App;
}

namespace mnist {

enum class Device { Auto, Cpu, Cuda };  // auto: CUDA when a device is usable, else the CPU path
enum class Dataset { Mnist, Fashion };
enum class Command { Train, Evaluate, Predict, Compare };

struct AppOptions {
  Command command = Command::Train;
  // model
  std::vector<int> hidden{128, 64};
  bool hidden_given = false;  // --hidden on the command line (evaluate/predict: checked against the checkpoint)
  double dropout = 0.2;
  Init init = Init::Keras;
  // training
  int epochs = 20;
  int batch_size = 128;
  double lr = 1e-3;
  double val_split = 0.2;
  SplitMode split = SplitMode::Keras;
  uint64_t seed = 42;
  int patience = 5;
  double lr_factor = 0.5;
  int lr_patience = 2;
  double min_lr = 1e-7;
  // where and how
  Device device = Device::Auto;
  Gemm gemm = Gemm::Native;            // CUDA only
  Kernels kernels = Kernels::Auto;     // CUDA only
  Precision precision = Precision::FP32;
  int graph_steps = 25;                // CUDA only: training steps per graph replay
  Autotune autotune = Autotune::On;    // CUDA only
  Pdl pdl = Pdl::On;                   // CUDA only (tail path)
  Carveout carveout = Carveout::Max;   // CUDA only (tail path, with --pdl on)
  TailRows tail_rows = TailRows::Rows32;  // CUDA only (tail path)
  Layer0 layer0 = Layer0::Separate;       // CUDA only (tail path, tf32/bf16)
  Layer0Cluster layer0_cluster = Layer0Cluster::Four;  // CUDA only (with --layer0 inside)
  Dataset dataset = Dataset::Mnist;
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

// Declares every flag and subcommand on `app`, writing into `o`; after app.parse(), o.command
// says which command was chosen. Choice and number flags are checked here (CLI::ValidationError).
void add_flags(CLI::App& app, AppOptions& o);

// Parses "128,64" into widths; throws InputError naming `what` (the flag or the checkpoint).
std::vector<int> parse_hidden(const std::string& s, const std::string& what = "--hidden");
std::string hidden_string(const std::vector<int>& hidden);  // "128,64"

// The checks that involve more than one flag (--min-lr <= --lr, dropout representable in float32);
// throws InputError naming the flag. Single flags were checked by the parser.
void validate_options(const AppOptions& o);

const char* to_string(Device d);
const char* to_string(Dataset d);
const char* to_string(SplitMode s);
const char* to_string(Init i);

// Shortest decimal form that reads back as the same double ("0.99999999", "-1e-07", "nan").
std::string shortest(double v);

// Every option's effective value, for report.json.
std::map<std::string, std::string> flag_map(const AppOptions& o);

}  // namespace mnist
