// The figures, drawn with cairo.
//
// Why cairo (issue 14, item 8; decided on before/after renders of history.png, samples.png and
// predictions.png from the same 6-epoch CPU run). The hand-written version drew them on its own
// raster canvas (coverage-based anti-aliased polylines) with a 5x9 bitmap font made for the
// project. Its lines were as good as cairo's, but its text was a pixel font at integer scales
// (monospaced, bold faked by drawing twice, rotation by hand) and only PNG could come out. With
// cairo (libcairo2-dev) the same layout is set in DejaVu Sans (fonts-dejavu-core), matplotlib's
// own default font, with real bold and proportional spacing, so the figures read like the
// tutorial's; and the one drawing function also writes SVG (the history's vector twin). Size:
// plot.cpp 406 + font.cpp 115 + font.hpp 16 + plot.hpp 92 = 629 lines became this file and
// plot.hpp, about 500: the font table and the public Canvas API are gone, while this file grew by
// the text helpers and the PNG/SVG output.
#include "apps/io/plot.hpp"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

#include "apps/io/atomic_file.hpp"
#include "runtime/error.hpp"
#include "runtime/unique_handle.hpp"

namespace mnist {

namespace {

using Surface = UniqueHandle<cairo_surface_t*, cairo_surface_destroy>;
using Context = UniqueHandle<cairo_t*, cairo_destroy>;

struct Rgb {
  int r, g, b;
};
constexpr Rgb kBlack{0, 0, 0}, kText{38, 38, 38}, kWhite{255, 255, 255}, kGridLine{176, 176, 176};
constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kGrey{128, 128, 128}, kLegendEdge{204, 204, 204};
constexpr double kGridAlpha = 0.3;  // plt.grid(True, alpha=0.3)
constexpr const char* kFont = "DejaVu Sans";

void set_colour(cairo_t* cr, Rgb c, double alpha = 1.0) {
  cairo_set_source_rgba(cr, c.r / 255.0, c.g / 255.0, c.b / 255.0, alpha);
}

// ---------------------------------------------------------------------------------------------
// Text (cairo's toy API: one face, no shaping; enough for ASCII labels)

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& s, double size, bool bold = false) {
  set_font(cr, size, bold);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

enum class Align { Left, Centre, Right };
enum class Anchor { Top, Middle };  // y is the top of the capitals, or their middle

void text(cairo_t* cr, const std::string& s, double x, double y, double size, Rgb c, Align align,
          Anchor anchor = Anchor::Top, bool bold = false) {
  const double w = text_width(cr, s, size, bold);
  cairo_text_extents_t cap;
  cairo_text_extents(cr, "H", &cap);
  const double cap_h = -cap.y_bearing;
  const double x0 = align == Align::Left ? x : align == Align::Centre ? x - w / 2 : x - w;
  set_colour(cr, c);
  cairo_move_to(cr, x0, anchor == Anchor::Top ? y + cap_h : y + cap_h / 2);
  cairo_show_text(cr, s.c_str());
  cairo_new_path(cr);
}

// Rotated 90 degrees counter-clockwise (reads bottom to top), centred on (x, y): a y-axis label.
void text_vertical(cairo_t* cr, const std::string& s, double x, double y, double size, Rgb c) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, s, 0, 0, size, c, Align::Centre, Anchor::Middle);
  cairo_restore(cr);
}

// ---------------------------------------------------------------------------------------------
// Output: one drawing function, a PNG or an SVG surface

cairo_status_t append_bytes(void* out, const unsigned char* data, unsigned int n) {
  static_cast<std::string*>(out)->append(reinterpret_cast<const char*>(data), n);
  return CAIRO_STATUS_SUCCESS;
}

void check(const std::string& path, cairo_status_t st) {
  if (st != CAIRO_STATUS_SUCCESS) throw Error(cat(path, ": cairo: ", cairo_status_to_string(st)));
}

