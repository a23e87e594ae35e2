#include "apps/pipeline/progress_bar.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace mnist {

bool ProgressBar::is_terminal(const std::ostream& out) {
  const char* term = std::getenv("TERM");
  return &out == &std::cout && ::isatty(STDOUT_FILENO) && !(term && std::strcmp(term, "dumb") == 0);
}

void ProgressBar::start(int done, Clock::time_point now) {
  first_ = done;
  start_ = now;
  last_draw_ = now - kMinRedraw;  // the first step is drawn at once
}

std::string ProgressBar::render(int done, int total, int first, double elapsed, const EpochStats& running) {
  constexpr int kWidth = 30;
  const int filled = total > 0 ? int(int64_t(kWidth) * done / total) : kWidth;
  std::string bar(std::size_t(filled), '=');
  if (filled < kWidth) bar += '>' + std::string(std::size_t(kWidth - filled - 1), '.');
  char time[48];
  if (done >= total || done <= first)
    std::snprintf(time, sizeof time, "%.0fs", elapsed);
  else
    std::snprintf(time, sizeof time, "%.0fs - ETA: %.0fs", elapsed, elapsed / (done - first) * (total - done));
  char line[256];
  const int digits = std::snprintf(nullptr, 0, "%d", total);
  std::snprintf(line, sizeof line, "%*d/%d [%s] - %s - loss: %.4f - accuracy: %.4f", digits, done, total, bar.c_str(),
                time, running.loss, running.accuracy);
  return line;
}

void ProgressBar::update(int done, int total, const EpochStats& running, Clock::time_point now) {
  if (!enabled_ || (now - last_draw_ < kMinRedraw && done < total)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  out_ << '\r' << render(done, total, first_, elapsed, running) << "\x1b[K" << std::flush;
  drawn_ = true;
}

void ProgressBar::clear() {
  if (!drawn_) return;
  out_ << "\r\x1b[K" << std::flush;
  drawn_ = false;
}

}  // namespace mnist
