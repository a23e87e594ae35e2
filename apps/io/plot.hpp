// The tutorial's matplotlib figures, drawn without matplotlib through cairo (anti-aliased vector
// drawing, text in DejaVu Sans, matplotlib's own default font): the training history (PNG, and
// the same figure as SVG) and image grids (the sample figure and the predictions), all written
// through write_file_atomic.
#pragma once

#include <string>
#include <vector>

#include "apps/io/png.hpp"
#include "apps/pipeline/history.hpp"

namespace mnist {

// The tutorial's training figure (plt.subplots(1, 2, figsize=(14, 5))): a 1400x500 PNG with two
// panels, "<prefix> Training Loss" (training vs validation loss) and "<prefix> Training Accuracy"
// (training vs validation accuracy), training in matplotlib's tab:blue (31, 119, 180), validation
// in tab:orange (255, 127, 14); x = the 1-based epoch (EpochRecord::epoch) with integer ticks, y
// with 1-2-5 rounded ticks and a 5% margin, light grid, legend box placed where it hides the
// fewest points (when every place hides some, the y range grows at the top to make room). When
// history.best_epoch > 0 a dashed grey line marks it ("Best epoch N" in the legend). Points get
// round markers up to 30 epochs. Non-finite values are left out of the curves. An empty prefix
// gives "Training Loss". Throws Error naming the path on a write failure.
void plot_history_png(const std::string& path, const History& history, const std::string& title_prefix = "");
// The same figure as an SVG document of 1400 x 500 pt (vector lines, text as glyph outlines).
void plot_history_svg(const std::string& path, const History& history, const std::string& title_prefix = "");
constexpr int kHistoryPlotWidth = 1400, kHistoryPlotHeight = 500;

// A rows x cols grid of images (matplotlib imshow(cmap="gray"), axis off), each scaled up
// `scale` times (nearest neighbour, so pixel values are kept exactly) under its caption, and a
// bold title on top. Cell i (row-major) shows images[i] if there is one (fewer images leave
// cells empty; extra ones are ignored). All images must have the size of images[0]. Layout, for
// images of w x h and captions of at most C pixels (DejaVu Sans, 18 px; "Label: 7" is ~70 px,
// so it never widens a 28-px image's cell at scale 4):
//   cell   cell_w = max(scale*w + 32, C + 16), cell_h = scale*h + 50
//   size   width = 2*20 + cols * cell_w, height = 70 + rows * cell_h
//   image  top-left of cell (r, c)'s image at (20 + c*cell_w + (cell_w - scale*w)/2, 60 + r*cell_h + 38)
// Throws Error when captions and images differ in count, sizes differ, or rows/cols/scale < 1.
void image_grid_png(const std::string& path, const std::vector<GrayImage>& images,
                    const std::vector<std::string>& captions, int rows, int cols,
                    const std::string& title, int scale = 4);
// The tutorial's sample figure: image_grid_png with captions "Label: <n>".
void sample_grid_png(const std::string& path, const std::vector<GrayImage>& images, const std::vector<int>& labels,
                     int rows = 2, int cols = 5, const std::string& title = "Sample MNIST Images", int scale = 4);

}  // namespace mnist
