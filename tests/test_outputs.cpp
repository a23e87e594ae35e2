// history.csv / history.jsonl / report.json parse back with the documented columns and keys;
// model.dot describes the Sequential and rendering failures are warnings.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "apps/io/architecture.hpp"
#include "apps/io/atomic_file.hpp"
#include "apps/io/history_io.hpp"
#include "helpers.hpp"
#include "layers/model.hpp"

namespace fs = std::filesystem;
using namespace mnist;

namespace {

History sample_history() {
  History h;
  for (int e = 1; e <= 4; ++e) {
    EpochRecord r;
    r.epoch = e;
    r.loss = 1.0 / 3.0 / e;  // not representable in few digits: checks full precision
    r.accuracy = 0.9 + e * 0.01;
    r.val_loss = 0.1 + 1e-17 * e;
    r.val_accuracy = 0.95;
    r.lr = e <= 2 ? 1e-3 : 5e-4;
    r.seconds = 1.25 * e;
    if (e == 3) r.events = {"lr -> 0.0005", "checkpoint saved"};
    h.epochs.push_back(r);
  }
  h.best_epoch = 2;
  h.stopped_early = true;
  return h;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

}  // namespace

TEST_CASE("history.csv: header, one row per epoch, values at full precision") {
  const History h = sample_history();
  const test::TempDir tmp("outputs");
  const std::string& dir = tmp.path();
  write_history_csv(dir + "/history.csv", h);
  const auto lines = split(read_file(dir + "/history.csv"), '\n');
  REQUIRE(lines.size() == 1 + h.epochs.size());
  CHECK(lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds");
  for (std::size_t i = 0; i < h.epochs.size(); ++i) {
    const auto f = split(lines[i + 1], ',');
    REQUIRE(f.size() == 7);
    const EpochRecord& r = h.epochs[i];
    CHECK(std::stoi(f[0]) == r.epoch);
    CHECK(std::strtod(f[1].c_str(), nullptr) == r.loss);  // exact round trip
    CHECK(std::strtod(f[2].c_str(), nullptr) == r.accuracy);
    CHECK(std::strtod(f[3].c_str(), nullptr) == r.val_loss);
    CHECK(std::strtod(f[4].c_str(), nullptr) == r.val_accuracy);
    CHECK(std::strtod(f[5].c_str(), nullptr) == r.lr);
    CHECK(std::strtod(f[6].c_str(), nullptr) == r.seconds);
  }
  History nan_h;
  nan_h.epochs.push_back(EpochRecord{1, NAN, 0.5, INFINITY, 0.5, 1e-3, 1.0, {}});
  CHECK(split(history_csv(nan_h), '\n')[1] == "1,nan,0.5,inf,0.5,0.001,1");
}

TEST_CASE("history.jsonl: one object per epoch with the events") {
  const History h = sample_history();
  const auto lines = split(history_jsonl(h), '\n');
  REQUIRE(lines.size() == h.epochs.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto j = nlohmann::json::parse(lines[i]);
    CHECK(j.at("epoch").get<int>() == h.epochs[i].epoch);
    CHECK(j.at("loss").get<double>() == h.epochs[i].loss);
    CHECK(j.at("val_accuracy").get<double>() == h.epochs[i].val_accuracy);
    CHECK(j.at("lr").get<double>() == h.epochs[i].lr);
    CHECK(j.at("events").get<std::vector<std::string>>() == h.epochs[i].events);
  }
}

TEST_CASE("report.json has every documented key") {
  ReportInfo info;
  info.model_summary = "Model: \"MNIST_Classifier\"\n...";
  info.params = 109386;
  info.hidden = {128, 64};
  info.dropout = 0.2;
  info.device = "CPU";
  info.backend = "cpu";
  info.kernels = "cuda fused";
  info.precision = "tf32";
  info.dataset = "mnist";
  info.seed = 42;
  info.flags = {{"--epochs", "20"}, {"--batch-size", "128"}};
  info.history = sample_history();
  info.test_loss = 0.071;
  info.test_accuracy = NAN;  // not evaluated -> null
  info.total_seconds = 14.5;
  info.sample_predictions = {{0, 7, 7, 0.999}, {1, 2, 2, 0.98}};
  const test::TempDir tmp("outputs");
  const std::string& dir = tmp.path();
  write_report_json(dir + "/report.json", info);
  const auto j = nlohmann::json::parse(read_file(dir + "/report.json"));
  for (const char* key : {"model_summary", "params", "hidden", "dropout", "device", "backend", "kernels", "precision",
                          "dataset", "seed",
                          "flags", "epochs_run", "best_epoch", "stopped_early", "history", "test_loss",
                          "test_accuracy", "total_seconds", "seconds_per_epoch", "sample_predictions"})
    CHECK_MESSAGE(j.contains(key), "report.json lacks " << key);
  CHECK(j["params"] == 109386);
  CHECK(j["kernels"] == "cuda fused");
  CHECK(j["precision"] == "tf32");
  CHECK(j["hidden"] == nlohmann::json::array({128, 64}));
  CHECK(j["flags"]["--epochs"] == "20");
  CHECK(j["epochs_run"] == 4);
  CHECK(j["best_epoch"] == 2);
  CHECK(j["stopped_early"] == true);
  CHECK(j["history"].size() == 4);
  CHECK(j["history"][2]["events"].size() == 2);
  CHECK(j["test_accuracy"].is_null());
  CHECK(j["seconds_per_epoch"].get<double>() == doctest::Approx((1.25 + 2.5 + 3.75 + 5.0) / 4));
  CHECK(j["sample_predictions"][0]["true_label"] == 7);
  CHECK(j["sample_predictions"][1]["confidence"].get<double>() == 0.98);
}

TEST_CASE("model.dot: one node per layer with shapes, in order") {
  ModelSpec spec;
  const std::string dot = architecture_dot(spec);
  for (const char* s : {"input_layer", "hidden1", "dropout1", "hidden2", "dropout2", "output", "(Dense)",
                        "(Dropout)", "(InputLayer)", "(None, 784)", "(None, 128)", "(None, 64)", "(None, 10)",
                        "softmax", "relu"})
    CHECK_MESSAGE(dot.find(s) != std::string::npos, "model.dot lacks " << s);
  CHECK(dot.find("\"input_layer\" -> \"hidden1\"") != std::string::npos);
  CHECK(dot.find("\"dropout2\" -> \"output\"") != std::string::npos);
  // Name is escaped into the HTML label.
  CHECK(architecture_dot(spec, "a<b>&").find("a&lt;b&gt;&amp;") != std::string::npos);

  const test::TempDir tmp("outputs");
  const std::string& dir = tmp.path();
  SUBCASE("no dot on PATH: model.dot written, warnings instead of an exception") {
    const char* old = std::getenv("PATH");
    const std::string saved = old ? old : "";
    ::setenv("PATH", (dir + "/nowhere").c_str(), 1);
    ArchitectureFiles f;
    CHECK_NOTHROW(f = write_architecture(dir, spec));
    ::setenv("PATH", saved.c_str(), 1);
    CHECK(fs::exists(dir + "/model.dot"));
    CHECK(f.rendered.empty());
    REQUIRE(f.warnings.size() == 2);
    CHECK(f.warnings[0].find("not found") != std::string::npos);
  }
  SUBCASE("with Graphviz installed, svg and png are rendered") {
    const ArchitectureFiles f = write_architecture(dir, spec);
    CHECK(read_file(f.dot) == dot);
    if (f.rendered.empty()) {
      MESSAGE("dot not available: " << (f.warnings.empty() ? "" : f.warnings[0]));
    } else {
      CHECK(f.warnings.empty());
      CHECK(read_file(dir + "/model.svg").find("<svg") != std::string::npos);
      CHECK(read_file(dir + "/model.png").substr(1, 3) == "PNG");
    }
  }
}
