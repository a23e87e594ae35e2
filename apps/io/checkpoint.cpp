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
  // Names and shapes are checked before anything the size of the model is allocated: a
  // checkpoint (or --hidden) for a much larger model must be an error, not an allocation.
  struct Expected {
    std::string name;
    std::vector<int64_t> shape;
    std::size_t offset;
    const TensorF32* found;
  };
  std::vector<Expected> expect;
  for (std::size_t l = 0; l < layout.dense.size(); ++l) {
    const DenseSlot& s = layout.dense[l];
    expect.push_back({ParamLayout::weight_name(l), {s.out, s.in}, s.w_offset, nullptr});
    expect.push_back({ParamLayout::bias_name(l), {s.out}, s.b_offset, nullptr});
  }
  std::string problems;
  std::set<std::string> known;
  for (Expected& e : expect) {
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
    std::size_t count = 1;
    for (auto d : e.shape) count *= std::size_t(d);
    if (it->data.size() != count) {
      problems += cat("; '", e.name, "' holds ", it->data.size(), " values, its shape needs ", count);
      continue;
    }
    e.found = &*it;
  }
  std::size_t unexpected = 0;
  for (const TensorF32& t : tensors) {
    if (known.count(t.name)) continue;
    if (++unexpected <= 4) problems += cat("; unexpected tensor '", printable_name(t.name), "'");  // names from the file
  }
  if (unexpected > 4) problems += cat("; and ", unexpected - 4, " more unexpected tensors");
  if (!problems.empty())
    throw InputError(cat(what, ": checkpoint does not match the model (another architecture?)", problems));
  flat.assign(layout.storage, 0.0f);
  for (const Expected& e : expect)
    std::copy(e.found->data.begin(), e.found->data.end(), flat.begin() + std::ptrdiff_t(e.offset));
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

std::string encode_weights(const ModelSpec& spec, const ParamLayout& layout, const std::vector<float>& flat,
                           const std::map<std::string, std::string>& extra) {
  auto meta = model_metadata(spec);
  for (const auto& [k, v] : extra) meta[k] = v;
  return encode_safetensors(params_to_tensors(layout, flat), meta);
}

void save_weights(const std::string& path, const ModelSpec& spec, const ParamLayout& layout,
                  const std::vector<float>& flat, const std::map<std::string, std::string>& extra) {
  write_file_atomic(path, encode_weights(spec, layout, flat, extra));
}

void load_weights(const std::string& path, const ParamLayout& layout, std::vector<float>& flat) {
  tensors_to_params(layout, decode_safetensors(read_file(path), path), flat, path);
}

}  // namespace mnist
