#include "apps/io/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "apps/io/atomic_file.hpp"
#include "apps/io/font.hpp"
#include "runtime/error.hpp"

namespace mnist {

// ---------------------------------------------------------------------------------------------
// Canvas

Canvas::Canvas(int width, int height, Rgb bg) : w_(width), h_(height) {
  if (width < 1 || height < 1) throw Error(cat("Canvas: bad size ", width, "x", height));
  px_.resize(std::size_t(width) * std::size_t(height) * 3);
  for (std::size_t i = 0; i < px_.size(); i += 3) {
    px_[i] = bg.r;
    px_[i + 1] = bg.g;
    px_[i + 2] = bg.b;
  }
}

Rgb Canvas::pixel(int x, int y) const {
  const std::size_t i = (std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3;
  return {px_[i], px_[i + 1], px_[i + 2]};
}

void Canvas::blend(int x, int y, Rgb c, float a) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_ || !(a > 0.0f)) return;
  a = std::min(a, 1.0f);
  uint8_t* p = px_.data() + (std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3;
  const uint8_t src[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k) p[k] = uint8_t(std::lround(p[k] + (src[k] - p[k]) * a));
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb c, float alpha) {
  const int x0 = std::max(x, 0), y0 = std::max(y, 0);
  const int x1 = std::min(x + w, w_), y1 = std::min(y + h, h_);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) blend(xx, yy, c, alpha);
}

void Canvas::stroke_rect(int x, int y, int w, int h, Rgb c, int t) {
  fill_rect(x, y, w, t, c);
  fill_rect(x, y + h - t, w, t, c);
  fill_rect(x, y + t, t, h - 2 * t, c);
  fill_rect(x + w - t, y + t, t, h - 2 * t, c);
}

namespace {
double seg_distance(double px, double py, const Canvas::Point& a, const Canvas::Point& b) {
  const double dx = b.x - a.x, dy = b.y - a.y;
  const double len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((px - a.x) * dx + (py - a.y) * dy) / len2 : 0.0;
  t = std::min(1.0, std::max(0.0, t));
  const double ex = a.x + t * dx - px, ey = a.y + t * dy - py;
  return std::sqrt(ex * ex + ey * ey);
}
}  // namespace

void Canvas::polyline(const std::vector<Point>& pts, Rgb c, double width) {
  if (pts.empty()) return;
  const double r = width / 2;
  double minx = pts[0].x, maxx = minx, miny = pts[0].y, maxy = miny;
  for (const Point& p : pts) {
    minx = std::min(minx, p.x);
    maxx = std::max(maxx, p.x);
    miny = std::min(miny, p.y);
    maxy = std::max(maxy, p.y);
  }
  const int bx0 = std::max(0, int(std::floor(minx - r - 1))), by0 = std::max(0, int(std::floor(miny - r - 1)));
  const int bx1 = std::min(w_, int(std::ceil(maxx + r + 1))), by1 = std::min(h_, int(std::ceil(maxy + r + 1)));
  if (bx0 >= bx1 || by0 >= by1) return;
  const int bw = bx1 - bx0;
  std::vector<float> cov(std::size_t(bw) * std::size_t(by1 - by0), 0.0f);
  const std::size_t nseg = pts.size() == 1 ? 1 : pts.size() - 1;
  for (std::size_t s = 0; s < nseg; ++s) {
    const Point& a = pts[s];
    const Point& b = pts[std::min(s + 1, pts.size() - 1)];
    const int x0 = std::max(bx0, int(std::floor(std::min(a.x, b.x) - r - 1)));
    const int x1 = std::min(bx1, int(std::ceil(std::max(a.x, b.x) + r + 1)));
    const int y0 = std::max(by0, int(std::floor(std::min(a.y, b.y) - r - 1)));
    const int y1 = std::min(by1, int(std::ceil(std::max(a.y, b.y) + r + 1)));
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) {
        const double d = seg_distance(x + 0.5, y + 0.5, a, b);
        const float k = float(std::min(1.0, std::max(0.0, r + 0.5 - d)));
        float& slot = cov[std::size_t(y - by0) * std::size_t(bw) + std::size_t(x - bx0)];
        slot = std::max(slot, k);
      }
  }
  for (int y = by0; y < by1; ++y)
    for (int x = bx0; x < bx1; ++x) blend(x, y, c, cov[std::size_t(y - by0) * std::size_t(bw) + std::size_t(x - bx0)]);
}

void Canvas::fill_circle(double cx, double cy, double r, Rgb c) { polyline({{cx, cy}}, c, 2 * r); }

