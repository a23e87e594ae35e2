#include "apps/io/resume.hpp"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "apps/io/atomic_file.hpp"
#include "apps/io/safetensors.hpp"
#include "runtime/error.hpp"

namespace mnist {
namespace {

using nlohmann::json;

// JSON has no infinity: the callbacks' "best" starts at +inf, stored as null.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double num(const json& j) { return j.is_null() ? std::numeric_limits<double>::infinity() : j.get<double>(); }

}  // namespace

std::string encode_resume(const ParamLayout& layout, const ResumeState& s) {
  const int64_t n = int64_t(layout.storage);
  std::vector<TensorF32> t{{"params", {n}, s.train.params}, {"adam.m", {n}, s.train.m}, {"adam.v", {n}, s.train.v}};
  if (!s.best_params.empty()) t.push_back({"best_params", {n}, s.best_params});
  json hist = json::array();
  for (const EpochRecord& r : s.history.epochs)
    hist.push_back({{"epoch", r.epoch}, {"loss", r.loss}, {"accuracy", r.accuracy}, {"val_loss", r.val_loss},
                    {"val_accuracy", r.val_accuracy}, {"lr", r.lr}, {"seconds", r.seconds}, {"events", r.events}});
  json meta = {{"version", 1},
               {"step", s.train.step},
               {"epoch", s.epoch},
               {"next_batch", s.progress.next_batch},
               {"loss_sum", s.progress.loss_sum},
               {"correct", s.progress.correct},
               {"examples", s.progress.examples},
               {"lr", s.lr},
               {"early", {{"best", num(s.early.best)}, {"best_epoch", s.early.best_epoch}, {"wait", s.early.wait},
                          {"stop", s.early.stop}}},
               {"checkpoint_best", num(s.checkpoint_best)},
               {"plateau", {{"best", num(s.plateau.best)}, {"wait", s.plateau.wait},
                            {"cooldown_counter", s.plateau.cooldown_counter}}},
               {"history", hist},
               {"best_epoch", s.history.best_epoch},
               {"config", s.config},
               {"autotune", s.autotune}};
  return encode_safetensors(t, {{"format", "mnist_cuda-resume"}, {"resume", meta.dump()}});
}

void save_resume(const std::string& path, const ParamLayout& layout, const ResumeState& s) {
  write_file_atomic(path, encode_resume(layout, s));
}

std::map<std::string, std::string> resume_config(const std::string& path) {
  std::map<std::string, std::string> md;
  decode_safetensors(read_file(path), path, &md);
  if (!md.count("resume")) throw InputError(cat(path, ": not a resume checkpoint (no \"resume\" metadata)"));
  try {
    return json::parse(md["resume"]).at("config").get<std::map<std::string, std::string>>();
  } catch (const json::exception& ex) {
    throw InputError(cat(path, ": bad resume metadata: ", ex.what()));
  }
}

ResumeState load_resume(const std::string& path, const ParamLayout& layout) {
  std::map<std::string, std::string> md;
  const std::vector<TensorF32> tensors = decode_safetensors(read_file(path), path, &md);
  if (!md.count("resume")) throw InputError(cat(path, ": not a resume checkpoint (no \"resume\" metadata)"));
  ResumeState s;
  auto take = [&](const std::string& name, std::vector<float>& dst, bool required) {
    for (const TensorF32& t : tensors)
      if (t.name == name) {
        if (t.data.size() != layout.storage)
          throw InputError(cat(path, ": '", name, "' has ", t.data.size(), " values, the model needs ", layout.storage,
                               " (another architecture?)"));
        dst = t.data;
        return;
      }
    if (required) throw InputError(cat(path, ": missing tensor '", name, "'"));
  };
  take("params", s.train.params, true);
  take("adam.m", s.train.m, true);
  take("adam.v", s.train.v, true);
  take("best_params", s.best_params, false);
  try {
    const json m = json::parse(md["resume"]);
    s.train.step = m.at("step").get<int64_t>();
    s.epoch = m.at("epoch").get<int>();
    s.progress.next_batch = m.at("next_batch").get<int>();
    s.progress.loss_sum = m.at("loss_sum").get<double>();
    s.progress.correct = m.at("correct").get<int64_t>();
    s.progress.examples = m.at("examples").get<int64_t>();
    s.lr = m.at("lr").get<double>();
    const json& e = m.at("early");
    s.early = {num(e.at("best")), e.at("best_epoch").get<int>(), e.at("wait").get<int>(), e.at("stop").get<bool>()};
    s.checkpoint_best = num(m.at("checkpoint_best"));
    const json& p = m.at("plateau");
    s.plateau = {num(p.at("best")), p.at("wait").get<int>(), p.at("cooldown_counter").get<int>()};
    for (const json& r : m.at("history")) {
      EpochRecord rec;
      rec.epoch = r.at("epoch").get<int>();
      rec.loss = r.at("loss").get<double>();
      rec.accuracy = r.at("accuracy").get<double>();
      rec.val_loss = r.at("val_loss").get<double>();
      rec.val_accuracy = r.at("val_accuracy").get<double>();
      rec.lr = r.at("lr").get<double>();
      rec.seconds = r.at("seconds").get<double>();
      rec.events = r.at("events").get<std::vector<std::string>>();
      s.history.epochs.push_back(rec);
    }
    s.history.best_epoch = m.at("best_epoch").get<int>();
    s.config = m.at("config").get<std::map<std::string, std::string>>();
    if (m.contains("autotune")) s.autotune = m.at("autotune").get<std::map<std::string, std::string>>();
  } catch (const json::exception& ex) {
    throw InputError(cat(path, ": bad resume metadata: ", ex.what()));
  }
  if (s.train.step < 0 || s.epoch < 0 || s.progress.next_batch < 0 || !(s.lr > 0))
    throw InputError(cat(path, ": resume metadata out of range (step ", s.train.step, ", epoch ", s.epoch, ", lr ", s.lr,
                         ")"));
  return s;
}

}  // namespace mnist
