// Resume: a run stopped between two steps (mid-epoch or at an epoch boundary) and continued
// from its resume checkpoint ends bitwise identical to the run that was never stopped.
#include <unistd.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "apps/data/mnist.hpp"
#include "apps/io/resume.hpp"
#include "apps/pipeline/app.hpp"
#include "apps/pipeline/trainer.hpp"
#include "helpers.hpp"

using namespace mnist;

namespace {

ImageSet synthetic(int n, uint64_t seed) {
  // Random images whose label is a simple function of the pixels, so training makes progress.
  ImageSet s;
  s.n = n;
  s.rows = s.cols = 28;
  auto px = test::random_vector<double>(std::size_t(n) * 784, seed, 0, 255);
  for (double v : px) s.images.push_back(uint8_t(v));
  for (int i = 0; i < n; ++i) s.labels.push_back(uint8_t(s.images[std::size_t(i) * 784 + 100] % 10));
  return s;
}

EngineConfig config() {
  EngineConfig c;
  c.batch_size = 32;
  c.seed = 11;
  return c;
}

}  // namespace

TEST_CASE("an epoch split at any batch and resumed on a fresh engine equals the whole epoch, bitwise") {
  const ImageSet data = synthetic(300, 1);  // 10 batches, the last one of 12
  auto whole = make_cpu_engine(config());
  const int w = whole->add_dataset(data.view());
  whole->train_epoch(w, 0, 1e-3f);
  const EpochStats ref = whole->train_epoch(w, 1, 1e-3f);
  TrainState ref_state;
  whole->get_state(ref_state);

  for (int cut : {1, 5, 9}) {
    CAPTURE(cut);
    auto a = make_cpu_engine(config());
    const int ia = a->add_dataset(data.view());
    a->train_epoch(ia, 0, 1e-3f);
    EpochProgress p;
    p.end_batch = cut;
    CHECK_FALSE(a->train_steps(ia, 1, 1e-3f, p, nullptr));
    CHECK(p.next_batch == cut);
    TrainState mid;
    a->get_state(mid);
    auto b = make_cpu_engine(config());
    const int ib = b->add_dataset(data.view());
    b->set_state(mid);
    p.end_batch = -1;
    CHECK(b->train_steps(ib, 1, 1e-3f, p, nullptr));
    TrainState end;
    b->get_state(end);
    CHECK(end.params == ref_state.params);
    CHECK(end.m == ref_state.m);
    CHECK(end.v == ref_state.v);
    CHECK(end.step == ref_state.step);
    CHECK(p.stats().loss == ref.loss);
    CHECK(p.stats().accuracy == ref.accuracy);
  }
}

