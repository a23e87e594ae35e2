// The ONE table of op cases (shapes) behind the GPU kernel tests (tests/gpu/, against the CPU
// reference and cuBLAS/cuDNN) and the kernel benchmark (profiling/bench_kernels.cu, against
// cuBLAS/cuBLASLt/cuDNN), as ggml's test-backend-ops does: the same cases for correctness and speed.
//
// Tests use the row counts 1, 7, 127, 128, 129, 1000 (around the 32/64-row tiles, one and many
// tiles) and odd widths next to the model's; the benchmark uses the model's shapes at batch
// 128 / 512 / 4096.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mnist::cases {

enum class Op { DenseForward, DenseBackward, Dropout, SoftmaxXent, Softmax, Adam, Gather };

inline const char* op_name(Op op) {
  switch (op) {
    case Op::DenseForward: return "dense_forward";
    case Op::DenseBackward: return "dense_backward";
    case Op::Dropout: return "dropout_forward";
    case Op::SoftmaxXent: return "softmax_xent";
    case Op::Softmax: return "softmax";
    case Op::Adam: return "adam_update";
    case Op::Gather: return "gather_batch";
  }
  return "?";
}

// A Dense layer's shape: in -> out, with ReLU or not.
struct LayerShape {
  int in, out;
  bool relu;
};

// The default model (784-128-64-10).
inline const std::vector<LayerShape>& model_layers() {
  static const std::vector<LayerShape> v{{784, 128, true}, {128, 64, true}, {64, 10, false}};
  return v;
}
// Widths that are not multiples of the 32/64 tiles or of 4, and degenerate ones.
inline const std::vector<LayerShape>& odd_layers() {
  static const std::vector<LayerShape> v{{33, 100, true}, {100, 33, false}, {129, 65, true}, {7, 1, true}, {1, 7, false}};
  return v;
}
inline const std::vector<int>& test_rows() {
  static const std::vector<int> v{1, 7, 127, 128, 129, 1000};
  return v;
}
inline const std::vector<int>& bench_rows() {
  static const std::vector<int> v{128, 512, 4096};
  return v;
}

// One case. Meaning of the fields by op:
//   DenseForward/DenseBackward  rows x in -> out, relu
//   Dropout                     rows x out elements (a hidden activation)
//   SoftmaxXent/Softmax         rows x out classes
//   Gather                      rows x in pixels
//   Adam                        count elements (rows = in = out = 0)
struct OpCase {
  Op op;
  int rows = 0, in = 0, out = 0;
  bool relu = false;
  std::size_t count = 0;

  std::string name() const {
    std::string s = op_name(op);
    if (op == Op::Adam) return s + " n=" + std::to_string(count);
    s += " rows=" + std::to_string(rows);
    if (in) s += " in=" + std::to_string(in);
    if (out) s += " out=" + std::to_string(out);
    if (op == Op::DenseForward || op == Op::DenseBackward) s += relu ? " relu" : " linear";
    return s;
  }
};

// Every op at every row count, over the model's shapes and (when odd_shapes) the odd ones.
// adam_counts: flat span lengths for the optimiser cases (the model's parameter storage and odd
// lengths; the caller supplies the model's, which lives in layers/).
inline std::vector<OpCase> op_cases(const std::vector<int>& rows, bool odd_shapes,
                                    const std::vector<std::size_t>& adam_counts) {
  std::vector<LayerShape> layers = model_layers();
  if (odd_shapes) layers.insert(layers.end(), odd_layers().begin(), odd_layers().end());
  std::vector<int> classes{10};
  if (odd_shapes) classes.insert(classes.end(), {2, 33, 100});
  std::vector<int> pixels{784};
  if (odd_shapes) pixels.insert(pixels.end(), {33, 7, 1});

  std::vector<OpCase> v;
  for (int r : rows) {
    for (const LayerShape& l : layers) {
      v.push_back({Op::DenseForward, r, l.in, l.out, l.relu, 0});
      v.push_back({Op::DenseBackward, r, l.in, l.out, l.relu, 0});
      if (l.relu) v.push_back({Op::Dropout, r, 0, l.out, false, 0});
    }
    for (int c : classes) {
      v.push_back({Op::SoftmaxXent, r, 0, c, false, 0});
      v.push_back({Op::Softmax, r, 0, c, false, 0});
    }
    for (int d : pixels) v.push_back({Op::Gather, r, d, 0, false, 0});
  }
  for (std::size_t n : adam_counts) v.push_back({Op::Adam, 0, 0, 0, false, n});
  return v;
}

}  // namespace mnist::cases
