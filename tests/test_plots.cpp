// The raster figures: sizes, something drawn in both history panels, the grid's layout.
// Set MNIST_KEEP_PLOTS=1 to keep the PNGs in the temp dir for looking at them.
#include <doctest/doctest.h>
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/io/font.hpp"
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

// Non-white pixels in the half-open column range [x0, x1).
int ink(const GrayImage& g, int x0, int x1) {
  int n = 0;
  for (int y = 0; y < g.height; ++y)
    for (int x = x0; x < x1; ++x) n += g.pixels[std::size_t(y * g.width + x)] < 250;
  return n;
}

}  // namespace

TEST_CASE("every printable ASCII character has a glyph, space is empty") {
  for (int c = 33; c < 127; ++c) {
    int bits = 0;
    for (int r = 0; r < font::kGlyphH; ++r) bits += font::glyph_row(char(c), r) != 0;
    CHECK_MESSAGE(bits > 0, "glyph for '" << char(c) << "' is empty");
  }
  for (int r = 0; r < font::kGlyphH; ++r) CHECK(font::glyph_row(' ', r) == 0);
  CHECK(Canvas::text_width("abc", 2) == 2 * (3 * 6 - 1));
}

TEST_CASE("plot_history_png: 1400x500, both panels drawn, curves in their colours") {
  const std::string path = out_path("history.png");
  plot_history_png(path, sample_history(14, 11), "mnist_cuda");
  const GrayImage g = read_png_gray(path);
  CHECK(g.width == kHistoryPlotWidth);
  CHECK(g.height == kHistoryPlotHeight);
  CHECK(ink(g, 0, 700) > 5000);
  CHECK(ink(g, 700, 1400) > 5000);
  CHECK(ink(g, 0, 700) < 700 * 500 / 3);  // mostly background, not a filled mess

  // The curves' colours (matplotlib's tab:blue and tab:orange) appear in both panels.
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&img, path.c_str()));
  img.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(PNG_IMAGE_SIZE(img));
  REQUIRE(png_image_finish_read(&img, nullptr, rgb.data(), 0, nullptr));
  int blue_left = 0, orange_right = 0;
  for (int y = 0; y < g.height; ++y)
    for (int x = 0; x < g.width; ++x) {
      const uint8_t* p = rgb.data() + 3 * std::size_t(y * g.width + x);
      if (x < 700 && p[0] == 31 && p[1] == 119 && p[2] == 180) ++blue_left;
      if (x >= 700 && p[0] == 255 && p[1] == 127 && p[2] == 14) ++orange_right;
    }
  CHECK(blue_left > 200);
  CHECK(orange_right > 200);
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

TEST_CASE("sample_grid_png: 2x5 cells of 4x-scaled 28x28 images with labels") {
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
  CHECK(g.width == 2 * 20 + 5 * (4 * 28 + 32));
  CHECK(g.height == 70 + 2 * (4 * 28 + 50));
  // Each image is a 112x112 block of black (0) with white bars: count pure black pixels.
  int black = 0;
  for (uint8_t v : g.pixels) black += v == 0;
  CHECK(black > 10 * 112 * 112 / 3);

  CHECK_THROWS_AS(sample_grid_png(path, imgs, {1, 2}), Error);
  if (!keep()) fs::remove(path);
}