TEST_CASE("an interrupt stops fit() between steps; --resume from its checkpoint ends bitwise identical") {
  const ImageSet train = synthetic(640, 2), val = synthetic(160, 3);
  const test::TempDir tmp("resume");
  const std::string& dir = tmp.path();
  FitOptions opt;
  opt.epochs = 5;
  opt.patience = 100;
  opt.quiet = true;

  auto ref_engine = make_cpu_engine(config());
  std::ostringstream log;
  const History ref = fit(*ref_engine, ref_engine->add_dataset(train.view()), ref_engine->add_dataset(val.view()),
                          ModelSpec{}, opt, log);
  std::vector<float> ref_params;
  ref_engine->get_params(ref_params);

  // Interrupted after epoch 2's callbacks: the flag is seen before epoch 3's first step.
  std::atomic<bool> stop{false};
  FitControl ctl;
  ctl.interrupt = &stop;
  ctl.resume_path = dir + "/resume.safetensors";
  ctl.config = {{"seed", "11"}};
  auto e1 = make_cpu_engine(config());
  const History part = fit(*e1, e1->add_dataset(train.view()), e1->add_dataset(val.view()), ModelSpec{}, opt, log,
                           [&](const EpochRecord& r, Engine&) { stop = r.epoch == 2; }, ctl);
  REQUIRE(part.interrupted);
  CHECK(part.epochs.size() == 2);

  const ResumeState rs = load_resume(ctl.resume_path, e1->layout());
  CHECK(rs.epoch == 2);
  CHECK(rs.progress.next_batch == 0);
  CHECK(rs.config.at("seed") == "11");
  CHECK(rs.history.epochs.size() == 2);
  FitControl ctl2;
  ctl2.resume_from = &rs;
  auto e2 = make_cpu_engine(config());
  const History rest = fit(*e2, e2->add_dataset(train.view()), e2->add_dataset(val.view()), ModelSpec{}, opt, log, {},
                           ctl2);
  REQUIRE(rest.epochs.size() == ref.epochs.size());
  for (std::size_t i = 0; i < ref.epochs.size(); ++i) {
    CHECK(rest.epochs[i].loss == ref.epochs[i].loss);
    CHECK(rest.epochs[i].val_loss == ref.epochs[i].val_loss);
    CHECK(rest.epochs[i].lr == ref.epochs[i].lr);
  }
  CHECK(rest.best_epoch == ref.best_epoch);
  std::vector<float> params;
  e2->get_params(params);
  CHECK(params == ref_params);
}

// The CPU engine with the autotuning interface of a CUDA one: it reports fixed choices and records
// the ones it is given (the CUDA engine's own handling is tested in the GPU and emulated tests).
class TunedCpu final : public Engine {
 public:
  explicit TunedCpu(std::map<std::string, std::string> choices)
      : cpu_(make_cpu_engine(config())), choices_(std::move(choices)) {}
  std::string name() const override { return cpu_->name(); }
  const ParamLayout& layout() const override { return cpu_->layout(); }
  int add_dataset(const DataView& d) override { return cpu_->add_dataset(d); }
  bool train_steps(int t, int64_t e, float lr, EpochProgress& p, const std::atomic<bool>* i) override {
    return cpu_->train_steps(t, e, lr, p, i);
  }
  EpochStats evaluate(int id) override { return cpu_->evaluate(id); }
  void predict(float* probs, const uint8_t* images, int n) override { cpu_->predict(probs, images, n); }
  void get_params(std::vector<float>& f) override { cpu_->get_params(f); }
  void set_params(const std::vector<float>& f) override { cpu_->set_params(f); }
  void get_state(TrainState& s) override { cpu_->get_state(s); }
  void set_state(const TrainState& s) override { cpu_->set_state(s); }
  std::map<std::string, std::string> autotune_choices() const override { return choices_; }
  void set_autotune_choices(const std::map<std::string, std::string>& c) override { given.push_back(c); }
  std::vector<std::map<std::string, std::string>> given;

 private:
  std::unique_ptr<Engine> cpu_;
  std::map<std::string, std::string> choices_;
};

TEST_CASE("the resume checkpoint carries the autotuned tiles and path, and fit() presets them on resume") {
  const ImageSet train = synthetic(320, 4), val = synthetic(96, 5);
  const test::TempDir tmp("resume_autotune");
  FitOptions opt;
  opt.epochs = 3;
  opt.patience = 100;
  opt.quiet = true;
  std::ostringstream log;
  const std::map<std::string, std::string> kept = {
      {"forward 32x784->128 tf32, X from the images, split-K workspace", "wgmma fold"},
      {"training step 4096 rows tf32 (--kernels auto)", "tail step"}};
  std::atomic<bool> stop{false};
  FitControl ctl;
  ctl.interrupt = &stop;
  ctl.resume_path = tmp.path() + "/resume.safetensors";
  TunedCpu e1(kept);
  fit(e1, e1.add_dataset(train.view()), e1.add_dataset(val.view()), ModelSpec{}, opt, log,
      [&](const EpochRecord& r, Engine&) { stop = r.epoch == 1; }, ctl);
  CHECK(e1.given.empty());  // a fresh run presets nothing
  const ResumeState rs = load_resume(ctl.resume_path, e1.layout());
  CHECK(rs.autotune == kept);
  FitControl ctl2;
  ctl2.resume_from = &rs;
  TunedCpu e2({});
  fit(e2, e2.add_dataset(train.view()), e2.add_dataset(val.view()), ModelSpec{}, opt, log, {}, ctl2);
  REQUIRE(e2.given.size() == 1);
  CHECK(e2.given[0] == kept);
}

