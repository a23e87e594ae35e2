// PNG encode/decode through libpng, errors on bad input, and the MNIST-style normalisation of
// an arbitrary digit image.
#include <doctest/doctest.h>
#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "apps/data/mnist.hpp"
#include "apps/io/atomic_file.hpp"
#include "apps/io/png.hpp"
#include "helpers.hpp"
#include "runtime/error.hpp"

namespace fs = std::filesystem;
using namespace mnist;

namespace {

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("mnist_png_" + std::to_string(::getpid()) + "_" + name)).string();
}

// PNG bytes of other formats (16-bit, RGBA, palette) with libpng's simplified writer.
std::string encode_with(png_uint_32 format, const void* pixels, int w, int h, const void* colormap = nullptr,
                        int colormap_entries = 0) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = png_uint_32(w);
  img.height = png_uint_32(h);
  img.format = format;
  img.colormap_entries = png_uint_32(colormap_entries);
  png_alloc_size_t size = 0;
  REQUIRE(png_image_write_to_memory(&img, nullptr, &size, 0, pixels, 0, colormap));
  std::string out(size, '\0');
  REQUIRE(png_image_write_to_memory(&img, out.data(), &size, 0, pixels, 0, colormap));
  out.resize(size);
  return out;
}

// A synthetic MNIST-like digit ("0" with a bar inside), white on black, anti-aliased, as MNIST
// digits are: 20 px tall (rows 4..23), centre of mass (14.0, 13.93), i.e. within half a pixel
// of (14, 14).
std::vector<uint8_t> synthetic_digit() {
  std::vector<uint8_t> img(28 * 28, 0);
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) {
      const double dx = (x - 14.0) / 7.0, dy = (y + 0.5 - 14.0) / 10.0;
      const double r = std::sqrt(dx * dx + dy * dy);
      const double ink = std::max(0.0, 1.0 - std::fabs(r - 0.8) * 5.0);
      img[std::size_t(y * 28 + x)] = uint8_t(std::lround(255 * std::min(1.0, ink * 1.6)));
      if ((y == 16 || y == 17) && x >= 10 && x <= 18) img[std::size_t(y * 28 + x)] = 255;
    }
  return img;
}

}  // namespace

