#include "apps/pipeline/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <ostream>

#include "apps/io/background_writer.hpp"
#include "apps/io/checkpoint.hpp"
#include "apps/pipeline/progress_bar.hpp"
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
            const EpochHook& hook, const FitControl& ctl) {
  using clock = std::chrono::steady_clock;
  EarlyStopping early(opt.patience);
  ModelCheckpoint checkpoint;
  ReduceLROnPlateau plateau(opt.lr_factor, opt.lr_patience, opt.min_lr);
  History h;
  std::vector<float> best_params;
  double lr = opt.lr;
  int first_epoch = 0;
  EpochProgress progress;
  if (const ResumeState* rs = ctl.resume_from) {
    engine.set_state(rs->train);
    best_params = rs->best_params;
    lr = rs->lr;
    early.restore(rs->early);
    checkpoint.restore(rs->checkpoint_best);
    plateau.restore(rs->plateau);
    h = rs->history;
    h.stopped_early = rs->early.stop;
    first_epoch = rs->epoch;
    progress = rs->progress;
    try {
      engine.set_autotune_choices(rs->autotune);  // the interrupted run's tiles and path: the same bits
    } catch (const InputError& e) {
      throw InputError(cat("--resume: ", ctl.resume_path, ": ", e.what()));
    }
    log << "Resuming at epoch " << first_epoch + 1 << ", batch " << progress.next_batch << " (step " << rs->train.step
        << ", lr " << lr << ")\n";
  }

  // The files go to the disk on the writer's thread. What they hold is copied here (device to host,
  // then into the job); the serialisation and the durable write happen there.
  std::unique_ptr<BackgroundWriter> own_writer;
  if (!ctl.writer) own_writer = std::make_unique<BackgroundWriter>();
  BackgroundWriter& writer = ctl.writer ? *ctl.writer : *own_writer;
  const ParamLayout layout = engine.layout();

  // The state after the last completed step, as a resume checkpoint job (appended to `jobs`).
  auto resume_state_job = [&](int epoch, const EpochProgress& p, std::vector<BackgroundWriter::Job>& jobs) {
    if (ctl.resume_path.empty()) return;
    ResumeState s;
    engine.get_state(s.train);
    s.best_params = best_params;
    s.epoch = epoch;
    s.progress = p;
    s.lr = lr;
    s.early = early.state();
    s.checkpoint_best = checkpoint.best();
    s.plateau = plateau.state();
    s.history = h;
    s.config = ctl.config;
    s.autotune = engine.autotune_choices();
    jobs.push_back({ctl.resume_path, [layout, s = std::move(s)] { return encode_resume(layout, s); }});
  };

  ProgressBar bar(log, opt.progress_bar);
  char line[256];
  for (int e = first_epoch; e < opt.epochs && !h.stopped_early; ++e) {
    EpochRecord r;
    r.epoch = e + 1;
    r.lr = lr;
    const auto t0 = clock::now();
    bar.start(progress.next_batch);
    if (bar.enabled())
      progress.on_steps = [&bar](int done, int total, const EpochStats& running) { bar.update(done, total, running); };
    engine.queue_evaluation(val);  // (the CUDA engine runs it behind the epoch's last step)
    const bool complete = engine.train_steps(train, e, float(lr), progress, ctl.interrupt);
    bar.clear();
    if (!complete) {
      std::vector<BackgroundWriter::Job> jobs;
      resume_state_job(e, progress, jobs);
      writer.submit(std::move(jobs));
      writer.flush();  // the message below says the state is saved: it is, from here on
      h.interrupted = true;
      log << "Interrupted in epoch " << e + 1 << " after batch " << progress.next_batch << "; state saved to "
          << (ctl.resume_path.empty() ? std::string("(nowhere: no --out)") : ctl.resume_path)
          << ": continue with --resume\n";
      return h;
    }
    const EpochStats tr = progress.stats();
    progress = EpochProgress{};
    const EpochStats va = engine.evaluate(val);
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    r.loss = tr.loss;
    r.accuracy = tr.accuracy;
    r.val_loss = va.loss;
    r.val_accuracy = va.accuracy;
    if (!std::isfinite(r.loss) || !std::isfinite(r.val_loss)) {
      h.epochs.push_back(r);
      writer.flush();  // the previous epochs' files are complete (or their write error is thrown)
      throw DivergedError(cat("training diverged at epoch ", r.epoch, ": loss ", r.loss, ", val_loss ", r.val_loss,
                              " is not finite; stopping (lower --lr?). The best checkpoint",
                              opt.checkpoint.empty() ? "" : " " + opt.checkpoint, " was left untouched"));
    }

    if (early.update(e, r.val_loss)) {
      engine.get_params(best_params);
      h.best_epoch = r.epoch;
    }
    // This epoch's files, queued together after the hook's: the checkpoint before the resume state
    // that names it as the best (BackgroundWriter keeps that order, coalescing included).
    std::vector<BackgroundWriter::Job> jobs;
    const double prev_best = checkpoint.best();
    if (checkpoint.update(r.val_loss) && !opt.checkpoint.empty()) {
      std::map<std::string, std::string> extra{{"epoch", std::to_string(r.epoch)}, {"val_loss", cat(r.val_loss)}};
      jobs.push_back({opt.checkpoint, [spec, layout, best = best_params, extra = std::move(extra)] {
                        return encode_weights(spec, layout, best, extra);
                      }});
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
    if (!opt.quiet) {
      log << progress_line(r, opt.epochs, opt.steps_per_epoch) << "\n";
      for (const auto& ev : r.events) log << ev << "\n";
      log.flush();
    }
    if (hook) hook(h.epochs.back(), engine);
    resume_state_job(e + 1, progress, jobs);
    writer.submit(std::move(jobs));
  }
  writer.flush();
  if (!best_params.empty()) {
    engine.set_params(best_params);
    if (!opt.quiet) log << "Restoring model weights from the end of the best epoch: " << h.best_epoch << ".\n";
  }
  return h;
}

}  // namespace mnist
