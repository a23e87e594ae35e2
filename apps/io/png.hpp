// PNG images through libpng: 8-bit gray and RGB encoding (to memory, then write_file_atomic),
// decoding of any PNG into 8-bit grayscale, and the conversion of an arbitrary picture of a digit
// into an MNIST-like 28x28 input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mnist {

// A row-major 8-bit grayscale image: pixels[y * width + x].
struct GrayImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
};

// PNG bytes of an 8-bit image: gray has width*height bytes, RGB 3*width*height (r, g, b per
// pixel), rows top to bottom. Throws Error when the sizes do not match or libpng fails.
std::string encode_png_gray(const uint8_t* pixels, int width, int height);
std::string encode_png_rgb(const uint8_t* pixels, int width, int height);
// encode_png_* then write_file_atomic(path).
void write_png_gray(const std::string& path, const uint8_t* pixels, int width, int height);
void write_png_rgb(const std::string& path, const uint8_t* pixels, int width, int height);

// Decodes any PNG (gray, gray+alpha, RGB, RGBA, palette, 1..16 bits, interlaced) into 8-bit
// gray: 16-bit samples are scaled to 8 bits, colour becomes luma (299 R + 587 G + 114 B) / 1000
// (ITU-R BT.601, as PIL's convert("L")), and transparency is composited onto WHITE (a digit
// drawn on a transparent canvas reads as drawn on paper). No gamma correction is applied.
// Images larger than 16384 x 16384 are refused. Throws InputError("<what>: <problem>") when the
// bytes are not a PNG or are corrupt or truncated.
GrayImage decode_png_gray(const std::string& bytes, const std::string& what);
// decode_png_gray of a file's contents (what = path).
GrayImage read_png_gray(const std::string& path);

// An arbitrary image of ONE digit -> 28x28 uint8 (row-major), prepared the way MNIST was built:
//  1. Polarity: if the mean of the border pixels (the outermost row/column on each side) is
//     > 127 the background is light, and the image is inverted so the digit is white on black.
//  2. Levels: the background level b is the median of the border pixels plus 5 robust standard
//     deviations (1.4826 * median absolute deviation), so noisy paper stays background and a
//     digit touching part of the border does not count; m is the brightest pixel; pixels are mapped (v - b) * 255 / (m - b),
//     clamped to [0, 255]. For an MNIST image (b = 0, m = 255) this is the identity. An image
//     with m <= b (blank) gives 28x28 zeros. The background is assumed roughly uniform.
//  3. Size: the bounding box of the non-zero pixels that have a non-zero 8-neighbour (isolated
//     specks of noise do not stretch it) is area-averaged (box filter with fractional coverage)
//     to fit a 20x20 box, preserving the aspect ratio (longer side = 20 px).
//  4. Position: the result is placed in the 28x28 field so that its intensity centre of mass
//     lies at pixel (14, 14) to the nearest pixel (integer shift, kept inside the field).
// For a real MNIST image (digit already 20 px on its longer side, centre of mass within half a
// pixel of (14, 14)) the output equals the input up to the level stretch of step 2.
// Throws InputError when width or height is < 1 or gray.size() != width * height.
std::vector<uint8_t> to_mnist_28x28(const std::vector<uint8_t>& gray, int width, int height);
inline std::vector<uint8_t> to_mnist_28x28(const GrayImage& img) {
  return to_mnist_28x28(img.pixels, img.width, img.height);
}

}  // namespace mnist
