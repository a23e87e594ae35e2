#include "apps/pipeline/options.hpp"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "runtime/error.hpp"

namespace mnist {

const char* to_string(Device d) { return d == Device::Cpu ? "cpu" : d == Device::Cuda ? "cuda" : "auto"; }
const char* to_string(Dataset d) { return d == Dataset::Fashion ? "fashion" : "mnist"; }
const char* to_string(SplitMode s) { return s == SplitMode::Random ? "random" : "keras"; }
const char* to_string(Init i) { return i == Init::Torch ? "torch" : "keras"; }

std::string shortest(double v) {
  char buf[32];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::isnan(v) || std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

namespace {

// A choice flag: the names are each value's to_string (one spelling, shared with the messages and
// report.json); CLI::CheckedTransformer maps the name to the enum. Anything else is refused with
// the list of names.
template <class E>
CLI::Validator choice(std::initializer_list<E> values) {
  std::vector<std::pair<std::string, E>> names;
  std::string list;
  for (E v : values) {
    list += (names.empty() ? "" : names.size() + 1 == values.size() ? " or " : ", ") + std::string(to_string(v));
    names.emplace_back(to_string(v), v);
  }
  const CLI::CheckedTransformer to_enum(names);
  return CLI::Validator(
      [names, list, to_enum](std::string& s) {
        for (const auto& n : names)
          if (n.first == s) return to_enum(s);  // the name becomes the enum's value
        return cat("must be ", list, ", got '", s, "'");
      },
      [&] {
        std::string alts;
        for (const auto& n : names) alts += (alts.empty() ? "" : "|") + n.first;
        return alts;
      }());
}

// A number flag in an interval; the value is shown as the user will recognise it ("got 0.001").
// Integers must be plain decimal digits (no "1.5", "1e9", "0x10", no wrap-around of "-1").
template <class T>
CLI::Validator number(T lo, T hi, bool lo_open = false, bool hi_open = false) {
  const std::string range = cat(lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        T v{};
        if constexpr (std::is_integral_v<T>) {
          const char* end = s.data() + s.size();
          const auto r = std::from_chars(s.data(), end, v);
          if (s.empty() || r.ec != std::errc() || r.ptr != end) {  // (out of range: ptr is at the end, v untouched)
            if (r.ec == std::errc::result_out_of_range || (!s.empty() && s[0] == '-' && std::is_unsigned_v<T>))
              return cat("must be an integer in ", range, ", got ", s.substr(0, 40));
            return cat("'", s.substr(0, 40), "' is not an integer");
          }
          if (v < lo || v > hi) return cat("must be in ", range, ", got ", v);
          s = std::to_string(v);  // what CLI11 converts next: the same number, in decimal
        } else {
          // Decimal only (strtod would take "0x10", "inf" and "nan" too), and representable: strtod
          // turns "1e-400" into 0 (ERANGE), which would, e.g., remove the Dropout layers.
          if (s.empty() || s.find_first_not_of("0123456789+-.eE") != std::string::npos)
            return cat("'", s.substr(0, 40), "' is not a number (decimal digits, '.', an exponent)");
          char* end = nullptr;
          errno = 0;
          const double d = std::strtod(s.c_str(), &end);
          if (end != s.c_str() + s.size()) return cat("'", s.substr(0, 40), "' is not a number");
          if ((errno == ERANGE && d == 0) || (d != 0 && std::abs(d) < double(std::numeric_limits<T>::min())))
            return cat("'", s.substr(0, 40), "' is too close to 0 to represent: give 0, or at least ",
                       std::numeric_limits<T>::min());
          v = T(d);  // (an overflow is ±inf, refused by the range below)
          const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);  // false for NaN
          if (!ok) return cat("must be in ", range, ", got ", shortest(double(v)));
        }
        return std::string();
      },
      range);
}

// Paths: an empty one would silently mean "here" or "/".
const CLI::Validator kNonEmpty(
    [](std::string& s) { return s.empty() ? std::string("must not be empty") : std::string(); }, "PATH");

// A choice flag (its names are listed by the validator) and a number flag, with their defaults shown.
template <class E>
void add_choice(CLI::App& app, const char* flag, E& var, std::initializer_list<E> values, const char* what) {
  app.add_option(flag, var, what)->transform(choice(values))->default_str(to_string(var));
}
template <class T>
void add_number(CLI::App& app, const char* flag, T& var, const CLI::Validator& range, const char* what) {
  app.add_option(flag, var, what)->transform(range)->capture_default_str();
}

void add_engine_flags(CLI::App& app, AppOptions& o) {
  add_choice(app, "--device", o.device, {Device::Auto, Device::Cpu, Device::Cuda}, "where to run (auto: CUDA if usable)");
  add_choice(app, "--gemm", o.gemm, {Gemm::Native, Gemm::Cublas}, "CUDA GEMMs: hand-written or cuBLASLt");
  add_choice(app, "--precision", o.precision, {Precision::FP32, Precision::TF32, Precision::BF16},
             "GEMM inputs (tf32, bf16: tensor cores)");
  add_number(app, "--batch-size", o.batch_size, number(1, 65536), "examples per step");
  add_number(app, "--threads", o.threads, number(0, 1024), "CPU threads (0: all cores)");
  app.add_option_function<std::string>(
         "--hidden",
         [&o](const std::string& s) {
           o.hidden = parse_hidden(s);
           o.hidden_given = true;
         },
         "hidden widths, comma separated")
      ->default_str(hidden_string(o.hidden));
}

void add_data_flags(CLI::App& app, AppOptions& o) {
  add_choice(app, "--dataset", o.dataset, {Dataset::Mnist, Dataset::Fashion}, "which dataset");
  app.add_option("--data", o.data_dir, "directory of the IDX files (default data/<dataset>)")->check(kNonEmpty);
}

// The flags of a training run (train and compare).
void add_training_flags(CLI::App& app, AppOptions& o) {
  add_engine_flags(app, o);
  add_data_flags(app, o);
  add_number(app, "--dropout", o.dropout, number(0.0, 1.0, false, true), "dropout rate after each hidden layer");
  add_choice(app, "--kernels", o.kernels, {Kernels::Auto, Kernels::Fused, Kernels::Graph, Kernels::Tail},
             "CUDA training step: one persistent kernel, separate kernels in graphs, graphs of the large-batch "
             "launches (layers after the first in one kernel, Adam fused with the gradient sums), or auto (fused "
             "up to batch 512 in fp32, 256 in tf32/bf16; elsewhere the faster of tail and graph on this device with --autotune on, else tail where it can run)");
  add_choice(app, "--autotune", o.autotune, {Autotune::On, Autotune::Off, Autotune::Check},
             "CUDA: time every GEMM tile on the device at its first use and keep the fastest (off: the size "
             "models' pick; check: run and check every tile against it, untimed, and keep the model's pick)");
  add_choice(app, "--pdl", o.pdl, {Pdl::On, Pdl::Off},
             "CUDA, tail path: programmatic dependent launches (each kernel starts while the one before ends, "
             "sm_90+; off: ordinary launches, e.g. to see each kernel alone in a profile); changes no result");
  add_choice(app, "--carveout", o.carveout, {Carveout::Max, Carveout::Driver},
             "CUDA, tail path with --pdl on: every launch asks for the largest shared-memory carveout, one "
             "split of each SM for the whole step so that a kernel's blocks can start beside the one before "
             "(driver: the driver's split per launch); changes no result");
  add_choice(app, "--tail-rows", o.tail_rows, {TailRows::Rows32, TailRows::Rows16},
             "CUDA, tail path: rows of a tail-kernel block, in whole units of 32 (at most 128 blocks, one an SM) "
             "or 16 (at most 256, up to two an SM); other float32 sums of the later layers' gradients "
             "(--kernels auto with --autotune on, at 32, tries 16 too)");
  add_choice(app, "--layer0", o.layer0, {Layer0::Separate, Layer0::Inside},
             "CUDA, tail path at tf32/bf16: layer 0's forward as its own launch or inside the tail kernel (each "
             "block computes its rows from the images; in training and evaluation; another float32 sum of layer "
             "0's products); --kernels auto with --autotune on tries inside too");
  add_choice(app, "--layer0-cluster", o.layer0_cluster, {Layer0Cluster::Four, Layer0Cluster::Two, Layer0Cluster::One},
             "CUDA, layer 0 inside the tail kernel: up to this many blocks of a thread block cluster share it, "
             "each computing 1/N of its units for all N blocks' rows (sm_90; 1: each block alone); changes no "
             "result (--kernels auto with --autotune on tries 1 too)");
  add_number(app, "--graph-steps", o.graph_steps, number(1, 1000), "CUDA: training steps per graph replay or fused-kernel launch");
  add_number(app, "--seed", o.seed, number<uint64_t>(0, std::numeric_limits<uint64_t>::max()),
             "seed of init, dropout, shuffle and random split");
  add_number(app, "--epochs", o.epochs, number(1, 100000), "maximum number of epochs");
  add_number(app, "--lr", o.lr, number(0.0, 10.0, true), "Adam learning rate");
  add_number(app, "--val-split", o.val_split, number(0.0, 1.0, true, true), "fraction of the training set held out");
  add_choice(app, "--split", o.split, {SplitMode::Keras, SplitMode::Random},
             "keras: the last fraction; random: seeded, as torch random_split");
  add_number(app, "--patience", o.patience, number(1, 100000), "EarlyStopping patience on val_loss");
  app.add_option("--out", o.out_dir, "output directory")->check(kNonEmpty)->capture_default_str();
}

}  // namespace

