#include "apps/io/png.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "apps/io/atomic_file.hpp"
#include "runtime/error.hpp"

namespace mnist {

// ---------------------------------------------------------------------------------------------
// Encoding: libpng's simplified API (it handles its own longjmp and reports through .message).

namespace {

std::string encode_png(const uint8_t* pixels, int width, int height, bool rgb) {
  if (width < 1 || height < 1 || pixels == nullptr)
    throw Error(cat("PNG encode: bad image ", width, "x", height));
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = png_uint_32(width);
  image.height = png_uint_32(height);
  image.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const png_int_32 stride = png_int_32(width) * (rgb ? 3 : 1);
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels, stride, nullptr))
    throw Error(cat("PNG encode: ", image.message));
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, pixels, stride, nullptr))
    throw Error(cat("PNG encode: ", image.message));
  out.resize(size);
  png_image_free(&image);
  return out;
}

}  // namespace

std::string encode_png_gray(const uint8_t* pixels, int width, int height) {
  return encode_png(pixels, width, height, false);
}
std::string encode_png_rgb(const uint8_t* pixels, int width, int height) {
  return encode_png(pixels, width, height, true);
}
void write_png_gray(const std::string& path, const uint8_t* pixels, int width, int height) {
  write_file_atomic(path, encode_png_gray(pixels, width, height));
}
void write_png_rgb(const std::string& path, const uint8_t* pixels, int width, int height) {
  write_file_atomic(path, encode_png_rgb(pixels, width, height));
}

// ---------------------------------------------------------------------------------------------
// Decoding: the low-level API, for exact control of the transforms (no gamma). libpng reports
// errors by longjmp; everything that must survive one lives in ReadCtx (outside the frame that
// calls setjmp), and the C++ exception is thrown only after libpng has returned.

namespace {

constexpr png_uint_32 kMaxSide = 16384;

struct ReadCtx {
  const std::string* bytes = nullptr;
  std::size_t pos = 0;
  char message[200] = {0};
  png_uint_32 width = 0, height = 0;
  int channels = 0;  // after the transforms: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> data;
  std::vector<png_bytep> rows;
};

void on_error(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<ReadCtx*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof ctx->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}  // e.g. bad ancillary chunks: not our concern

void on_read(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<ReadCtx*>(png_get_io_ptr(png));
  if (ctx->bytes->size() - ctx->pos < n) png_error(png, "truncated PNG data");
  std::memcpy(out, ctx->bytes->data() + ctx->pos, n);
  ctx->pos += n;
}

// Returns false after a libpng error (message in ctx). No local here has a destructor.
bool read_rows(png_structp png, png_infop info, ReadCtx* ctx) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, kMaxSide, kMaxSide);
  png_read_info(png, info);
  png_set_expand(png);  // palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha
  png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  ctx->width = png_get_image_width(png, info);
  ctx->height = png_get_image_height(png, info);
  ctx->channels = png_get_channels(png, info);
  if (png_get_bit_depth(png, info) != 8 || ctx->channels < 1 || ctx->channels > 4)
    png_error(png, "unsupported pixel format after conversion");
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  ctx->data.resize(row_bytes * ctx->height);
  ctx->rows.resize(ctx->height);
  for (png_uint_32 y = 0; y < ctx->height; ++y) ctx->rows[y] = ctx->data.data() + row_bytes * y;
  png_read_image(png, ctx->rows.data());
  png_read_end(png, nullptr);
  return true;
}

}  // namespace

GrayImage decode_png_gray(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) != 0)
    throw InputError(cat(what, ": not a PNG file (bad signature)"));
  ReadCtx ctx;
  ctx.bytes = &bytes;
  // Owns libpng's structs in this frame (which libpng never longjmps over): freed on every path,
  // including a bad_alloc thrown by read_rows.
  struct ReadStructs {
    png_structp png = nullptr;
    png_infop info = nullptr;
    ~ReadStructs() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
  } s;
  s.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  if (!s.png) throw Error(cat(what, ": cannot initialise libpng"));
  s.info = png_create_info_struct(s.png);
  if (!s.info) throw Error(cat(what, ": cannot initialise libpng"));
  png_set_read_fn(s.png, &ctx, on_read);
  if (!read_rows(s.png, s.info, &ctx)) throw InputError(cat(what, ": corrupt PNG (", ctx.message, ")"));

  GrayImage img;
  img.width = int(ctx.width);
  img.height = int(ctx.height);
  const std::size_t n = std::size_t(ctx.width) * ctx.height;
  img.pixels.resize(n);
  const int c = ctx.channels;
  const bool has_alpha = c == 2 || c == 4;
  for (std::size_t i = 0; i < n; ++i) {
    const uint8_t* p = ctx.data.data() + i * std::size_t(c);
    // Luma with the 1000-sum integer weights, rounded (PIL's "L" conversion).
    unsigned g = c >= 3 ? (299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u : p[0];
    if (has_alpha) {
      const unsigned a = p[c - 1];
      g = (g * a + 255u * (255u - a) + 127u) / 255u;  // over white
    }
    img.pixels[i] = uint8_t(g);
  }
  return img;
}

GrayImage read_png_gray(const std::string& path) { return decode_png_gray(read_file(path), path); }

// ---------------------------------------------------------------------------------------------
// MNIST-style normalisation

