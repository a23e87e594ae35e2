// The live progress line Keras draws during an epoch, on a terminal only:
//   " 120/375 [=========>....................] - 2s - ETA: 4s - loss: 0.3412 - accuracy: 0.8971"
// redrawn in place (carriage return, erase to end of line) at most every 100 ms, and erased before
// the epoch's summary line is printed, so that what stays on the screen is exactly today's lines.
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>

#include "layers/engine.hpp"

namespace mnist {

class ProgressBar {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kMinRedraw{100};

  // True when `out` is the process's stdout and that is a terminal (not TERM=dumb).
  static bool is_terminal(const std::ostream& out);

  ProgressBar(std::ostream& out, bool enabled) : out_(out), enabled_(enabled) {}
  ~ProgressBar() { clear(); }
  bool enabled() const { return enabled_; }

  // A new epoch starts (its clock starts now) at batch `done` of `total`.
  void start(int done, Clock::time_point now = Clock::now());
  // Steps done so far; draws when kMinRedraw has passed since the last drawing, or at the end.
  void update(int done, int total, const EpochStats& running, Clock::time_point now = Clock::now());
  // Erases the line if one is drawn.
  void clear();

  // The line for `done` of `total` steps after `elapsed` seconds (ETA from the steps since `first`).
  static std::string render(int done, int total, int first, double elapsed, const EpochStats& running);

 private:
  std::ostream& out_;
  bool enabled_;
  bool drawn_ = false;
  int first_ = 0;
  Clock::time_point start_{}, last_draw_{};
};

}  // namespace mnist
