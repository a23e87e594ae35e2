// MNIST-format datasets (MNIST, Fashion-MNIST): the four IDX files of a directory, validated
// against each other, and the train/validation split of the tutorial.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layers/engine.hpp"

namespace mnist {

struct ImageSet {
  std::vector<uint8_t> images;  // [n, rows*cols], row-major pixels 0..255
  std::vector<uint8_t> labels;  // [n], each < 10
  int n = 0, rows = 0, cols = 0;
  int dim() const { return rows * cols; }
  DataView view() const { return {images.data(), labels.data(), n, dim()}; }
  // The subset at the given indices, in that order.
  ImageSet subset(const std::vector<int32_t>& idx) const;
  ImageSet slice(int begin, int end) const;
};

struct MnistData {
  ImageSet train, test;
};

// Loads <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (one of the two names; both is
// an error, as is a directory, FIFO, device or symlink loop in their place).
// Throws InputError naming the directory or file: missing files, bad IDX, images/labels count
// mismatch, label >= 10, train/test image sizes that differ.
MnistData load_mnist_dir(const std::string& dir);

// One IDX pair (images, labels), checked against each other.
ImageSet load_image_set(const std::string& images_path, const std::string& labels_path);

// The validation split. Keras (validation_split): the LAST `fraction` of the examples, in order.
// Random (the PyTorch tutorial's random_split): a permutation drawn from `seed`.
// val size = floor(fraction * n) as both frameworks compute it.
enum class SplitMode { Keras, Random };
// The two parts as views. Keras's are two ranges of `all`'s rows, nothing copied (the training
// set's 47 MB and their page faults were a tenth of a one-epoch run's start on a VM): `all` must
// outlive them. The random split's rows are gathered into `owned_train`/`owned_val`, which the
// views point into (a move keeps them valid; a copy would not, so there is none).
struct TrainValSplit {
  DataView train, val;
  ImageSet owned_train, owned_val;  // (empty for Keras)
  TrainValSplit() = default;
  TrainValSplit(TrainValSplit&&) = default;
  TrainValSplit& operator=(TrainValSplit&&) = default;
  TrainValSplit(const TrainValSplit&) = delete;
  TrainValSplit& operator=(const TrainValSplit&) = delete;
};
TrainValSplit split_train_val(const ImageSet& all, double fraction, SplitMode mode, uint64_t seed);

// "Training set: (60000, 28, 28), Labels: (60000,)" style shape lines.
std::string shape_string(const ImageSet& s);

}  // namespace mnist
