// The figures (apps/io/plot.hpp): sizes, the curves drawn in their colours and going the way the
// data goes, the SVG twin, and every grid image at its documented place with its exact pixels.
// Set MNIST_KEEP_PLOTS=1 to keep the figures in the temp dir for looking at them.
#include <doctest/doctest.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "apps/io/plot.hpp"
#include "apps/io/png.hpp"
#include "runtime/error.hpp"

namespace fs = std::filesystem;
using namespace mnist;

namespace {

std::string out_path(const std::string& name) {
  return (fs::temp_directory_path() / ("mnist_plot_" + std::to_string(::getpid()) + "_" + name)).string();
}
bool keep() { return std::getenv("MNIST_KEEP_PLOTS") != nullptr; }

History sample_history(int n, int best) {
  History h;
  for (int e = 1; e <= n; ++e) {
    EpochRecord r;
    r.epoch = e;
    r.loss = 0.45 * std::exp(-0.35 * (e - 1)) + 0.04;
    r.val_loss = 0.2 * std::exp(-0.3 * (e - 1)) + 0.075 + 0.002 * e;
    r.accuracy = 0.985 - 0.12 * std::exp(-0.45 * (e - 1));
    r.val_accuracy = 0.978 - 0.04 * std::exp(-0.5 * (e - 1));
    r.lr = 1e-3;
    h.epochs.push_back(r);
  }
  h.best_epoch = best;
  return h;
}

// Non-white pixels in the half-open column range [x0, x1) (and row range [y0, y1) when given).
int ink(const GrayImage& g, int x0, int x1, int y0 = 0, int y1 = -1) {
  if (y1 < 0) y1 = g.height;
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) n += g.pixels[std::size_t(y * g.width + x)] < 250;
  return n;
}

// An 8-bit RGB decode of a PNG (libpng's simplified API), with the queries the history test asks.
struct Rgb {
  int width = 0, height = 0;
  std::vector<uint8_t> px;
  // Within 6 of c in every channel: fully covered by a stroke of that colour.
  bool is(int x, int y, const std::array<int, 3>& c) const {
    const uint8_t* p = px.data() + 3 * std::size_t(y * width + x);
    for (int k = 0; k < 3; ++k)
      if (std::abs(int(p[k]) - c[std::size_t(k)]) > 6) return false;
    return true;
  }
  int count(const std::array<int, 3>& c, int x0, int x1) const {
    int n = 0;
    for (int y = 0; y < height; ++y)
      for (int x = x0; x < x1; ++x) n += is(x, y, c);
    return n;
  }
  // Median row of the pixels of colour c in columns [x0, x1); -1 when there are none.
  int median_y(const std::array<int, 3>& c, int x0, int x1) const {
    std::vector<int> ys;
    for (int y = 0; y < height; ++y)
      for (int x = x0; x < x1; ++x)
        if (is(x, y, c)) ys.push_back(y);
    if (ys.empty()) return -1;
    std::nth_element(ys.begin(), ys.begin() + std::ptrdiff_t(ys.size() / 2), ys.end());
    return ys[ys.size() / 2];
  }
};

Rgb read_png_rgb(const std::string& path) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  Rgb out;
  if (!png_image_begin_read_from_file(&img, path.c_str())) return out;
  img.format = PNG_FORMAT_RGB;
  out.px.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.px.data(), 0, nullptr)) return out;
  out.width = int(img.width);
  out.height = int(img.height);
  return out;
}

}  // namespace

TEST_CASE("plot_history_png: 1400x500, both panels drawn, curves in their colours where the data goes") {
  const std::string path = out_path("history.png");
  plot_history_png(path, sample_history(14, 11), "mnist_cuda");
  const GrayImage g = read_png_gray(path);
  CHECK(g.width == kHistoryPlotWidth);
  CHECK(g.height == kHistoryPlotHeight);
  CHECK(ink(g, 0, 700) > 5000);
  CHECK(ink(g, 700, 1400) > 5000);
  CHECK(ink(g, 0, 700) < 700 * 500 / 3);  // mostly background, not a filled mess

  // The curves' colours (matplotlib's tab:blue and tab:orange) appear in both panels: pixels the
  // 2.5-px curves and their markers cover fully (anti-aliased edges are paler and do not count).
  const Rgb img = read_png_rgb(path);
  REQUIRE(img.width == kHistoryPlotWidth);
  const std::array<int, 3> blue{31, 119, 180}, orange{255, 127, 14};
  CHECK(img.count(blue, 0, 700) > 200);
  CHECK(img.count(orange, 0, 700) > 200);
  CHECK(img.count(blue, 700, 1400) > 200);
  CHECK(img.count(orange, 700, 1400) > 200);

  // And they go where the data goes (y grows downwards): the training loss falls from 0.49 to
  // 0.05, so its curve is higher on the left of the loss panel than on the right; the validation
  // accuracy rises from 0.938 to 0.978, so its curve is lower on the left of the accuracy panel.
  // Bands are the panel's 15-40% and 70-95% of its width (inside the axes whatever the margins);
  // the median ignores the legend's short sample line.
  CHECK(img.median_y(blue, 105, 280) + 100 < img.median_y(blue, 490, 665));
  CHECK(img.median_y(orange, 805, 980) > img.median_y(orange, 1190, 1365) + 30);
  if (!keep()) fs::remove(path);
}

