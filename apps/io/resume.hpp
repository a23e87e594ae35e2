// Resume checkpoints: everything a run needs to continue exactly where it stopped, in one
// safetensors file (<out>/resume.safetensors), replaced atomically after every epoch and on
// SIGINT/SIGTERM. Tensors: "params", "adam.m", "adam.v" and, once an epoch improved val_loss,
// "best_params", each the flat padded array of the model's layout (layers/model.hpp). The
// metadata key "resume" holds JSON with the step, epoch, position in the epoch, learning rate,
// the callbacks' state, the history so far and the run's config (the flags that must match on
// resume and the data's fingerprint: apps/pipeline/train.cpp states the rule).
// The random state is the seed alone: dropout masks are a function of (seed, step) and the epoch
// order of (seed, epoch), so restoring the step and epoch restores every future draw.
#pragma once

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "apps/pipeline/history.hpp"
#include "layers/callbacks.hpp"
#include "layers/engine.hpp"

namespace mnist {

struct ResumeState {
  TrainState train;                // params, Adam moments, step
  std::vector<float> best_params;  // the weights EarlyStopping restores; empty before any epoch
  int epoch = 0;                   // 0-based epoch in progress (== epochs done when progress is empty)
  EpochProgress progress;          // position inside that epoch
  double lr = 0;
  EarlyStopping::State early;
  double checkpoint_best = std::numeric_limits<double>::infinity();
  ReduceLROnPlateau::State plateau;
  History history;                        // completed epochs
  std::map<std::string, std::string> config;  // flags that fix the run: hidden, batch, seed, ...
  std::map<std::string, std::string> autotune;  // Engine::autotune_choices(): the tiles and path the run kept
};

// The file's bytes (encode_resume) and their atomic write (save_resume = write_file_atomic of them).
std::string encode_resume(const ParamLayout& layout, const ResumeState& s);
void save_resume(const std::string& path, const ParamLayout& layout, const ResumeState& s);
// Validates tensors against `layout` and the metadata's fields; throws InputError naming `path`.
ResumeState load_resume(const std::string& path, const ParamLayout& layout);
// Only the state's `config` (the flags and data fingerprint that fix its run), for comparing them
// with this run's before the tensors are sized against this run's model: another --hidden, or
// images of another size, is then named as such. Throws InputError naming `path`.
std::map<std::string, std::string> resume_config(const std::string& path);

}  // namespace mnist
