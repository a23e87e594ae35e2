#include "layers/model.hpp"

#include <cmath>
#include <cstdio>

#include "kernels/philox.hpp"
#include "layers/engine.hpp"
#include "runtime/error.hpp"

namespace mnist {

void ModelSpec::validate() const {
  if (input <= 0) throw InputError(cat("model input size must be > 0, got ", input));
  if (classes < 2) throw InputError(cat("model needs at least 2 classes, got ", classes));
  if (hidden.empty()) throw InputError("--hidden: at least one hidden layer is required");
  for (int h : hidden)
    if (h <= 0 || h > 65536)
      throw InputError(cat("--hidden: every width must be in [1, 65536], got ", h));
  if (!(dropout >= 0.0f && dropout < 1.0f))
    throw InputError(cat("--dropout must be in [0, 1), got ", dropout));
  // A cap far above any MNIST MLP, so that a typo or a hostile checkpoint cannot ask for
  // tens of GB before anything else is checked.
  constexpr std::size_t kMaxParams = std::size_t(1) << 27;  // 134M parameters = 512 MiB of floats
  std::size_t params = 0, in = std::size_t(input);
  for (int h : hidden) {
    params += in * std::size_t(h) + std::size_t(h);
    in = std::size_t(h);
  }
  params += in * std::size_t(classes) + std::size_t(classes);
  if (params > kMaxParams)
    throw InputError(cat("--hidden: the model would have ", params, " parameters (at most ", kMaxParams, ")"));
}

namespace {
constexpr std::size_t kAlign = 32;  // floats = 128 bytes
std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

ParamLayout make_layout(const ModelSpec& spec) {
  spec.validate();
  ParamLayout L;
  int in = spec.input;
  std::vector<int> outs = spec.hidden;
  outs.push_back(spec.classes);
  std::size_t off = 0;
  for (std::size_t i = 0; i < outs.size(); ++i) {
    DenseSlot s;
    s.in = in;
    s.out = outs[i];
    s.relu = i + 1 < outs.size();
    s.w_offset = off;
    off = align_up(off + s.w_count());
    s.b_offset = off;
    off = align_up(off + std::size_t(s.out));
    L.count += s.w_count() + std::size_t(s.out);
    L.dense.push_back(s);
    in = s.out;
  }
  L.storage = off;
  return L;
}

void init_params(std::vector<float>& params, const ParamLayout& layout, Init init, uint64_t seed) {
  params.assign(layout.storage, 0.0f);
  for (std::size_t l = 0; l < layout.dense.size(); ++l) {
    const DenseSlot& s = layout.dense[l];
    const double wlim = init == Init::Keras ? std::sqrt(6.0 / double(s.in + s.out))
                                            : 1.0 / std::sqrt(double(s.in));
    for (std::size_t i = 0; i < s.w_count(); ++i) {
      float u = rng::to_unit(rng::draw(seed, rng::kInit, uint32_t(2 * l), i, 0));
      params[s.w_offset + i] = float((2.0 * u - 1.0) * wlim);
    }
    if (init == Init::Torch) {
      for (int i = 0; i < s.out; ++i) {
        float u = rng::to_unit(rng::draw(seed, rng::kInit, uint32_t(2 * l + 1), uint64_t(i), 0));
        params[s.b_offset + std::size_t(i)] = float((2.0 * u - 1.0) * wlim);
      }
    }
  }
}

std::vector<LayerInfo> layer_list(const ModelSpec& spec) {
  std::vector<LayerInfo> out;
  int in = spec.input;
  for (std::size_t i = 0; i < spec.hidden.size(); ++i) {
    int h = spec.hidden[i];
    out.push_back({"hidden" + std::to_string(i + 1), "Dense", h, std::size_t(in) * h + h});
    if (spec.dropout > 0) out.push_back({"dropout" + std::to_string(i + 1), "Dropout", h, 0});
    in = h;
  }
  out.push_back({"output", "Dense", spec.classes, std::size_t(in) * spec.classes + spec.classes});
  return out;
}

namespace {
std::string with_commas(std::size_t n) {
  std::string s = std::to_string(n);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
  return s;
}
std::string human_bytes(std::size_t n) {
  char buf[32];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%zu B", n);
  else if (n < 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f KB", n / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.2f MB", n / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

std::string summary_table(const ModelSpec& spec, const ParamLayout& layout,
                          const std::string& model_name) {
  std::string t = "Model: \"" + model_name + "\"\n";
  const std::string rule(65, '_'), dbl(65, '=');
  char line[160];
  t += rule + "\n";
  std::snprintf(line, sizeof line, " %-27s %-25s %-10s\n", "Layer (type)", "Output Shape", "Param #");
  t += line + dbl + "\n";
  auto layers = layer_list(spec);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& L = layers[i];
    std::string shape = "(None, " + std::to_string(L.width) + ")";
    std::snprintf(line, sizeof line, " %-27s %-25s %-10s\n", (L.name + " (" + L.type + ")").c_str(),
                  shape.c_str(), with_commas(L.params).c_str());
    t += line;
    t += (i + 1 < layers.size() ? "\n" : "");
  }
  const std::size_t bytes = layout.count * sizeof(float);
  t += dbl + "\n";
  t += "Total params: " + with_commas(layout.count) + " (" + human_bytes(bytes) + ")\n";
  t += "Trainable params: " + with_commas(layout.count) + " (" + human_bytes(bytes) + ")\n";
  t += "Non-trainable params: 0 (0.00 B)\n";
  t += rule + "\n";
  return t;
}

const char* to_string(Gemm g) { return g == Gemm::Cublas ? "cublas" : "native"; }
const char* to_string(Autotune a) { return a == Autotune::On ? "on" : a == Autotune::Check ? "check" : "off"; }
const char* to_string(Pdl p) { return p == Pdl::On ? "on" : "off"; }
const char* to_string(Carveout c) { return c == Carveout::Max ? "max" : "driver"; }
const char* to_string(TailRows r) { return r == TailRows::Rows16 ? "16" : "32"; }
const char* to_string(Layer0 l) { return l == Layer0::Inside ? "inside" : "separate"; }
const char* to_string(Layer0Cluster c) { return c == Layer0Cluster::Four ? "4" : c == Layer0Cluster::Two ? "2" : "1"; }
const char* to_string(Kernels k) {
  switch (k) {
    case Kernels::Auto: return "auto";
    case Kernels::Fused: return "fused";
    case Kernels::Graph: return "graph";
    case Kernels::Tail: return "tail";
  }
  return "?";
}
const char* to_string(Precision p) {
  switch (p) {
    case Precision::TF32: return "tf32";
    case Precision::BF16: return "bf16";
    default: return "fp32";
  }
}

}  // namespace mnist
