// The model's architecture picture, like keras.utils.plot_model(model, show_shapes=True,
// show_layer_activations=True): a Graphviz DOT graph with one box per layer of the Sequential
// (an InputLayer, then layer_list(spec)), each showing "name (Type)", the input and output shapes
// "(None, n)" and, for Dense layers, the activation; edges in layer order.
#pragma once

#include <string>
#include <vector>

#include "layers/model.hpp"

namespace mnist {

// The DOT text. Names are HTML-escaped into the labels; node ids are quoted.
std::string architecture_dot(const ModelSpec& spec, const std::string& model_name = "MNIST_Classifier");

struct ArchitectureFiles {
  std::string dot;                    // <out_dir>/model.dot (always written)
  std::vector<std::string> rendered;  // <out_dir>/model.svg, model.png: those `dot` produced
  std::vector<std::string> warnings;  // why a rendering is missing (dot not on PATH, failed, ...)
};

// Writes <out_dir>/model.dot (write_file_atomic; throws Error naming the path if it cannot).
// Then, if Graphviz's `dot` is on PATH, runs it (posix_spawnp with an argument vector, no shell;
// 60 s limit, then killed) once per format reading model.dot, captures its stdout and writes
// model.svg / model.png with write_file_atomic. A missing or failing `dot` never throws: each
// rendering that is not produced gets one line in `warnings`, with dot's stderr if any.
ArchitectureFiles write_architecture(const std::string& out_dir, const ModelSpec& spec,
                                     const std::string& model_name = "MNIST_Classifier");

}  // namespace mnist
