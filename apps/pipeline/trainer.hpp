// fit(): the tutorial's model.fit with its callbacks (EarlyStopping with best-weight restore,
// ModelCheckpoint on val_loss, ReduceLROnPlateau), one engine epoch at a time, with resume
// checkpoints after every epoch and a clean stop between two steps on request. The per-epoch files
// are written by a BackgroundWriter (apps/io/background_writer.hpp), so the next epoch trains
// while they reach the disk; fit() waits for them before it returns or throws.
#pragma once

#include <atomic>
#include <functional>
#include <iosfwd>
#include <map>
#include <string>

#include "apps/io/resume.hpp"
#include "apps/pipeline/history.hpp"
#include "layers/engine.hpp"
#include "runtime/error.hpp"

namespace mnist {

class BackgroundWriter;

struct FitOptions {
  int epochs = 20;
  double lr = 1e-3;
  int patience = 5;          // EarlyStopping(monitor='val_loss', restore_best_weights=True)
  double lr_factor = 0.5;    // ReduceLROnPlateau(factor, patience, min_lr)
  int lr_patience = 2;
  double min_lr = 1e-7;
  std::string checkpoint;    // ModelCheckpoint(save_best_only=True) path; empty: none
  int steps_per_epoch = 0;   // for the progress line only
  bool quiet = false;        // no per-epoch lines
  bool progress_bar = false; // a live progress line within each epoch (a terminal only: progress_bar.hpp)
};

// Resume and interruption. All optional.
struct FitControl {
  const std::atomic<bool>* interrupt = nullptr;  // set by SIGINT/SIGTERM: stop after the current step
  std::string resume_path;                       // where resume checkpoints are written; empty: none
  std::map<std::string, std::string> config;     // recorded in resume checkpoints
  const ResumeState* resume_from = nullptr;      // continue that run instead of starting afresh
  // Where the checkpoint and resume files are queued (the hook may queue its files there too);
  // null: fit() uses a writer of its own. fit() flushes it before it returns or throws.
  BackgroundWriter* writer = nullptr;
};

// Called after every epoch's callbacks, with the record and the engine (weights of that epoch).
using EpochHook = std::function<void(const EpochRecord&, Engine&)>;

// Thrown when the training or validation loss turns NaN/Inf; the best checkpoint on disk is left
// as it was (it is only ever replaced atomically by a finite, better model).
class DivergedError : public Error {
 public:
  using Error::Error;
};

// Trains until `epochs`, early stopping or an interrupt. On a normal end, restores the weights
// of the best epoch. On an interrupt, writes the resume checkpoint and returns with
// history.interrupted set (weights as they are). Progress lines go to `log` (Keras-like).
// Every file is on disk when fit() returns or throws DivergedError; a failed write throws its
// Error (naming the file) at the next epoch end or before fit() returns.
History fit(Engine& engine, int train, int val, const ModelSpec& spec, const FitOptions& opt, std::ostream& log,
            const EpochHook& hook = {}, const FitControl& ctl = {});

// "Epoch 3/20 - 375/375 - 0.95s - loss: ... - lr: 1.0000e-03"
std::string progress_line(const EpochRecord& r, int epochs, int steps);

}  // namespace mnist
