// What the commands (train.cpp, evaluate.cpp, predict.cpp, compare.cpp) share: the model and
// engine from the options, the checked train/validation split, the dataset's fingerprint, top-1
// predictions and their printing, and the output folder (checked, created and locked).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <streambuf>
#include <string>
#include <vector>

#include "apps/data/mnist.hpp"
#include "apps/pipeline/options.hpp"
#include "apps/pipeline/trainer.hpp"
#include "layers/engine.hpp"

namespace mnist {

// Discards what it is given: the sink of --quiet.
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};

// The tutorial's sample figures and prints: the first ten images, in a 2x5 grid.
constexpr int kSamplesShown = 10;

std::string data_dir(const AppOptions& o);  // --data, or data/<dataset>
// Wall seconds since this program's static initialisation (just before main; after the dynamic
// loader, whose share, the CUDA libraries' mostly, a whole-process timer sees on top).
double process_seconds();
void set_threads(const AppOptions& o);

ModelSpec model_spec(const AppOptions& o, int input_dim);
EngineConfig engine_config(const AppOptions& o, const ModelSpec& spec);

// Picks the backend: cpu, cuda (an error without a device), or auto (cuda when a device is
// usable, else cpu with a one-line notice on `log`).
std::unique_ptr<Engine> make_engine(const AppOptions& o, const EngineConfig& cfg, std::ostream& log);
std::string device_name(const Engine& engine);  // the GPU's name, or "CPU (n threads)"
// The training step's path as report.json and compare show it: "cpu", "cuda fused", "cuda graph"
// or "cuda graph+head" (the path actually taken: a fused step that falls back is "cuda graph", with
// "+head" when the last layer runs as one head kernel).
std::string kernel_path(const Engine& engine);

// The validation split of --val-split/--split, with --batch-size checked against what is left
// (views of `all` for the Keras split: mnist.hpp).
TrainValSplit split_for_training(const AppOptions& o, const ImageSet& all);

// Sizes and a 64-bit hash (FNV-1a's step over 64-bit words, 4 lanes) of every image and label:
// two data sets with the same fingerprint are the same data, whatever their paths or compression.
std::string dataset_fingerprint(const MnistData& d);

// The most probable class of each of n rows of `probs` ([n, classes]), with its probability.
struct Top1 {
  int label = 0;
  double confidence = 0;
};
std::vector<Top1> top1(const std::vector<float>& probs, int n, int classes);
// Softmax probabilities and their top-1 for the first `count` images of `set`.
std::vector<Top1> predict_top1(Engine& engine, const uint8_t* images, int count);
// "  Image 3: True=5, Predicted=5, Confidence=0.998" lines, after a "Sample Predictions:" title.
void print_sample_predictions(const std::vector<Top1>& p, const ImageSet& test, std::ostream& log);

// The callbacks' settings of the flags (epochs, Adam's rate, EarlyStopping, ReduceLROnPlateau).
FitOptions fit_options(const AppOptions& o);

// An engine holding a checkpoint's weights: the widths from its metadata (--hidden for files
// without it; a --hidden that contradicts the metadata is refused), names, shapes and values
// checked before any engine memory exists. *hidden: the widths used.
std::unique_ptr<Engine> engine_from_checkpoint(const AppOptions& o, int input_dim, std::ostream& log,
                                               std::string* hidden);

// The output folder of a run, held for its whole life: created (mkdir -p) and locked with flock on
// <dir>/mnist_cuda.lock, which holds the holder's pid. A second run on the same folder gets an
// InputError naming the folder and that pid. The lock is released when the object dies.
class OutputDir {
 public:
  // Refuses (InputError naming --out) a path that is not a usable directory, before any write.
  static void check(const std::string& dir);
  explicit OutputDir(const std::string& dir);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  int fd_ = -1;
};

}  // namespace mnist