// Runs draw(cr) on a white width x height canvas and returns the PNG or SVG bytes.
template <class Draw>
std::string render(const std::string& path, bool svg, int width, int height, Draw&& draw) {
  std::string bytes;
  Surface s(svg ? cairo_svg_surface_create_for_stream(append_bytes, &bytes, width, height)
                : cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  check(path, cairo_surface_status(s.get()));
  {
    Context cr(cairo_create(s.get()));
    set_colour(cr.get(), kWhite);
    cairo_paint(cr.get());
    draw(cr.get());
    check(path, cairo_status(cr.get()));
  }
  if (svg) {
    cairo_surface_finish(s.get());  // flushes the document into `bytes`
    check(path, cairo_surface_status(s.get()));
  } else {
    check(path, cairo_surface_write_to_png_stream(s.get(), append_bytes, &bytes));
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// History figure

// 1-2-5 x 10^k step giving at most `max_ticks` intervals over `range`.
double nice_step(double range, int max_ticks) {
  const double raw = range / max_ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw * (1 - 1e-9)) return m * mag;
  return 10 * mag;
}

std::string tick_label(double v, double step) {
  const int decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
  if (std::fabs(v) < step * 1e-6) v = 0;  // never "-0.00"
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

struct Point {
  double x, y;
};

struct Series {
  std::vector<double> x, y;
  Rgb color;
  std::string label;
};

struct Panel {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  int best_epoch = 0;  // 0: no marker
};

struct Box {
  double x, y, w, h;
  bool contains(double px, double py) const { return px >= x && px < x + w && py >= y && py < y + h; }
};

// Legend rows of a panel: one per series, then the best-epoch marker.
struct LegendEntry {
  std::string label;
  Rgb color;
  bool dashed;
};

constexpr double kTickFont = 15, kLabelFont = 17, kTitleFont = 20, kCurveWidth = 2.5, kMarkerRadius = 3.5;
constexpr double kDash[] = {7.0, 5.0};

void rounded_rect(cairo_t* cr, const Box& b, double r) {
  cairo_new_sub_path(cr);
  cairo_arc(cr, b.x + b.w - r, b.y + r, r, -M_PI / 2, 0);
  cairo_arc(cr, b.x + b.w - r, b.y + b.h - r, r, 0, M_PI / 2);
  cairo_arc(cr, b.x + r, b.y + b.h - r, r, M_PI / 2, M_PI);
  cairo_arc(cr, b.x + r, b.y + r, r, M_PI, 3 * M_PI / 2);
  cairo_close_path(cr);
}

// A 1-px line on the pixel grid (crisp in the PNG): horizontal when y0 == y1, else vertical.
void pixel_line(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb c, double alpha = 1.0) {
  const bool horizontal = y0 == y1;
  const double ox = horizontal ? 0 : 0.5, oy = horizontal ? 0.5 : 0;
  cairo_move_to(cr, std::floor(x0) + ox, std::floor(y0) + oy);
  cairo_line_to(cr, std::floor(x1) + ox, std::floor(y1) + oy);
  cairo_set_line_width(cr, 1.0);
  set_colour(cr, c, alpha);
  cairo_stroke(cr);
}

void draw_panel(cairo_t* cr, const Box& area, const Panel& P) {
  const Box plot{area.x + 100, area.y + 50, area.w - 100 - 25, area.h - 50 - 72};

  // Data ranges (finite values only).
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const Series& s : P.series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  if (!std::isfinite(xmin)) xmin = 1, xmax = 1, ymin = 0, ymax = 1;
  if (P.best_epoch > 0) {
    xmin = std::min(xmin, double(P.best_epoch));
    xmax = std::max(xmax, double(P.best_epoch));
  }
  const double xspan = xmax - xmin;
  const double xlo = xspan > 0 ? xmin - 0.05 * xspan : xmin - 1, xhi = xspan > 0 ? xmax + 0.05 * xspan : xmax + 1;
  if (!(ymax - ymin > 1e-12)) {
    const double pad = std::max(std::fabs(ymax) * 0.05, 0.01);
    ymin -= pad;
    ymax += pad;
  }
  const double ylo = ymin - 0.05 * (ymax - ymin);
  double yhi = ymax + 0.05 * (ymax - ymin);  // may grow to make room for the legend
  auto X = [&](double v) { return plot.x + (v - xlo) / (xhi - xlo) * plot.w; };
  auto Y = [&](double v) { return plot.y + plot.h - (v - ylo) / (yhi - ylo) * plot.h; };

  // Points the legend should not hide, in data coordinates: markers and samples along segments.
  std::vector<Point> data_pts;
  for (const Series& s : P.series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      data_pts.push_back({s.x[i], s.y[i]});
      if (i + 1 < s.x.size() && std::isfinite(s.y[i + 1]))
        for (int k = 1; k < 16; ++k) {
          const double f = k / 16.0;
          data_pts.push_back({s.x[i] + f * (s.x[i + 1] - s.x[i]), s.y[i] + f * (s.y[i + 1] - s.y[i])});
        }
    }

  // Legend size and place: the candidate box hiding the fewest data points (the dashed best-epoch
  // line only breaks ties). If every box hides some, the y range grows at the top so that the
  // upper boxes are free (matplotlib would overlap; a legible figure matters more here).
  std::vector<LegendEntry> entries;
  for (const Series& s : P.series) entries.push_back({s.label, s.color, false});
  if (P.best_epoch > 0) entries.push_back({"Best epoch " + std::to_string(P.best_epoch), kGrey, true});
  double label_w = 0;
  for (const LegendEntry& e : entries) label_w = std::max(label_w, text_width(cr, e.label, kTickFont));
  const double row_h = 24, sample_w = 32, m = 12;
  const double lw = std::ceil(12 + sample_w + 10 + label_w + 12), lh = 10 + row_h * double(entries.size()) + 2;
  auto candidates = [&] {
    return std::vector<Box>{
        {plot.x + plot.w - lw - m, plot.y + m, lw, lh},                  // upper right
        {plot.x + m, plot.y + m, lw, lh},                                // upper left
        {plot.x + plot.w - lw - m, plot.y + plot.h - lh - m, lw, lh},    // lower right
        {plot.x + m, plot.y + plot.h - lh - m, lw, lh},                  // lower left
        {plot.x + plot.w - lw - m, plot.y + (plot.h - lh) / 2, lw, lh},  // centre right
        {plot.x + (plot.w - lw) / 2, plot.y + m, lw, lh},                // upper centre
    };
  };
  auto place = [&](std::size_t& hidden_data) {
    Box best{};
    std::size_t best_cost = std::numeric_limits<std::size_t>::max();
    for (const Box& b : candidates()) {
      std::size_t data = 0, line = 0;
      for (const Point& p : data_pts) data += b.contains(X(p.x), Y(p.y));
      if (P.best_epoch > 0) line = X(P.best_epoch) >= b.x && X(P.best_epoch) < b.x + b.w;
      if (data * 1000 + line < best_cost) best_cost = data * 1000 + line, best = b, hidden_data = data;
    }
    return best;
  };
  std::size_t hidden = 0;
  Box legend = place(hidden);
  if (hidden > 0) {
    const double f = (lh + 2 * m) / plot.h;  // fraction of the height kept free at the top
    yhi = (ymax - f * ylo) / (1 - f);
    legend = place(hidden);
  }

  // Grid, tick marks and tick labels: y ticks at 1-2-5 steps, x ticks at integer epochs within
  // the epochs shown.
  const double ystep = nice_step(yhi - ylo, 7);
  for (double t = std::ceil(ylo / ystep - 1e-9) * ystep; t <= yhi + 1e-12; t += ystep) {
    const double py = std::floor(Y(t));
    if (py < plot.y || py >= plot.y + plot.h) continue;
    pixel_line(cr, plot.x, py, plot.x + plot.w, py, kGridLine, kGridAlpha);
    pixel_line(cr, plot.x - 5, py, plot.x, py, kBlack);
    text(cr, tick_label(t, ystep), plot.x - 9, py + 0.5, kTickFont, kText, Align::Right, Anchor::Middle);
  }
  const double xstep = std::max(1.0, std::round(nice_step(xhi - xlo, 10)));
  for (double t = std::ceil(xmin / xstep - 1e-9) * xstep; t <= xmax + 1e-9; t += xstep) {
    const double px = std::floor(X(t));
    pixel_line(cr, px, plot.y, px, plot.y + plot.h, kGridLine, kGridAlpha);
    pixel_line(cr, px, plot.y + plot.h, px, plot.y + plot.h + 5, kBlack);
    text(cr, tick_label(t, 1.0), px + 0.5, plot.y + plot.h + 12, kTickFont, kText, Align::Centre);
  }
  cairo_rectangle(cr, std::floor(plot.x) - 0.5, std::floor(plot.y) - 0.5, std::floor(plot.w) + 1, std::floor(plot.h) + 1);
  cairo_set_line_width(cr, 1.0);
  set_colour(cr, kBlack);
  cairo_stroke(cr);

  // Axis labels and title.
  text(cr, P.xlabel, plot.x + plot.w / 2, plot.y + plot.h + 42, kLabelFont, kBlack, Align::Centre);
  text_vertical(cr, P.ylabel, area.x + 24, plot.y + plot.h / 2, kLabelFont, kBlack);
  text(cr, P.title, plot.x + plot.w / 2, area.y + 18, kTitleFont, kBlack, Align::Centre, Anchor::Top, true);

  // Best-epoch marker, then the curves (split at non-finite values) with round markers.
  cairo_save(cr);
  cairo_rectangle(cr, plot.x, plot.y, plot.w, plot.h);
  cairo_clip(cr);
  if (P.best_epoch > 0) {
    cairo_set_dash(cr, kDash, 2, 0);
    cairo_set_line_width(cr, 1.5);
    set_colour(cr, kGrey);
    cairo_move_to(cr, X(P.best_epoch), plot.y);
    cairo_line_to(cr, X(P.best_epoch), plot.y + plot.h);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
  }
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_width(cr, kCurveWidth);
  for (const Series& s : P.series) {
    set_colour(cr, s.color);
    bool pen_down = false;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) {
        pen_down = false;
        continue;
      }
      if (pen_down)
        cairo_line_to(cr, X(s.x[i]), Y(s.y[i]));
      else
        cairo_move_to(cr, X(s.x[i]), Y(s.y[i]));
      pen_down = true;
    }
    cairo_stroke(cr);
    const bool markers = s.x.size() <= 30;  // only while they stay apart
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      const bool isolated = (i == 0 || !std::isfinite(s.y[i - 1])) && (i + 1 == s.x.size() || !std::isfinite(s.y[i + 1]));
      if (std::isfinite(s.y[i]) && (markers || isolated)) {
        cairo_new_sub_path(cr);
        cairo_arc(cr, X(s.x[i]), Y(s.y[i]), kMarkerRadius, 0, 2 * M_PI);
      }
    }
    cairo_fill(cr);
  }
  cairo_restore(cr);

  // Legend box (matplotlib's: rounded, white at 80% opacity, light grey edge).
  rounded_rect(cr, legend, 4);
  set_colour(cr, kWhite, 0.8);
  cairo_fill_preserve(cr);
  set_colour(cr, kLegendEdge);
  cairo_set_line_width(cr, 1.0);
  cairo_stroke(cr);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const double cy = legend.y + 6 + row_h * (double(i) + 0.5), sx = legend.x + 12;
    if (entries[i].dashed) cairo_set_dash(cr, kDash, 2, 0);
    cairo_set_line_width(cr, entries[i].dashed ? 1.5 : kCurveWidth);
    cairo_set_line_cap(cr, entries[i].dashed ? CAIRO_LINE_CAP_BUTT : CAIRO_LINE_CAP_ROUND);
    set_colour(cr, entries[i].color);
    cairo_move_to(cr, sx, cy);
    cairo_line_to(cr, sx + sample_w, cy);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    text(cr, entries[i].label, sx + sample_w + 10, cy, kTickFont, kText, Align::Left, Anchor::Middle);
  }
}

