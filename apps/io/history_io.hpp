// The training record as files: history.csv (Keras CSVLogger-like), history.jsonl (one JSON
// object per epoch) and report.json (the run's summary). Numbers are written with the shortest
// decimal form that reads back to the same double (full precision). Epochs are 1-based, as
// EpochRecord::epoch and the training log print them (Keras's CSVLogger would write 0-based).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "apps/pipeline/history.hpp"

namespace mnist {

// Header "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds", then one line per epoch; "\n"
// line ends; non-finite values as "nan", "inf", "-inf" (as Python's csv module writes them).
std::string history_csv(const History& h);
// One line per epoch: {"epoch":1,"loss":..,"accuracy":..,"val_loss":..,"val_accuracy":..,
// "lr":..,"seconds":..,"events":[..]}; non-finite numbers as null.
std::string history_jsonl(const History& h);
// The two above through write_file_atomic (throw Error naming the path).
void write_history_csv(const std::string& path, const History& h);
void write_history_jsonl(const std::string& path, const History& h);

struct SamplePrediction {
  int index = 0;        // position in the test set
  int true_label = 0;
  int predicted = 0;
  double confidence = 0;  // softmax probability of `predicted`
};

// Everything report.json says about a run. Fields are filled by the trainer; nothing is computed
// here except seconds_per_epoch.
struct ReportInfo {
  std::string model_summary;  // summary_table() text
  std::size_t params = 0;
  std::vector<int> hidden;
  double dropout = 0;
  std::string device;   // e.g. "NVIDIA H100 80GB HBM3" or "CPU"
  std::string backend;  // e.g. "cuda", "cpu"
  std::string kernels;    // the training step's path: "cpu", "cuda fused", "cuda graph", "cuda graph+head"
  std::string precision;  // GEMM inputs: "fp32", "tf32", "bf16"
  std::string dataset;  // e.g. "mnist (data/mnist)"
  uint64_t seed = 0;
  std::map<std::string, std::string> flags;  // the command line's effective options
  History history;
  double test_loss = 0, test_accuracy = 0;  // NaN when the test set was not evaluated
  double total_seconds = 0;
  // Wall seconds of the run's parts, in order (load_data, engine, fit, test, outputs, process:
  // from the start of main to the report), so a user sees where a whole run's time goes.
  std::vector<std::pair<std::string, double>> phase_seconds;
  std::vector<SamplePrediction> sample_predictions;
  std::vector<std::string> autotune;  // Engine::autotune_report(): the GEMM tiles timed on the device
};

// report.json: an object with the keys
//   model_summary, params, hidden, dropout, device, backend, kernels, precision, dataset, seed,
//   flags (object),
//   epochs_run, best_epoch, stopped_early, history (array of the history_jsonl objects),
//   test_loss, test_accuracy, total_seconds, phase_seconds (object, in run order),
//   seconds_per_epoch (mean of history's per-epoch seconds; 0 with no epochs),
//   sample_predictions (array of {index, true_label, predicted, confidence}),
//   autotune (array of strings, one per tuned GEMM; empty when nothing was tuned)
// Non-finite numbers become null. Pretty-printed with 2-space indentation.
std::string report_json(const ReportInfo& info);
void write_report_json(const std::string& path, const ReportInfo& info);

}  // namespace mnist
