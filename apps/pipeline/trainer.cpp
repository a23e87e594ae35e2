#include "apps/pipeline/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>

#include "apps/io/checkpoint.hpp"
#include "layers/callbacks.hpp"

namespace mnist {

std::string progress_line(const EpochRecord& r, int epochs, int steps) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "Epoch %d/%d - %d/%d - %.2fs - loss: %.4f - accuracy: %.4f - val_loss: %.4f - val_accuracy: %.4f"
                " - lr: %.4e",
                r.epoch, epochs, steps, steps, r.seconds, r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.lr);
  return buf;
}

History fit(Engine& engine, int train, int val, const ModelSpec& spec, const FitOptions& opt, std::ostream& log,
            const EpochHook& hook) {
  using clock = std::chrono::steady_clock;
  EarlyStopping early(opt.patience);
  ModelCheckpoint checkpoint;
  ReduceLROnPlateau plateau(opt.lr_factor, opt.lr_patience, opt.min_lr);
  History h;
  std::vector<float> best_params;
  double lr = opt.lr;
  char line[256];
  for (int e = 0; e < opt.epochs; ++e) {
    EpochRecord r;
    r.epoch = e + 1;
    r.lr = lr;
    const auto t0 = clock::now();
    const EpochStats tr = engine.train_epoch(train, e, float(lr));
    const EpochStats va = engine.evaluate(val);
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    r.loss = tr.loss;
    r.accuracy = tr.accuracy;
    r.val_loss = va.loss;
    r.val_accuracy = va.accuracy;
    if (!std::isfinite(r.loss) || !std::isfinite(r.val_loss)) {
      h.epochs.push_back(r);
      throw DivergedError(cat("training diverged at epoch ", r.epoch, ": loss ", r.loss, ", val_loss ", r.val_loss,
                              " is not finite; stopping (lower --lr?). The best checkpoint",
                              opt.checkpoint.empty() ? "" : " " + opt.checkpoint, " was left untouched"));
    }

    if (early.update(e, r.val_loss)) {
      engine.get_params(best_params);
      h.best_epoch = r.epoch;
    }
    const double prev_best = checkpoint.best();
    if (checkpoint.update(r.val_loss) && !opt.checkpoint.empty()) {
      save_weights(opt.checkpoint, spec, engine.layout(), best_params,
                   {{"epoch", std::to_string(r.epoch)}, {"val_loss", cat(r.val_loss)}});
      if (std::isinf(prev_best))
        std::snprintf(line, sizeof line, "Epoch %d: val_loss improved from inf to %.5f, saving model to %s", r.epoch,
                      r.val_loss, opt.checkpoint.c_str());
      else
        std::snprintf(line, sizeof line, "Epoch %d: val_loss improved from %.5f to %.5f, saving model to %s",
                      r.epoch, prev_best, r.val_loss, opt.checkpoint.c_str());
      r.events.push_back(line);
    } else if (!opt.checkpoint.empty()) {
      std::snprintf(line, sizeof line, "Epoch %d: val_loss did not improve from %.5f", r.epoch, checkpoint.best());
      r.events.push_back(line);
    }
    const double new_lr = plateau.update(r.val_loss, lr);
    if (new_lr != lr) {
      std::snprintf(line, sizeof line, "Epoch %d: ReduceLROnPlateau reducing learning rate to %.4e.", r.epoch, new_lr);
      r.events.push_back(line);
      lr = new_lr;
    }
    if (early.should_stop()) {
      std::snprintf(line, sizeof line, "Epoch %d: early stopping", r.epoch);
      r.events.push_back(line);
      h.stopped_early = true;
    }
    h.epochs.push_back(r);
    log << progress_line(r, opt.epochs, opt.steps_per_epoch) << "\n";
    for (const auto& ev : r.events) log << ev << "\n";
    log.flush();
    if (hook) hook(h.epochs.back(), engine);
    if (h.stopped_early) break;
  }
  if (!best_params.empty()) {
    engine.set_params(best_params);
    log << "Restoring model weights from the end of the best epoch: " << h.best_epoch << ".\n";
  }
  return h;
}

}  // namespace mnist
