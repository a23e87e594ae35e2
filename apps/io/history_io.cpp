#include "apps/io/history_io.hpp"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "apps/io/atomic_file.hpp"

namespace mnist {

namespace {

using Json = nlohmann::ordered_json;  // keys in insertion order, as documented

// Shortest round-trip decimal form; Python's spelling of the non-finite values.
std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// nlohmann would write NaN/inf as null anyway; being explicit keeps the contract visible.
Json jnum(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

Json epoch_json(const EpochRecord& r) {
  Json j = Json::object();
  j["epoch"] = r.epoch;
  j["loss"] = jnum(r.loss);
  j["accuracy"] = jnum(r.accuracy);
  j["val_loss"] = jnum(r.val_loss);
  j["val_accuracy"] = jnum(r.val_accuracy);
  j["lr"] = jnum(r.lr);
  j["seconds"] = jnum(r.seconds);
  j["events"] = r.events;
  return j;
}

}  // namespace

std::string history_csv(const History& h) {
  std::string s = "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n";
  for (const EpochRecord& r : h.epochs) {
    s += std::to_string(r.epoch) + "," + num(r.loss) + "," + num(r.accuracy) + "," + num(r.val_loss) + "," +
         num(r.val_accuracy) + "," + num(r.lr) + "," + num(r.seconds) + "\n";
  }
  return s;
}

std::string history_jsonl(const History& h) {
  std::string s;
  for (const EpochRecord& r : h.epochs) s += epoch_json(r).dump() + "\n";
  return s;
}

void write_history_csv(const std::string& path, const History& h) { write_file_atomic(path, history_csv(h)); }
void write_history_jsonl(const std::string& path, const History& h) { write_file_atomic(path, history_jsonl(h)); }

std::string report_json(const ReportInfo& info) {
  Json j = Json::object();
  j["model_summary"] = info.model_summary;
  j["params"] = info.params;
  j["hidden"] = info.hidden;
  j["dropout"] = jnum(info.dropout);
  j["device"] = info.device;
  j["backend"] = info.backend;
  j["kernels"] = info.kernels;
  j["precision"] = info.precision;
  j["dataset"] = info.dataset;
  j["seed"] = info.seed;
  j["flags"] = info.flags;
  j["epochs_run"] = info.history.epochs.size();
  j["best_epoch"] = info.history.best_epoch;
  j["stopped_early"] = info.history.stopped_early;
  Json hist = Json::array();
  double secs = 0;
  for (const EpochRecord& r : info.history.epochs) {
    hist.push_back(epoch_json(r));
    secs += r.seconds;
  }
  j["history"] = std::move(hist);
  j["test_loss"] = jnum(info.test_loss);
  j["test_accuracy"] = jnum(info.test_accuracy);
  j["total_seconds"] = jnum(info.total_seconds);
  Json phases = Json::object();
  for (const auto& [name, s] : info.phase_seconds) phases[name] = jnum(s);
  j["phase_seconds"] = phases;
  j["autotune"] = info.autotune;
  j["seconds_per_epoch"] = jnum(info.history.epochs.empty() ? 0.0 : secs / double(info.history.epochs.size()));
  Json preds = Json::array();
  for (const SamplePrediction& p : info.sample_predictions)
    preds.push_back({{"index", p.index},
                     {"true_label", p.true_label},
                     {"predicted", p.predicted},
                     {"confidence", jnum(p.confidence)}});
  j["sample_predictions"] = std::move(preds);
  return j.dump(2) + "\n";
}

void write_report_json(const std::string& path, const ReportInfo& info) {
  write_file_atomic(path, report_json(info));
}

}  // namespace mnist