void draw_history(cairo_t* cr, const History& history, const std::string& title_prefix) {
  const std::string prefix = title_prefix.empty() ? "" : title_prefix + " ";
  Panel loss{prefix + "Training Loss", "Epoch", "Loss", {}, history.best_epoch};
  Panel acc{prefix + "Training Accuracy", "Epoch", "Accuracy", {}, history.best_epoch};
  Series tl{{}, {}, kBlue, "Training Loss"}, vl{{}, {}, kOrange, "Validation Loss"};
  Series ta{{}, {}, kBlue, "Training Accuracy"}, va{{}, {}, kOrange, "Validation Accuracy"};
  for (const EpochRecord& r : history.epochs) {
    const double x = r.epoch;
    tl.x.push_back(x), tl.y.push_back(r.loss);
    vl.x.push_back(x), vl.y.push_back(r.val_loss);
    ta.x.push_back(x), ta.y.push_back(r.accuracy);
    va.x.push_back(x), va.y.push_back(r.val_accuracy);
  }
  loss.series = {tl, vl};
  acc.series = {ta, va};
  const double half = kHistoryPlotWidth / 2;
  draw_panel(cr, {0, 0, half, kHistoryPlotHeight}, loss);
  draw_panel(cr, {half, 0, kHistoryPlotWidth - half, kHistoryPlotHeight}, acc);
}

}  // namespace

