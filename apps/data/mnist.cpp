#include "apps/data/mnist.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <future>

#include "apps/data/idx.hpp"
#include "kernels/philox.hpp"
#include "runtime/error.hpp"
#include "runtime/huge_pages.hpp"

namespace mnist {
namespace {

// What is at `p`: "" for a regular file (or a link to one), "absent", or what it is instead.
std::string what_is(const std::string& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode)) return "";
    if (S_ISDIR(st.st_mode)) return "a directory";
    if (S_ISFIFO(st.st_mode)) return "a FIFO";
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
    return "not a regular file";
  }
  const int e = errno;
  if (e == ELOOP) return "a symlink loop";
  if (e == ENOENT) return ::lstat(p.c_str(), &st) == 0 ? "a dangling symlink" : "absent";
  return std::strerror(e);
}

// <dir>/<base>.gz or <dir>/<base>: exactly one of them must be there, and be a regular file.
std::string find_file(const std::string& dir, const std::string& base) {
  const std::string gz = dir + "/" + base + ".gz", raw = dir + "/" + base;
  const std::string gz_is = what_is(gz), raw_is = what_is(raw);
  if (gz_is.empty() && raw_is.empty())
    throw InputError(cat(dir, ": both ", base, " and ", base, ".gz are there; remove one (they may differ)"));
  if (gz_is.empty()) return gz;
  if (raw_is.empty()) return raw;
  if (gz_is != "absent") throw InputError(cat(gz, ": is ", gz_is, ", not an IDX file"));
  if (raw_is != "absent") throw InputError(cat(raw, ": is ", raw_is, ", not an IDX file"));
  throw InputError(cat(dir, ": missing ", base, " (or ", base, ".gz); fetch the data with apps/fetch_data.sh"));
}

}  // namespace

ImageSet load_image_set(const std::string& images_path, const std::string& labels_path) {
  IdxArray img = read_idx(images_path, 3);
  IdxArray lab = read_idx(labels_path, 1);
  if (img.dims[0] != lab.dims[0])
    throw InputError(cat(images_path, " has ", img.dims[0], " images but ", labels_path, " has ", lab.dims[0],
                         " labels"));
  if (img.dims[1] > 4096 || img.dims[2] > 4096)
    throw InputError(cat(images_path, ": image size ", img.dims[1], "x", img.dims[2], " is implausible"));
  for (std::size_t i = 0; i < lab.data.size(); ++i)
    if (lab.data[i] >= 10)
      throw InputError(cat(labels_path, ": label ", int(lab.data[i]), " at index ", i, " is not a class 0..9"));
  ImageSet s;
  s.n = int(img.dims[0]);
  s.rows = int(img.dims[1]);
  s.cols = int(img.dims[2]);
  s.images = std::move(img.data);
  s.labels = std::move(lab.data);
  return s;
}

MnistData load_mnist_dir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    throw InputError(cat("--data ", dir, ": no such directory; fetch the data with apps/fetch_data.sh"));
  if (!S_ISDIR(st.st_mode)) throw InputError(cat("--data ", dir, ": is a file, not a directory"));
  MnistData d;
  const std::string train_images = find_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_file(dir, "t10k-labels-idx1-ubyte");
  // The test set is decoded on a second thread while this one decodes the training set (gzip
  // inflation is most of a run's start-up); the training set's error, if any, is reported first.
  auto test = std::async(std::launch::async, [&] { return load_image_set(test_images, test_labels); });
  try {
    d.train = load_image_set(train_images, train_labels);
  } catch (...) {
    try { test.get(); } catch (...) {}
    throw;
  }
  d.test = test.get();
  if (d.train.rows != d.test.rows || d.train.cols != d.test.cols)
    throw InputError(cat(dir, ": training images are ", d.train.rows, "x", d.train.cols, " but test images are ",
                         d.test.rows, "x", d.test.cols));
  return d;
}

ImageSet ImageSet::subset(const std::vector<int32_t>& idx) const {
  ImageSet s;
  s.rows = rows;
  s.cols = cols;
  s.n = int(idx.size());
  const std::size_t D = std::size_t(dim());
  reserve_huge(s.images, idx.size() * D);  // (runtime/huge_pages.hpp: first touched by the resize)
  s.images.resize(idx.size() * D);
  s.labels.resize(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i) {
    std::copy_n(images.begin() + std::ptrdiff_t(std::size_t(idx[i]) * D), D, s.images.begin() + std::ptrdiff_t(i * D));
    s.labels[i] = labels[std::size_t(idx[i])];
  }
  return s;
}

ImageSet ImageSet::slice(int begin, int end) const {
  std::vector<int32_t> idx;
  for (int i = begin; i < end; ++i) idx.push_back(i);
  return subset(idx);
}

TrainValSplit split_train_val(const ImageSet& all, double fraction, SplitMode mode, uint64_t seed) {
  if (!(fraction > 0.0 && fraction < 1.0))
    throw InputError(cat("--val-split must be in (0, 1), got ", fraction));
  const int n_val = int(std::floor(fraction * all.n));
  if (n_val < 1 || n_val >= all.n)
    throw InputError(cat("--val-split ", fraction, " leaves ", n_val, " of ", all.n,
                         " examples for validation: both parts must be non-empty"));
  const int n_train = all.n - n_val;
  TrainValSplit s;
  if (mode == SplitMode::Keras) {
    const DataView v = all.view();
    s.train = {v.images, v.labels, n_train, v.dim};
    s.val = {v.images + std::size_t(n_train) * std::size_t(v.dim), v.labels + n_train, n_val, v.dim};
    return s;
  }
  std::vector<uint64_t> keyed(std::size_t(all.n));
  for (int i = 0; i < all.n; ++i)
    keyed[std::size_t(i)] = (uint64_t(rng::draw(seed, rng::kSplit, 0, uint64_t(i), 0)) << 32) | uint32_t(i);
  std::sort(keyed.begin(), keyed.end());
  std::vector<int32_t> order(std::size_t(all.n));
  for (int i = 0; i < all.n; ++i) order[std::size_t(i)] = int32_t(keyed[std::size_t(i)] & 0xFFFFFFFFu);
  s.owned_train = all.subset(std::vector<int32_t>(order.begin(), order.begin() + n_train));
  s.owned_val = all.subset(std::vector<int32_t>(order.begin() + n_train, order.end()));
  s.train = s.owned_train.view();
  s.val = s.owned_val.view();
  return s;
}

std::string shape_string(const ImageSet& s) {
  return cat("(", s.n, ", ", s.rows, ", ", s.cols, "), Labels: (", s.n, ",)");
}

}  // namespace mnist