TEST_CASE("load_resume rejects a weights-only checkpoint and another architecture") {
  const test::TempDir tmp("resume_bad");
  const std::string& dir = tmp.path();
  ModelSpec spec;
  ParamLayout L = make_layout(spec);
  ResumeState s;
  s.train.params.assign(L.storage, 0.5f);
  s.train.m.assign(L.storage, 0.0f);
  s.train.v.assign(L.storage, 0.0f);
  s.lr = 1e-3;
  save_resume(dir + "/r.safetensors", L, s);
  const ResumeState back = load_resume(dir + "/r.safetensors", L);
  CHECK(back.train.params == s.train.params);
  CHECK(std::isinf(back.early.best));  // +inf survives the JSON round trip
  ModelSpec other;
  other.hidden = {32};
  CHECK_THROWS_WITH_AS(load_resume(dir + "/r.safetensors", make_layout(other)), doctest::Contains("another architecture"),
                       InputError);
}

TEST_CASE("the resume rule: --autotune, --tail-rows and --layer0 count on CUDA only; a file from before them ran off / 32 / separate") {
  AppOptions o;
  const auto cuda = run_config(o, "cuda", "fp"), cpu = run_config(o, "cpu", "fp");
  CHECK(cuda.at("tail_rows") == "32");
  CHECK(cuda.at("autotune") == "on");
  CHECK(cpu.count("tail_rows") == 0);
  CHECK(cpu.count("autotune") == 0);
  CHECK(cuda.at("layer0") == "separate");
  CHECK(cpu.count("layer0") == 0);
  CHECK(resume_flag_diff(cuda, cuda).empty());
  // A state saved before either flag existed: it ran 32-row tail blocks, untuned.
  std::map<std::string, std::string> old = cuda;
  old.erase("tail_rows");
  old.erase("autotune");
  old.erase("layer0");
  AppOptions untuned = o;
  untuned.autotune = Autotune::Off;
  CHECK(resume_flag_diff(old, run_config(untuned, "cuda", "fp")).empty());
  AppOptions rows16 = untuned;
  rows16.tail_rows = TailRows::Rows16;
  CHECK(resume_flag_diff(old, run_config(rows16, "cuda", "fp")) == "; tail_rows was 32, now 16");
  CHECK(resume_flag_diff(cuda, run_config(rows16, "cuda", "fp")).find("tail_rows was 32, now 16") != std::string::npos);
  AppOptions inside = untuned;
  inside.layer0 = Layer0::Inside;
  CHECK(resume_flag_diff(old, run_config(inside, "cuda", "fp")) == "; layer0 was separate, now inside");
  // --layer0-cluster changes no number (every value of layer 0 is the same sum): it may change.
  AppOptions alone = inside;
  alone.layer0_cluster = Layer0Cluster::One;
  CHECK(run_config(alone, "cuda", "fp") == run_config(inside, "cuda", "fp"));
  // On the CPU the flags are not part of the run (the notice names them instead).
  CHECK(resume_flag_diff(cpu, run_config(rows16, "cpu", "fp")).empty());
  CHECK(resume_flag_diff(cpu, run_config(inside, "cpu", "fp")).empty());
  CHECK(resume_flag_diff(cpu, run_config(o, "cuda", "fp")).find("backend was cpu, now cuda") != std::string::npos);
}