TEST_CASE("plot_history_svg: the same figure as an SVG document with the curves as vector strokes") {
  const std::string path = out_path("history.svg");
  plot_history_svg(path, sample_history(14, 11), "mnist_cuda");
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  const std::string svg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("width=\"1400pt\" height=\"500pt\"") != std::string::npos);
  CHECK(svg.find("</svg>") != std::string::npos);  // finished, not truncated
  // tab:blue and tab:orange strokes (cairo writes colours as percentages: 31/255 = 12.156863%).
  CHECK(svg.find("stroke:rgb(12.156863%,46.666667%,70.588235%)") != std::string::npos);
  CHECK(svg.find("stroke:rgb(100%,49.803922%,5.490196%)") != std::string::npos);
  if (!keep()) fs::remove(path);
}

TEST_CASE("plot_history_png copes with one epoch, flat and non-finite values") {
  History h = sample_history(1, 1);
  const std::string p1 = out_path("history1.png");
  plot_history_png(p1, h);
  CHECK(read_png_gray(p1).width == kHistoryPlotWidth);
  History flat = sample_history(5, 0);
  for (auto& r : flat.epochs) r.loss = r.val_loss = 0.5;
  flat.epochs[2].val_accuracy = NAN;
  const std::string p2 = out_path("history_flat.png");
  plot_history_png(p2, flat);
  CHECK(ink(read_png_gray(p2), 0, 700) > 3000);
  CHECK(ink(read_png_gray(p2), 700, 1400) > 3000);
  plot_history_png(out_path("history0.png"), History{});
  if (!keep()) {
    fs::remove(p1);
    fs::remove(p2);
  }
  fs::remove(out_path("history0.png"));
}

TEST_CASE("sample_grid_png: 2x5 cells of 4x-scaled 28x28 images, each at its documented place, exact pixels") {
  std::vector<GrayImage> imgs;
  std::vector<int> labels;
  for (int k = 0; k < 10; ++k) {
    GrayImage g{28, 28, std::vector<uint8_t>(784, 0)};
    // A bar whose length is the label, so each cell differs.
    for (int y = 4; y < 24; ++y)
      for (int x = 10; x < 10 + 2 * (k + 1) && x < 28; ++x) g.pixels[std::size_t(y * 28 + x)] = 255;
    imgs.push_back(g);
    labels.push_back(k);
  }
  const std::string path = out_path("grid.png");
  sample_grid_png(path, imgs, labels);
  const GrayImage g = read_png_gray(path);
  const int cell_w = 4 * 28 + 32, cell_h = 4 * 28 + 50;  // "Label: k" is narrower than 4*28 + 16
  REQUIRE(g.width == 2 * 20 + 5 * cell_w);
  REQUIRE(g.height == 70 + 2 * cell_h);
  for (int k = 0; k < 10; ++k) {
    const int x0 = 20 + (k % 5) * cell_w + (cell_w - 4 * 28) / 2, y0 = 60 + (k / 5) * cell_h + 38;
    // Nearest-neighbour scaling keeps every value: the 112x112 block holds exactly 4x4 copies of
    // each source pixel, so the white bar has 4*20 rows of 4*min(2(k+1), 18) pixels of 255, the
    // rest is 0.
    int white = 0, black = 0;
    for (int y = y0; y < y0 + 112; ++y)
      for (int x = x0; x < x0 + 112; ++x) {
        const uint8_t v = g.pixels[std::size_t(y * g.width + x)];
        white += v == 255;
        black += v == 0;
      }
    CHECK_MESSAGE(white == 80 * 4 * std::min(2 * (k + 1), 18), "cell ", k);
    CHECK_MESSAGE(black == 112 * 112 - white, "cell ", k);
    // Its caption is drawn in the 38 rows above the image.
    CHECK_MESSAGE(ink(g, x0, x0 + 112, y0 - 38, y0) > 50, "caption of cell ", k);
  }

  CHECK_THROWS_AS(sample_grid_png(path, imgs, {1, 2}), Error);
  CHECK_THROWS_AS(image_grid_png(path, imgs, std::vector<std::string>(10, "x"), 0, 5, "t"), Error);
  if (!keep()) fs::remove(path);
}
