// The static Sequential model: its spec (widths, dropout), the flat parameter layout shared by
// every backend, weight initialisation and the Keras-style summary.
//
// The graph is fixed: input -> [Dense(h_i) + ReLU -> Dropout(p)] for each hidden width -> Dense(C)
// -> softmax (fused into the loss). Parameters, gradients and Adam moments of every backend are
// each ONE flat float array with this layout, so the optimiser is one launch over one span and a
// checkpoint is one copy; layers hold views (offsets) into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mnist {

struct ModelSpec {
  int input = 784;
  std::vector<int> hidden{128, 64};
  int classes = 10;
  float dropout = 0.2f;  // after each hidden layer; 0 disables the Dropout layers

  // Throws InputError naming the offending field when a width or the rate is out of range.
  void validate() const;
};

// One Dense layer's place in the flat parameter array: W [out, in] then b [out].
struct DenseSlot {
  int in = 0, out = 0;
  bool relu = false;
  std::size_t w_offset = 0, b_offset = 0;  // in floats
  std::size_t w_count() const { return std::size_t(in) * out; }
};

struct ParamLayout {
  std::vector<DenseSlot> dense;
  std::size_t count = 0;    // number of parameters (109,386 for the default model)
  std::size_t storage = 0;  // floats in the flat array: each tensor starts on a 128-byte boundary

  // PyTorch names of the tutorial's MNISTClassifier: fc1.weight, fc1.bias, fc2.weight, ...
  static std::string weight_name(std::size_t layer) { return "fc" + std::to_string(layer + 1) + ".weight"; }
  static std::string bias_name(std::size_t layer) { return "fc" + std::to_string(layer + 1) + ".bias"; }
};

ParamLayout make_layout(const ModelSpec& spec);

enum class Init {
  Keras,  // Glorot-uniform weights, zero biases
  Torch,  // nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
};

// Fills `params` (resized to layout.storage; padding zero) from Philox draws of `seed`.
void init_params(std::vector<float>& params, const ParamLayout& layout, Init init, uint64_t seed);

// Keras's model.summary() table: layer (type), output shape, params, and the totals.
std::string summary_table(const ModelSpec& spec, const ParamLayout& layout,
                          const std::string& model_name = "MNIST_Classifier");

// Keras layer names of the Sequential (hidden1, dropout1, ..., output), in order, with types.
struct LayerInfo {
  std::string name, type;
  int width;
  std::size_t params;
};
std::vector<LayerInfo> layer_list(const ModelSpec& spec);

}  // namespace mnist
