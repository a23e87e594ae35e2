// What fit() records per epoch, as Keras's History does, plus timing and callback events.
#pragma once

#include <string>
#include <vector>

namespace mnist {

struct EpochRecord {
  int epoch = 0;  // 1-based
  double loss = 0, accuracy = 0;          // training (mean over the epoch, dropout on)
  double val_loss = 0, val_accuracy = 0;  // validation (eval mode)
  double lr = 0;                          // learning rate used during this epoch
  double seconds = 0;                     // wall time of train + validation
  std::vector<std::string> events;        // "checkpoint saved", "lr -> 5e-4", "early stop", ...
};

struct History {
  std::vector<EpochRecord> epochs;
  int best_epoch = 0;  // 1-based epoch of the lowest val_loss (the restored weights)
  bool stopped_early = false;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM; a resume checkpoint holds the state
};

}  // namespace mnist
