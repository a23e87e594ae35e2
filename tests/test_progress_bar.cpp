// The live progress line: its text, its redraw limit, and that it erases itself.
#include <doctest/doctest.h>

#include <sstream>

#include "apps/pipeline/progress_bar.hpp"

using namespace mnist;
using Clock = ProgressBar::Clock;

TEST_CASE("ProgressBar::render: steps, a 30-column bar, elapsed, ETA from the pace so far, running metrics") {
  const EpochStats running{0.34125, 0.89714, 1000};
  // 120 of 375 steps in 2 s from step 0: 255 steps left at 60 steps/s = 4.25 s, shown rounded.
  CHECK(ProgressBar::render(120, 375, 0, 2.0, running) ==
        "120/375 [=========>....................] - 2s - ETA: 4s - loss: 0.3412 - accuracy: 0.8971");
  // A resumed epoch: the pace counts only the steps run since it started (300 -> 360 in 3 s).
  CHECK(ProgressBar::render(360, 375, 300, 3.0, running).find("ETA: 1s") != std::string::npos);
  // Done: a full bar, no ETA; the step count is right-aligned to the total's width.
  CHECK(ProgressBar::render(375, 375, 0, 5.0, running) ==
        "375/375 [==============================] - 5s - loss: 0.3412 - accuracy: 0.8971");
  CHECK(ProgressBar::render(7, 375, 0, 0.1, running).rfind("  7/375 [>", 0) == 0);
}

TEST_CASE("ProgressBar::update draws at most every 100 ms (and always the last step); clear erases the line") {
  std::ostringstream out;
  ProgressBar bar(out, true);
  const Clock::time_point t0{};
  bar.start(0, t0);
  const EpochStats r{1.0, 0.5, 10};
  int drawn = 0;
  for (int step = 1; step <= 100; ++step) {  // one step every 5 ms: 0.5 s in all
    const std::size_t before = out.str().size();
    bar.update(step, 100, r, t0 + std::chrono::milliseconds(5 * step));
    drawn += out.str().size() != before;
  }
  CHECK(drawn == 6);  // at 5, 105, 205, 305, 405 ms and the last step
  CHECK(out.str().rfind("\r100/100 [", std::string::npos) != std::string::npos);
  bar.clear();
  CHECK(out.str().substr(out.str().size() - 4) == "\r\x1b[K");
  bar.clear();  // nothing drawn since: nothing to erase
  CHECK(out.str().substr(out.str().size() - 8, 4) != "\r\x1b[K");

  std::ostringstream off;
  ProgressBar disabled(off, false);
  disabled.start(0, t0);
  disabled.update(100, 100, r, t0 + std::chrono::seconds(1));
  disabled.clear();
  CHECK(off.str().empty());
  CHECK_FALSE(ProgressBar::is_terminal(off));  // only the process's stdout can be a terminal
}