TEST_CASE("gray and RGB PNGs round-trip exactly") {
  const int w = 37, h = 23;
  std::vector<uint8_t> gray(std::size_t(w * h));
  for (std::size_t i = 0; i < gray.size(); ++i) gray[i] = uint8_t((i * 7 + i / 37) & 0xFF);
  const std::string gpath = temp_path("gray.png");
  write_png_gray(gpath, gray.data(), w, h);
  const GrayImage g = read_png_gray(gpath);
  CHECK(g.width == w);
  CHECK(g.height == h);
  CHECK(g.pixels == gray);

  // RGB with equal channels decodes to the same gray; coloured pixels follow BT.601 luma.
  std::vector<uint8_t> rgb(std::size_t(w * h * 3));
  for (std::size_t i = 0; i < gray.size(); ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = gray[i];
  rgb[0] = 255, rgb[1] = 0, rgb[2] = 0;  // pure red
  rgb[3] = 0, rgb[4] = 255, rgb[5] = 0;  // pure green
  const std::string cpath = temp_path("rgb.png");
  write_png_rgb(cpath, rgb.data(), w, h);
  const GrayImage c = read_png_gray(cpath);
  CHECK(c.width == w);
  CHECK(c.height == h);
  CHECK(c.pixels[0] == 76);   // 0.299 * 255
  CHECK(c.pixels[1] == 150);  // 0.587 * 255
  CHECK(std::equal(c.pixels.begin() + 2, c.pixels.end(), gray.begin() + 2));
  fs::remove(gpath);
  fs::remove(cpath);
}

TEST_CASE("16-bit, RGBA and palette PNGs decode to 8-bit gray") {
  SUBCASE("16-bit gray scales to 8 bits") {
    const std::vector<uint16_t> px = {0, 65535, 32896, 257 * 200};
    const GrayImage g = decode_png_gray(encode_with(PNG_FORMAT_LINEAR_Y, px.data(), 2, 2), "mem");
    // The simplified writer stores 16-bit linear data; only the extremes are exact whatever the
    // conversion, which is what matters here (the transform chain accepts 16-bit input).
    CHECK(g.width == 2);
    CHECK(g.pixels[0] == 0);
    CHECK(g.pixels[1] == 255);
  }
  SUBCASE("transparent pixels are composited onto white") {
    const std::vector<uint8_t> px = {0, 0, 0, 0, 0, 0, 0, 255, 10, 20, 30, 128};
    const GrayImage g = decode_png_gray(encode_with(PNG_FORMAT_RGBA, px.data(), 3, 1), "mem");
    REQUIRE(g.pixels.size() == 3);
    CHECK(g.pixels[0] == 255);  // fully transparent -> white
    CHECK(g.pixels[1] == 0);    // opaque black
    CHECK(int(g.pixels[2]) == doctest::Approx(0.5 * 255 + 0.5 * 18).epsilon(0.02));
  }
  SUBCASE("palette") {
    const std::vector<uint8_t> cmap = {0, 0, 0, 255, 255, 255, 100, 100, 100};
    const std::vector<uint8_t> idx = {0, 1, 2, 1};
    const GrayImage g =
        decode_png_gray(encode_with(PNG_FORMAT_RGB_COLORMAP, idx.data(), 4, 1, cmap.data(), 3), "mem");
    CHECK(g.pixels == std::vector<uint8_t>{0, 255, 100, 255});
  }
}

TEST_CASE("a file that is not a PNG, or a corrupt one, gives a clear InputError") {
  const std::string path = temp_path("not.png");
  write_file_atomic(path, "P5\n28 28\n255\nthis is a PGM, not a PNG");
  CHECK_THROWS_WITH_AS(read_png_gray(path), doctest::Contains("not a PNG file"), InputError);
  try {
    read_png_gray(path);
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
  CHECK_THROWS_AS(read_png_gray(temp_path("missing.png")), InputError);

  std::vector<uint8_t> px(64 * 64, 128);
  std::string good = encode_png_gray(px.data(), 64, 64);
  CHECK_THROWS_WITH_AS(decode_png_gray(good.substr(0, good.size() / 2), "half.png"), doctest::Contains("half.png"),
                       InputError);
  std::string bad = good;
  bad[40] ^= 0x55;  // inside the IDAT chunk: CRC error
  CHECK_THROWS_WITH_AS(decode_png_gray(bad, "bad.png"), doctest::Contains("corrupt PNG"), InputError);
  fs::remove(path);
}

TEST_CASE("to_mnist_28x28 keeps an MNIST-like image and undoes inversion") {
  const std::vector<uint8_t> digit = synthetic_digit();
  const std::vector<uint8_t> out = to_mnist_28x28(digit, 28, 28);
  REQUIRE(out.size() == 784);
  CHECK(out == digit);  // already 20 px tall, max 255, centred: nothing to change

  std::vector<uint8_t> inverted(digit.size());
  for (std::size_t i = 0; i < digit.size(); ++i) inverted[i] = uint8_t(255 - digit[i]);
  CHECK(to_mnist_28x28(inverted, 28, 28) == out);

  SUBCASE("a large, off-centre, dark-on-noisy-paper photo-like digit") {
    // The digit at 4x size, ink multiplied onto grey paper (210 +- 8 gaussian noise) of 200 x 160.
    const int W = 200, H = 160, S = 4;
    std::mt19937 gen(7);
    std::normal_distribution<double> noise(0.0, 8.0);
    std::vector<uint8_t> big(std::size_t(W * H));
    for (auto& v : big) v = uint8_t(std::lround(std::clamp(210.0 + noise(gen), 0.0, 255.0)));
    for (int y = 0; y < 28 * S; ++y)
      for (int x = 0; x < 28 * S; ++x) {
        uint8_t& p = big[std::size_t((y + 10) * W + (x + 20))];
        p = uint8_t(p * (255 - digit[std::size_t((y / S) * 28 + x / S)]) / 255);
      }
    const std::vector<uint8_t> r = to_mnist_28x28(big, W, H);
    test::expect_close(r, digit, 0.15, "4x digit on noisy paper");
    // Centre of mass within a pixel of (14, 14).
    double m = 0, cx = 0, cy = 0;
    for (int i = 0; i < 784; ++i) m += r[std::size_t(i)], cx += r[std::size_t(i)] * (i % 28), cy += r[std::size_t(i)] * (i / 28);
    CHECK(std::fabs(cx / m - 14) <= 1.0);
    CHECK(std::fabs(cy / m - 14) <= 1.0);
  }
  SUBCASE("real MNIST digits are unchanged up to the level stretch") {
    const std::string dir = MNIST_TEST_DATA_DIR;
    if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz") && !fs::exists(dir + "/t10k-images-idx3-ubyte")) {
      MESSAGE("MNIST not found in " << dir << ": real-digit check skipped");
      return;
    }
    const ImageSet test = load_mnist_dir(dir).test;
    for (int k = 0; k < 50; ++k) {
      const std::vector<uint8_t> img(test.images.begin() + std::ptrdiff_t(k) * 784,
                                     test.images.begin() + std::ptrdiff_t(k + 1) * 784);
      test::expect_close(to_mnist_28x28(img, 28, 28), img, 0.01, "MNIST test image " + std::to_string(k));
    }
  }
  SUBCASE("blank and bad input") {
    CHECK(to_mnist_28x28(std::vector<uint8_t>(100, 255), 10, 10) == std::vector<uint8_t>(784, 0));
    CHECK_THROWS_AS(to_mnist_28x28(std::vector<uint8_t>(10, 0), 5, 5), InputError);
    CHECK_THROWS_AS(to_mnist_28x28(std::vector<uint8_t>{}, 0, 0), InputError);
  }
}