void add_flags(CLI::App& app, AppOptions& o) {
  app.require_subcommand(0, 1);
  add_training_flags(app, o);
  add_number(app, "--lr-factor", o.lr_factor, number(0.0, 1.0, true, true), "ReduceLROnPlateau factor");
  add_number(app, "--lr-patience", o.lr_patience, number(1, 100000), "ReduceLROnPlateau patience");
  add_number(app, "--min-lr", o.min_lr, number(0.0, 10.0), "ReduceLROnPlateau minimum learning rate, at most --lr");
  add_choice(app, "--init", o.init, {Init::Keras, Init::Torch},
             "keras: Glorot uniform, zero bias; torch: nn.Linear's default");
  // (A repeated flag is a usage error, as a repeated option is.)
  app.add_flag("--quiet", o.quiet, "print only the final results")->multi_option_policy(CLI::MultiOptionPolicy::Throw);
  app.add_flag("--resume", o.resume, "continue the run saved in <out>/resume.safetensors")
      ->multi_option_policy(CLI::MultiOptionPolicy::Throw);

  // evaluate and predict take the architecture from the checkpoint (--hidden only for files
  // without that metadata) and run in eval mode: no training flag is accepted.
  CLI::App* evaluate = app.add_subcommand("evaluate", "test loss/accuracy of a checkpoint");
  add_engine_flags(*evaluate, o);
  add_data_flags(*evaluate, o);
  evaluate->add_option("--checkpoint", o.checkpoint, "safetensors checkpoint")->required()->check(kNonEmpty);
  evaluate->callback([&o] { o.command = Command::Evaluate; });

  CLI::App* predict = app.add_subcommand("predict", "class and confidence for PNG images");
  add_engine_flags(*predict, o);
  predict->add_option("--checkpoint", o.checkpoint, "safetensors checkpoint")->required()->check(kNonEmpty);
  predict->add_option("images", o.images, "PNG files")->required()->check(kNonEmpty);
  predict->callback([&o] { o.command = Command::Predict; });

  CLI::App* compare = app.add_subcommand("compare", "train on every backend (GPU, CPU, PyTorch) and compare");
  add_training_flags(*compare, o);
  compare->add_option("--python", o.python, "python interpreter with torch")->check(kNonEmpty);
  compare->add_option("--pytorch-script", o.pytorch_script, "the PyTorch peer (profiling/pytorch_mnist.py)")
      ->check(kNonEmpty);
  compare->callback([&o] { o.command = Command::Compare; });
}

