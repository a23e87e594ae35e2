// The Keras callbacks of the tutorial as pure state machines over the per-epoch monitored value
// (val_loss), so that their logic is tested on synthetic sequences and shared by every backend.
// The trainer acts on what they decide (save a checkpoint, change the LR, stop, restore).
#pragma once

#include <limits>

namespace mnist {

// keras.callbacks.EarlyStopping(monitor='val_loss', patience, min_delta, restore_best_weights).
class EarlyStopping {
 public:
  explicit EarlyStopping(int patience, double min_delta = 0.0) : patience_(patience), min_delta_(min_delta) {}
  // Returns true when `value` is a new best (the caller snapshots the weights then).
  bool update(int epoch, double value) {
    if (value < best_ - min_delta_) {
      best_ = value;
      best_epoch_ = epoch;
      wait_ = 0;
      return true;
    }
    if (++wait_ >= patience_) stop_ = true;
    return false;
  }
  bool should_stop() const { return stop_; }
  double best() const { return best_; }
  int best_epoch() const { return best_epoch_; }  // 0-based; -1 before the first update
  int wait() const { return wait_; }

  // What a resume checkpoint keeps, so a resumed run decides exactly as the uninterrupted one.
  struct State {
    double best = std::numeric_limits<double>::infinity();
    int best_epoch = -1, wait = 0;
    bool stop = false;
  };
  State state() const { return {best_, best_epoch_, wait_, stop_}; }
  void restore(const State& s) {
    best_ = s.best;
    best_epoch_ = s.best_epoch;
    wait_ = s.wait;
    stop_ = s.stop;
  }

 private:
  int patience_;
  double min_delta_;
  double best_ = std::numeric_limits<double>::infinity();
  int best_epoch_ = -1;
  int wait_ = 0;
  bool stop_ = false;
};

// keras.callbacks.ModelCheckpoint(monitor='val_loss', save_best_only=True).
class ModelCheckpoint {
 public:
  // Returns true when the model should be saved now.
  bool update(double value) {
    if (value < best_) {
      best_ = value;
      return true;
    }
    return false;
  }
  double best() const { return best_; }
  void restore(double best) { best_ = best; }

 private:
  double best_ = std::numeric_limits<double>::infinity();
};

// keras.callbacks.ReduceLROnPlateau(monitor='val_loss', factor, patience, min_lr), with Keras's
// defaults min_delta=1e-4 (an improvement must beat best - min_delta) and cooldown=0.
class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(double factor, int patience, double min_lr, double min_delta = 1e-4, int cooldown = 0)
      : factor_(factor), patience_(patience), min_lr_(min_lr), min_delta_(min_delta), cooldown_(cooldown) {}
  // Returns the learning rate for the next epoch (equal to `lr` when unchanged).
  double update(double value, double lr) {
    if (cooldown_counter_ > 0) --cooldown_counter_;
    if (value < best_ - min_delta_) {
      best_ = value;
      wait_ = 0;
      return lr;
    }
    if (cooldown_counter_ > 0) return lr;
    if (++wait_ >= patience_) {
      wait_ = 0;
      if (lr > min_lr_) {
        cooldown_counter_ = cooldown_;
        return lr * factor_ > min_lr_ ? lr * factor_ : min_lr_;
      }
    }
    return lr;
  }

  struct State {
    double best = std::numeric_limits<double>::infinity();
    int wait = 0, cooldown_counter = 0;
  };
  State state() const { return {best_, wait_, cooldown_counter_}; }
  void restore(const State& s) {
    best_ = s.best;
    wait_ = s.wait;
    cooldown_counter_ = s.cooldown_counter;
  }

 private:
  double factor_;
  int patience_;
  double min_lr_, min_delta_;
  int cooldown_;
  double best_ = std::numeric_limits<double>::infinity();
  int wait_ = 0, cooldown_counter_ = 0;
};

}  // namespace mnist
