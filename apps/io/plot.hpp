// The tutorial's matplotlib figures, drawn without matplotlib: a small RGB raster canvas with
// anti-aliased lines and the embedded bitmap font (apps/io/font.hpp), and the two figures built
// on it (training history; sample image grid), written as PNG through write_file_atomic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/io/png.hpp"
#include "apps/pipeline/history.hpp"

namespace mnist {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

// An RGB image with drawing primitives. Coordinates are pixels, x right, y down; pixel (x, y)
// covers [x, x+1) x [y, y+1). Everything is clipped to the canvas.
class Canvas {
 public:
  // Precondition: width, height >= 1 (throws Error otherwise).
  Canvas(int width, int height, Rgb background = {255, 255, 255});

  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<uint8_t>& rgb() const { return px_; }  // 3 * width * height, row-major
  Rgb pixel(int x, int y) const;                           // precondition: inside the canvas

  // c over the pixel with opacity alpha in [0, 1].
  void blend(int x, int y, Rgb c, float alpha);
  void fill_rect(int x, int y, int w, int h, Rgb c, float alpha = 1.0f);
  // Outline of thickness t drawn inside the rectangle.
  void stroke_rect(int x, int y, int w, int h, Rgb c, int t = 1);
  // Anti-aliased polyline of the given width through the points, with round joins and caps
  // (each pixel is painted once, with the coverage of the nearest segment). One point = a dot.
  struct Point {
    double x, y;
  };
  void polyline(const std::vector<Point>& pts, Rgb c, double width = 2.0);
  void line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.0) {
    polyline({{x0, y0}, {x1, y1}}, c, width);
  }
  void fill_circle(double cx, double cy, double r, Rgb c);

  // Text in the bitmap font, scale s (glyph 5s x 9s, advance 6s); (x, y) is the top-left of
  // the first glyph's cell (cap height 7s from y). Bold draws each glyph twice, 1 px apart.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1, bool bold = false);
  // The same rotated 90 degrees counter-clockwise (reads bottom to top), as a y-axis label;
  // (x, y) is the top-left of its bounding box of text_height(s) x text_width(str, s).
  void text_vertical(int x, int y, const std::string& s, Rgb c, int scale = 1);
  static int text_width(const std::string& s, int scale);  // 6*scale*len - scale
  static int text_height(int scale);                       // 9*scale (cap + descender)

  // A grayscale image, each pixel drawn as a scale x scale block, top-left at (x, y).
  void blit_gray(const GrayImage& img, int x, int y, int scale);

  std::string encode_png() const;

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

// The tutorial's training figure (plt.subplots(1, 2, figsize=(14, 5))): a 1400x500 PNG with two
// panels, "<prefix> Training Loss" (training vs validation loss) and "<prefix> Training Accuracy"
// (training vs validation accuracy); x = the 1-based epoch (EpochRecord::epoch) with integer
// ticks, y with 1-2-5 rounded ticks and a 5% margin, light grid, legend box placed where it
// hides the fewest points (when every place hides some, the y range grows at the top to make
// room). When history.best_epoch > 0 a dashed grey line marks it ("Best
// epoch N" in the legend). Points get round markers up to 30 epochs. Non-finite values are left out of the curves. An empty prefix gives
// "Training Loss". Throws Error naming the path on a write failure.
void plot_history_png(const std::string& path, const History& history, const std::string& title_prefix = "");
constexpr int kHistoryPlotWidth = 1400, kHistoryPlotHeight = 500;

// A rows x cols grid of images (matplotlib imshow(cmap="gray"), axis off), each scaled up
// `scale` times (nearest neighbour) under its caption, and a bold title on top. Cell i (row-major)
// shows images[i] if there is one (fewer images leave cells empty; extra ones are ignored).
// All images must have the size of images[0]. Size, for images of w x h:
//   width  = 2*20 + cols * max(scale*w + 32, widest caption + 16)   (caption at scale 2:
//            text_width(caption, 2); "Label: 7" never widens a 28-px image's cell at scale 4)
//   height = 70 + rows * (scale*h + 50)
// Throws Error when captions and images differ in count, sizes differ, or rows/cols/scale < 1.
void image_grid_png(const std::string& path, const std::vector<GrayImage>& images,
                    const std::vector<std::string>& captions, int rows, int cols,
                    const std::string& title, int scale = 4);
// The tutorial's sample figure: image_grid_png with captions "Label: <n>".
void sample_grid_png(const std::string& path, const std::vector<GrayImage>& images, const std::vector<int>& labels,
                     int rows = 2, int cols = 5, const std::string& title = "Sample MNIST Images", int scale = 4);

}  // namespace mnist