int Canvas::text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : (font::kAdvance * int(s.size()) - 1) * scale;
}
int Canvas::text_height(int scale) { return font::kGlyphH * scale; }

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale, bool bold) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const int gx = x + int(i) * font::kAdvance * scale;
    for (int r = 0; r < font::kGlyphH; ++r) {
      const uint8_t bits = font::glyph_row(s[i], r);
      for (int col = 0; col < font::kGlyphW; ++col)
        if (bits & (1u << (font::kGlyphW - 1 - col))) {
          fill_rect(gx + col * scale, y + r * scale, scale, scale, c);
          if (bold) fill_rect(gx + col * scale + 1, y + r * scale, scale, scale, c);
        }
    }
  }
}

void Canvas::text_vertical(int x, int y, const std::string& s, Rgb c, int scale) {
  // Unrotated glyph pixel (u, v) (u along the text, v down) goes to (x + v, y + W - 1 - u),
  // W = text_width: the first character ends up at the bottom.
  const int W = text_width(s, scale);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const int gu = int(i) * font::kAdvance * scale;
    for (int r = 0; r < font::kGlyphH; ++r) {
      const uint8_t bits = font::glyph_row(s[i], r);
      for (int col = 0; col < font::kGlyphW; ++col)
        if (bits & (1u << (font::kGlyphW - 1 - col))) {
          const int u = gu + col * scale;
          fill_rect(x + r * scale, y + W - u - scale, scale, scale, c);
        }
    }
  }
}

void Canvas::blit_gray(const GrayImage& img, int x, int y, int scale) {
  for (int iy = 0; iy < img.height; ++iy)
    for (int ix = 0; ix < img.width; ++ix) {
      const uint8_t v = img.pixels[std::size_t(iy) * std::size_t(img.width) + std::size_t(ix)];
      fill_rect(x + ix * scale, y + iy * scale, scale, scale, {v, v, v});
    }
}

std::string Canvas::encode_png() const { return encode_png_rgb(px_.data(), w_, h_); }

// ---------------------------------------------------------------------------------------------
// History figure

namespace {

constexpr Rgb kBlack{0, 0, 0}, kText{38, 38, 38}, kGrid{225, 225, 225}, kSpine{60, 60, 60};
constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kGrey{128, 128, 128}, kLegendEdge{204, 204, 204};

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
  int x, y, w, h;
  bool contains(double px, double py) const { return px >= x && px < x + w && py >= y && py < y + h; }
};

void draw_dashed_vline(Canvas& cv, int x, int y0, int y1, Rgb c) {
  for (int y = y0; y < y1; y += 12) cv.fill_rect(x - 1, y, 2, std::min(7, y1 - y), c);
}

// Legend rows of a panel: one per series, then the best-epoch marker.
struct LegendEntry {
  std::string label;
  Rgb color;
  bool dashed;
};

