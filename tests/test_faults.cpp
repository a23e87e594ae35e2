// Faults inside fit(): a loss that turns NaN stops training with a clear error and leaves the
// best checkpoint on disk byte-for-byte as it was. (Faults of the whole binary: tests/fault/.)
#include <unistd.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "apps/data/mnist.hpp"
#include "apps/io/atomic_file.hpp"
#include "apps/io/checkpoint.hpp"
#include "apps/pipeline/trainer.hpp"
#include "helpers.hpp"

using namespace mnist;

namespace {

// Forwards to a real engine, but from validation call `nan_from` on reports a NaN loss.
class NanAfter final : public Engine {
 public:
  NanAfter(std::unique_ptr<Engine> inner, int nan_from) : inner_(std::move(inner)), nan_from_(nan_from) {}
  std::string name() const override { return inner_->name(); }
  const ParamLayout& layout() const override { return inner_->layout(); }
  int add_dataset(const DataView& d) override { return inner_->add_dataset(d); }
  bool train_steps(int t, int64_t e, float lr, EpochProgress& p, const std::atomic<bool>* i) override {
    return inner_->train_steps(t, e, lr, p, i);
  }
  EpochStats evaluate(int d) override {
    EpochStats s = inner_->evaluate(d);
    if (++calls_ >= nan_from_) s.loss = std::nan("");
    return s;
  }
  void predict(float* p, const uint8_t* im, int n) override { inner_->predict(p, im, n); }
  void get_params(std::vector<float>& f) override { inner_->get_params(f); }
  void set_params(const std::vector<float>& f) override { inner_->set_params(f); }
  void get_state(TrainState& s) override { inner_->get_state(s); }
  void set_state(const TrainState& s) override { inner_->set_state(s); }

 private:
  std::unique_ptr<Engine> inner_;
  int nan_from_, calls_ = 0;
};

// 256 random 28x28 images, labels 0..9 in turn.
ImageSet random_images(uint64_t seed) {
  ImageSet data;
  data.n = 256;
  data.rows = data.cols = 28;
  for (double v : test::random_vector<double>(256 * 784, seed, 0, 255)) data.images.push_back(uint8_t(v));
  for (int i = 0; i < 256; ++i) data.labels.push_back(uint8_t(i % 10));
  return data;
}

}  // namespace

TEST_CASE("a NaN val_loss stops fit() with a clear error and leaves the best checkpoint untouched") {
  const ImageSet data = random_images(5);
  EngineConfig cfg;
  cfg.batch_size = 64;
  NanAfter engine(make_cpu_engine(cfg), 3);
  const int t = engine.add_dataset(data.view());
  const test::TempDir tmp("nan");
  const std::string& dir = tmp.path();
  FitOptions opt;
  opt.epochs = 5;
  opt.lr = 1e-5;  // tiny steps: val_loss improves on epochs 1 and 2, so a checkpoint exists
  opt.checkpoint = dir + "/best.safetensors";
  opt.quiet = true;
  std::ostringstream log;
  // The weights of epoch 2 (the last to improve); the checkpoint is written in the background, so
  // the hook records what it must hold rather than reading a file that may still be in flight.
  std::vector<float> epoch2;
  try {
    fit(engine, t, t, ModelSpec{}, opt, log,
        [&](const EpochRecord& r, Engine& e) { if (r.epoch == 2) e.get_params(epoch2); });
    FAIL("no error on a NaN loss");
  } catch (const DivergedError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("diverged at epoch 3") != std::string::npos);
    CHECK(msg.find("not finite") != std::string::npos);
    CHECK(msg.find(opt.checkpoint) != std::string::npos);
  }
  REQUIRE_FALSE(epoch2.empty());
  std::vector<float> saved;
  load_weights(opt.checkpoint, engine.layout(), saved);
  CHECK(saved == epoch2);  // bitwise: epoch 2's model, not touched by the diverged epoch 3
}

TEST_CASE("a resume state that cannot be written stops fit() with the write's own error") {
  // The files are written in the background; the failure must still reach the caller, unchanged
  // (an Error naming the file: exit 1), before fit() returns.
  const ImageSet data = random_images(6);
  EngineConfig cfg;
  cfg.batch_size = 64;
  auto engine = make_cpu_engine(cfg);
  const int t = engine->add_dataset(data.view());
  const test::TempDir tmp("unwritable");
  FitControl ctl;
  ctl.resume_path = tmp.path() + "/no_such_dir/resume.safetensors";
  std::string sync_message;
  try {
    write_file_atomic(ctl.resume_path, "x");
  } catch (const Error& e) {
    sync_message = e.what();
  }
  REQUIRE(sync_message.find(ctl.resume_path) != std::string::npos);
  FitOptions opt;
  opt.epochs = 3;
  opt.quiet = true;
  std::ostringstream log;
  std::string message;
  try {
    fit(*engine, t, t, ModelSpec{}, opt, log, {}, ctl);
    FAIL("fit() returned although its resume state could not be written");
  } catch (const DivergedError&) {
    FAIL("a write failure reported as divergence");
  } catch (const InputError&) {
    FAIL("a write failure reported as bad input (exit 2, not 1)");
  } catch (const Error& e) {
    message = e.what();
  }
  CHECK(message == sync_message);
}