void plot_history_png(const std::string& path, const History& history, const std::string& title_prefix) {
  write_file_atomic(path, render(path, false, kHistoryPlotWidth, kHistoryPlotHeight,
                                 [&](cairo_t* cr) { draw_history(cr, history, title_prefix); }));
}

void plot_history_svg(const std::string& path, const History& history, const std::string& title_prefix) {
  write_file_atomic(path, render(path, true, kHistoryPlotWidth, kHistoryPlotHeight,
                                 [&](cairo_t* cr) { draw_history(cr, history, title_prefix); }));
}

// ---------------------------------------------------------------------------------------------
// Image grid

void image_grid_png(const std::string& path, const std::vector<GrayImage>& images,
                    const std::vector<std::string>& captions, int rows, int cols, const std::string& title,
                    int scale) {
  if (rows < 1 || cols < 1 || scale < 1)
    throw Error(cat(path, ": image grid needs rows, cols, scale >= 1 (got ", rows, ", ", cols, ", ", scale, ")"));
  if (captions.size() != images.size())
    throw Error(cat(path, ": ", images.size(), " images but ", captions.size(), " captions"));
  const int iw = images.empty() ? 28 : images[0].width, ih = images.empty() ? 28 : images[0].height;
  for (const GrayImage& g : images)
    if (g.width != iw || g.height != ih || g.pixels.size() != std::size_t(iw) * std::size_t(ih))
      throw Error(cat(path, ": grid images must all be ", iw, "x", ih));
  constexpr int kMargin = 20, kTop = 60, kBottom = 10, kPadX = 32, kPadY = 50;
  constexpr double kCaptionFont = 18, kGridTitleFont = 21;

  double caption_w = 0;
  {
    Surface probe(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1));
    Context cr(cairo_create(probe.get()));
    for (const std::string& c : captions) caption_w = std::max(caption_w, text_width(cr.get(), c, kCaptionFont));
  }
  const int cell_w = std::max(scale * iw + kPadX, int(std::ceil(caption_w)) + 16), cell_h = scale * ih + kPadY;
  const int width = 2 * kMargin + cols * cell_w, height = kTop + kBottom + rows * cell_h;

  auto draw = [&](cairo_t* cr) {
    text(cr, title, width / 2.0, 20, kGridTitleFont, kBlack, Align::Centre, Anchor::Top, true);
    const std::size_t n = std::min(images.size(), std::size_t(rows) * std::size_t(cols));
    for (std::size_t i = 0; i < n; ++i) {
      const int cx = kMargin + int(i % std::size_t(cols)) * cell_w, cy = kTop + int(i / std::size_t(cols)) * cell_h;
      text(cr, captions[i], cx + cell_w / 2.0, cy + 12, kCaptionFont, kBlack, Align::Centre);
      const int x0 = cx + (cell_w - scale * iw) / 2, y0 = cy + 38;
      for (int y = 0; y < ih; ++y)
        for (int x = 0; x < iw; ++x) {
          const uint8_t v = images[i].pixels[std::size_t(y) * std::size_t(iw) + std::size_t(x)];
          set_colour(cr, {v, v, v});
          cairo_rectangle(cr, x0 + x * scale, y0 + y * scale, scale, scale);  // whole pixels: exact values
          cairo_fill(cr);
        }
    }
  };
  write_file_atomic(path, render(path, false, width, height, draw));
}

void sample_grid_png(const std::string& path, const std::vector<GrayImage>& images, const std::vector<int>& labels,
                     int rows, int cols, const std::string& title, int scale) {
  if (labels.size() != images.size())
    throw Error(cat(path, ": ", images.size(), " images but ", labels.size(), " labels"));
  std::vector<std::string> captions;
  for (int l : labels) captions.push_back("Label: " + std::to_string(l));
  image_grid_png(path, images, captions, rows, cols, title, scale);
}

}  // namespace mnist