void draw_panel(Canvas& cv, const Box& area, const Panel& P) {
  constexpr int kTick = 2, kTitle = 3;  // text scales
  const Box plot{area.x + 118, area.y + 58, area.w - 118 - 28, area.h - 58 - 78};

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
  std::vector<Canvas::Point> data_pts;
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
  int label_w = 0;
  for (const LegendEntry& e : entries) label_w = std::max(label_w, Canvas::text_width(e.label, kTick));
  const int row_h = 26, sample_w = 36, m = 12;
  const int lw = 12 + sample_w + 10 + label_w + 14, lh = 10 + row_h * int(entries.size()) + 4;
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
      for (const Canvas::Point& p : data_pts) data += b.contains(X(p.x), Y(p.y));
      if (P.best_epoch > 0) line = X(P.best_epoch) >= b.x && X(P.best_epoch) < b.x + b.w;
      if (data * 1000 + line < best_cost) best_cost = data * 1000 + line, best = b, hidden_data = data;
    }
    return best;
  };
  std::size_t hidden = 0;
  Box legend = place(hidden);
  if (hidden > 0) {
    const double f = double(lh + 2 * m) / plot.h;  // fraction of the height kept free at the top
    yhi = (ymax - f * ylo) / (1 - f);
    legend = place(hidden);
  }

  // Ticks, grid and labels.
  const double ystep = nice_step(yhi - ylo, 7);
  for (double t = std::ceil(ylo / ystep - 1e-9) * ystep; t <= yhi + 1e-12; t += ystep) {
    const int py = int(std::lround(Y(t)));
    if (py < plot.y || py >= plot.y + plot.h) continue;
    cv.fill_rect(plot.x, py, plot.w, 1, kGrid);
    cv.fill_rect(plot.x - 6, py, 6, 1, kSpine);
    const std::string s = tick_label(t, ystep);
    cv.text(plot.x - 12 - Canvas::text_width(s, kTick), py - 7, s, kText, kTick);
  }
  // Integer epochs only, within the epochs shown.
  const double xstep = std::max(1.0, std::round(nice_step(xhi - xlo, 10)));
  for (double t = std::ceil(xmin / xstep - 1e-9) * xstep; t <= xmax + 1e-9; t += xstep) {
    const int px = int(std::lround(X(t)));
    cv.fill_rect(px, plot.y, 1, plot.h, kGrid);
    cv.fill_rect(px, plot.y + plot.h, 1, 6, kSpine);
    const std::string s = tick_label(t, 1.0);
    cv.text(px - Canvas::text_width(s, kTick) / 2, plot.y + plot.h + 14, s, kText, kTick);
  }
  cv.stroke_rect(plot.x - 1, plot.y - 1, plot.w + 2, plot.h + 2, kSpine, 1);

  // Axis labels and title.
  cv.text(plot.x + plot.w / 2 - Canvas::text_width(P.xlabel, kTick) / 2, plot.y + plot.h + 46, P.xlabel, kBlack, kTick);
  const int ylab_len = Canvas::text_width(P.ylabel, kTick);
  cv.text_vertical(area.x + 14, plot.y + plot.h / 2 - ylab_len / 2, P.ylabel, kBlack, kTick);
  cv.text(plot.x + plot.w / 2 - Canvas::text_width(P.title, kTitle) / 2, area.y + 18, P.title, kBlack, kTitle, true);

  // Best-epoch marker, then the curves (split at non-finite values) with small markers.
  if (P.best_epoch > 0) draw_dashed_vline(cv, int(std::lround(X(P.best_epoch))), plot.y, plot.y + plot.h, kGrey);
  for (const Series& s : P.series) {
    std::vector<Canvas::Point> run;
    for (std::size_t i = 0; i <= s.x.size(); ++i) {
      if (i == s.x.size() || !std::isfinite(s.y[i])) {
        cv.polyline(run, s.color, 2.5);
        run.clear();
        continue;
      }
      run.push_back({X(s.x[i]), Y(s.y[i])});
    }
    if (s.x.size() <= 30)  // markers only while they stay apart
      for (std::size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.y[i])) cv.fill_circle(X(s.x[i]), Y(s.y[i]), 3.5, s.color);
  }

  // Legend box.
  cv.fill_rect(legend.x, legend.y, legend.w, legend.h, {255, 255, 255}, 0.85f);
  cv.stroke_rect(legend.x, legend.y, legend.w, legend.h, kLegendEdge, 1);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const int cy = legend.y + 10 + row_h * int(i) + 7;
    const int sx = legend.x + 12;
    if (entries[i].dashed) {
      for (int x = sx; x < sx + sample_w; x += 12) cv.fill_rect(x, cy - 1, std::min(7, sx + sample_w - x), 2, entries[i].color);
    } else {
      cv.line(sx, cy, sx + sample_w, cy, entries[i].color, 2.5);
    }
    cv.text(sx + sample_w + 10, cy - 7, entries[i].label, kText, kTick);
  }
}

}  // namespace

void plot_history_png(const std::string& path, const History& history, const std::string& title_prefix) {
  Canvas cv(kHistoryPlotWidth, kHistoryPlotHeight);
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
  const int half = kHistoryPlotWidth / 2;
  draw_panel(cv, {0, 0, half, kHistoryPlotHeight}, loss);
  draw_panel(cv, {half, 0, kHistoryPlotWidth - half, kHistoryPlotHeight}, acc);
  write_file_atomic(path, cv.encode_png());
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
  constexpr int kMargin = 20, kTop = 60, kBottom = 10, kPadX = 32, kPadY = 50, kCaption = 2;
  int caption_w = 0;
  for (const std::string& c : captions) caption_w = std::max(caption_w, Canvas::text_width(c, kCaption));
  const int cell_w = std::max(scale * iw + kPadX, caption_w + 16), cell_h = scale * ih + kPadY;
  Canvas cv(2 * kMargin + cols * cell_w, kTop + kBottom + rows * cell_h);
  cv.text(cv.width() / 2 - Canvas::text_width(title, 3) / 2, 20, title, kBlack, 3, true);
  const std::size_t n = std::min(images.size(), std::size_t(rows) * std::size_t(cols));
  for (std::size_t i = 0; i < n; ++i) {
    const int cx = kMargin + int(i % std::size_t(cols)) * cell_w, cy = kTop + int(i / std::size_t(cols)) * cell_h;
    const std::string& cap = captions[i];
    cv.text(cx + cell_w / 2 - Canvas::text_width(cap, kCaption) / 2, cy + 12, cap, kBlack, kCaption);
    cv.blit_gray(images[i], cx + (cell_w - scale * iw) / 2, cy + 38, scale);
  }
  write_file_atomic(path, cv.encode_png());
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
