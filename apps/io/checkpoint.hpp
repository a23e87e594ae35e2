// Model checkpoints in safetensors with the PyTorch names and layouts of the tutorial's
// MNISTClassifier (fc1.weight [128,784], fc1.bias [128], fc2.*, fc3.*), so that
//   model.load_state_dict(safetensors.torch.load_file("best_model.safetensors"))
// works in PyTorch. The model's widths are recorded in the metadata as well, and each tensor's
// CRC-32 (safetensors.hpp), verified on load.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "apps/io/safetensors.hpp"
#include "layers/model.hpp"

namespace mnist {

// The flat padded parameter array as named tensors, and back.
std::vector<TensorF32> params_to_tensors(const ParamLayout& layout, const std::vector<float>& flat);
// Checks that names, shapes and dtypes match the model exactly; the error lists what does not.
void tensors_to_params(const ParamLayout& layout, const std::vector<TensorF32>& tensors,
                       std::vector<float>& flat, const std::string& what);

std::map<std::string, std::string> model_metadata(const ModelSpec& spec);

// The weights (and `extra` metadata) as a safetensors file's bytes.
std::string encode_weights(const ModelSpec& spec, const ParamLayout& layout, const std::vector<float>& flat,
                           const std::map<std::string, std::string>& extra = {});
// Atomically writes encode_weights(...) to `path`.
void save_weights(const std::string& path, const ModelSpec& spec, const ParamLayout& layout,
                  const std::vector<float>& flat, const std::map<std::string, std::string>& extra = {});
// Reads weights written by save_weights (or by PyTorch's safetensors) into `flat`.
void load_weights(const std::string& path, const ParamLayout& layout, std::vector<float>& flat);

}  // namespace mnist
