#include "apps/io/checkpoint.hpp"

#include <algorithm>
#include <set>

#include "apps/io/atomic_file.hpp"
#include "runtime/error.hpp"

namespace mnist {

std::vector<TensorF32> params_to_tensors(const ParamLayout& layout, const std::vector<float>& flat) {
  MNIST_CHECK(flat.size() == layout.storage, "parameter array has ", flat.size(), " floats, layout needs ",
              layout.storage);
  std::vector<TensorF32> out;
  for (std::size_t l = 0; l < layout.dense.size(); ++l) {
    const DenseSlot& s = layout.dense[l];
    auto w0 = flat.begin() + std::ptrdiff_t(s.w_offset);
    auto b0 = flat.begin() + std::ptrdiff_t(s.b_offset);
    out.push_back({ParamLayout::weight_name(l), {s.out, s.in}, std::vector<float>(w0, w0 + std::ptrdiff_t(s.w_count()))});
    out.push_back({ParamLayout::bias_name(l), {s.out}, std::vector<float>(b0, b0 + s.out)});
  }
  return out;
}

void tensors_to_params(const ParamLayout& layout, const std::vector<TensorF32>& tensors, std::vector<float>& flat,
                       const std::string& what) {
  std::vector<TensorF32> expect = params_to_tensors(layout, std::vector<float>(layout.storage, 0.0f));
  std::string problems;
  std::set<std::string> known;
  flat.assign(layout.storage, 0.0f);
  for (std::size_t i = 0; i < expect.size(); ++i) {
    const TensorF32& e = expect[i];
    known.insert(e.name);
    auto it = std::find_if(tensors.begin(), tensors.end(), [&](const TensorF32& t) { return t.name == e.name; });
    if (it == tensors.end()) {
      problems += cat("; missing tensor '", e.name, "'");
      continue;
    }
    if (it->shape != e.shape) {
      std::string got, want;
      for (auto d : it->shape) got += (got.empty() ? "" : ",") + std::to_string(d);
      for (auto d : e.shape) want += (want.empty() ? "" : ",") + std::to_string(d);
      problems += cat("; '", e.name, "' has shape [", got, "], the model needs [", want, "]");
      continue;
    }
    const DenseSlot& s = layout.dense[i / 2];
    std::copy(it->data.begin(), it->data.end(), flat.begin() + std::ptrdiff_t(i % 2 == 0 ? s.w_offset : s.b_offset));
  }
  for (const TensorF32& t : tensors)
    if (!known.count(t.name)) problems += cat("; unexpected tensor '", t.name, "'");
  if (!problems.empty())
    throw InputError(cat(what, ": checkpoint does not match the model (another architecture?)", problems));
}

std::map<std::string, std::string> model_metadata(const ModelSpec& spec) {
  std::string hidden;
  for (int h : spec.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(h);
  return {{"format", "pt"},
          {"model", "MNISTClassifier"},
          {"input", std::to_string(spec.input)},
          {"hidden", hidden},
          {"classes", std::to_string(spec.classes)},
          {"dropout", cat(spec.dropout)}};
}

void save_weights(const std::string& path, const ModelSpec& spec, const ParamLayout& layout,
                  const std::vector<float>& flat, const std::map<std::string, std::string>& extra) {
  auto meta = model_metadata(spec);
  for (const auto& [k, v] : extra) meta[k] = v;
  write_file_atomic(path, encode_safetensors(params_to_tensors(layout, flat), meta));
}

void load_weights(const std::string& path, const ParamLayout& layout, std::vector<float>& flat) {
  tensors_to_params(layout, decode_safetensors(read_file(path), path), flat, path);
}

}  // namespace mnist