namespace {

// Area-average resampling weights of one axis: destination pixel d covers source interval
// [d * f, (d + 1) * f) with f = src / dst; each entry is (source index, overlap length / f).
struct Tap {
  int src;
  double w;
};
std::vector<std::vector<Tap>> area_taps(int src, int dst) {
  std::vector<std::vector<Tap>> taps(static_cast<std::size_t>(dst));
  const double f = double(src) / dst;
  for (int d = 0; d < dst; ++d) {
    const double a = d * f, b = (d + 1) * f;
    for (int s = int(std::floor(a)); s < src && s < b; ++s) {
      const double overlap = std::min(b, double(s + 1)) - std::max(a, double(s));
      if (overlap > 1e-12) taps[std::size_t(d)].push_back({s, overlap / f});
    }
  }
  return taps;
}

}  // namespace

std::vector<uint8_t> to_mnist_28x28(const std::vector<uint8_t>& gray, int width, int height) {
  if (width < 1 || height < 1)
    throw InputError(cat("to_mnist_28x28: image size ", width, "x", height, " is empty"));
  if (gray.size() != std::size_t(width) * std::size_t(height))
    throw InputError(cat("to_mnist_28x28: ", gray.size(), " pixels for a ", width, "x", height, " image"));
  constexpr int kSide = 28, kBox = 20;
  const auto at = [&](int x, int y) { return gray[std::size_t(y) * std::size_t(width) + std::size_t(x)]; };

  // 1. Polarity, from the border.
  std::vector<int> border;
  for (int x = 0; x < width; ++x) {
    border.push_back(at(x, 0));
    if (height > 1) border.push_back(at(x, height - 1));
  }
  for (int y = 1; y + 1 < height; ++y) {
    border.push_back(at(0, y));
    if (width > 1) border.push_back(at(width - 1, y));
  }
  double border_mean = 0;
  for (int v : border) border_mean += v;
  border_mean /= double(border.size());
  const bool invert = border_mean > 127.0;
  std::vector<float> img(gray.size());
  for (std::size_t i = 0; i < gray.size(); ++i) img[i] = float(invert ? 255 - gray[i] : gray[i]);
  for (int& v : border) v = invert ? 255 - v : v;

  // 2. Levels.
  // b = median + 5 robust standard deviations (1.4826 * MAD) of the border: above the paper's
  // noise, and unaffected by a digit that touches less than half of the border.
  std::sort(border.begin(), border.end());
  const int median = border[border.size() / 2];
  std::vector<int> dev(border.size());
  for (std::size_t i = 0; i < border.size(); ++i) dev[i] = std::abs(border[i] - median);
  std::nth_element(dev.begin(), dev.begin() + std::ptrdiff_t(dev.size() / 2), dev.end());
  const float b = float(median + 5.0 * 1.4826 * dev[dev.size() / 2]);
  const float m = *std::max_element(img.begin(), img.end());
  std::vector<uint8_t> out(kSide * kSide, 0);
  if (m <= b) return out;
  const float gain = 255.0f / (m - b);
  for (float& v : img) v = std::min(255.0f, std::max(0.0f, (v - b) * gain));

  // Bounding box of the ink; a pixel with no lit 8-neighbour (a speck of noise) does not count.
  const auto lit = [&](int x, int y) {
    return x >= 0 && y >= 0 && x < width && y < height && img[std::size_t(y) * std::size_t(width) + std::size_t(x)] > 0.0f;
  };
  int x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      if (!lit(x, y)) continue;
      bool neighbour = false;
      for (int dy = -1; dy <= 1 && !neighbour; ++dy)
        for (int dx = -1; dx <= 1 && !neighbour; ++dx) neighbour = (dx != 0 || dy != 0) && lit(x + dx, y + dy);
      if (!neighbour) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  if (x1 < 0) return out;  // only isolated specks

  // 3. Bounding box -> at most 20x20, aspect preserved.
  const int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const double scale = double(kBox) / std::max(bw, bh);
  const int nw = std::max(1, std::min(kBox, int(std::lround(bw * scale))));
  const int nh = std::max(1, std::min(kBox, int(std::lround(bh * scale))));
  const auto tx = area_taps(bw, nw), ty = area_taps(bh, nh);
  std::vector<double> patch(std::size_t(nw) * std::size_t(nh), 0.0);
  for (int dy = 0; dy < nh; ++dy) {
    for (const Tap& ry : ty[std::size_t(dy)]) {
      const float* src = img.data() + std::size_t(y0 + ry.src) * std::size_t(width) + std::size_t(x0);
      for (int dx = 0; dx < nw; ++dx) {
        double acc = 0;
        for (const Tap& rx : tx[std::size_t(dx)]) acc += rx.w * src[rx.src];
        patch[std::size_t(dy) * std::size_t(nw) + std::size_t(dx)] += ry.w * acc;
      }
    }
  }

  // 4. Centre of mass to (14, 14).
  double mass = 0, mx = 0, my = 0;
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      const double v = patch[std::size_t(y) * std::size_t(nw) + std::size_t(x)];
      mass += v;
      mx += v * x;
      my += v * y;
    }
  const double cx = mass > 0 ? mx / mass : (nw - 1) / 2.0;
  const double cy = mass > 0 ? my / mass : (nh - 1) / 2.0;
  const int ox = std::min(kSide - nw, std::max(0, int(std::lround(kSide / 2 - cx))));
  const int oy = std::min(kSide - nh, std::max(0, int(std::lround(kSide / 2 - cy))));
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x) {
      const double v = patch[std::size_t(y) * std::size_t(nw) + std::size_t(x)];
      out[std::size_t(oy + y) * kSide + std::size_t(ox + x)] =
          uint8_t(std::lround(std::min(255.0, std::max(0.0, v))));
    }
  return out;
}

}  // namespace mnist