std::string hidden_string(const std::vector<int>& hidden) {
  std::string s;
  for (int h : hidden) s += (s.empty() ? "" : ",") + std::to_string(h);
  return s;
}

std::vector<int> parse_hidden(const std::string& s, const std::string& what) {
  // The value may come from a checkpoint's metadata: keep the message one short line.
  auto shown = [](const std::string& t) {
    std::string o;
    for (char c : t.substr(0, 64)) o += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? '?' : c;
    return t.size() > 64 ? o + "..." : o;
  };
  if (s.empty()) throw InputError(what + " '': at least one hidden width is required");
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
    if (!ok || v < 1 || v > 65536)
      throw InputError(cat(what, " '", shown(s), "': '", shown(tok), "' is not a width in [1, 65536]"));
    out.push_back(int(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void validate_options(const AppOptions& o) {
  // The engine holds the rate as a float: 0.99999999 would become a rate of 1 (every unit dropped).
  if (float(o.dropout) >= 1.0f)
    throw InputError(cat("--dropout ", shortest(o.dropout), " rounds to 1 in float32: use at most 0.9999999"));
  if (o.command == Command::Train && o.min_lr > o.lr)
    throw InputError(cat("--min-lr must be in [0, --lr = ", shortest(o.lr), "], got ", shortest(o.min_lr)));
}

std::map<std::string, std::string> flag_map(const AppOptions& o) {
  return {{"epochs", cat(o.epochs)},         {"batch_size", cat(o.batch_size)}, {"lr", cat(o.lr)},
          {"hidden", hidden_string(o.hidden)}, {"dropout", cat(o.dropout)},     {"val_split", cat(o.val_split)},
          {"split", to_string(o.split)},     {"seed", cat(o.seed)},             {"patience", cat(o.patience)},
          {"lr_factor", cat(o.lr_factor)},   {"lr_patience", cat(o.lr_patience)}, {"min_lr", cat(o.min_lr)},
          {"device", to_string(o.device)},   {"gemm", to_string(o.gemm)},       {"dataset", to_string(o.dataset)},
          {"init", to_string(o.init)},       {"graph_steps", cat(o.graph_steps)}, {"out", o.out_dir},
          {"kernels", to_string(o.kernels)}, {"precision", to_string(o.precision)},
          {"autotune", to_string(o.autotune)}, {"pdl", to_string(o.pdl)},
          {"carveout", to_string(o.carveout)}, {"tail_rows", to_string(o.tail_rows)},
          {"layer0", to_string(o.layer0)}, {"layer0_cluster", to_string(o.layer0_cluster)}};
}

}  // namespace mnist
