// End-to-end training on real MNIST (a few thousand images) on the CPU path: reaches a stated
// accuracy, is bitwise reproducible from its seed, and fit() writes the best checkpoint and
// restores the best weights.
#include <unistd.h>

#include <sstream>

#include "apps/data/mnist.hpp"
#include "apps/io/checkpoint.hpp"
#include "apps/pipeline/trainer.hpp"
#include "helpers.hpp"
#include "layers/engine.hpp"

using namespace mnist;

namespace {

const MnistData& mnist_data() {
  static const MnistData d = [] {
    try {
      return load_mnist_dir(MNIST_TEST_DATA_DIR);
    } catch (const std::exception& e) {
      FAIL("real MNIST is needed for this test (" << e.what() << "); run apps/fetch_data.sh");
      return MnistData{};
    }
  }();
  return d;
}

EngineConfig small_config(uint64_t seed) {
  EngineConfig cfg;
  cfg.batch_size = 64;
  cfg.seed = seed;
  return cfg;
}

}  // namespace

TEST_CASE("CPU training on 10,000 MNIST images reaches >= 90% on 2,000 held-out test images in 5 epochs") {
  const MnistData& d = mnist_data();
  const ImageSet train = d.train.slice(0, 10000);
  const ImageSet test = d.test.slice(0, 2000);
  auto engine = make_cpu_engine(small_config(42));
  const int tr = engine->add_dataset(train.view());
  const int te = engine->add_dataset(test.view());
  const EpochStats before = engine->evaluate(te);
  CHECK(before.accuracy < 0.3);  // untrained: near chance
  EpochStats last;
  for (int e = 0; e < 5; ++e) last = engine->train_epoch(tr, e, 1e-3f);
  const EpochStats after = engine->evaluate(te);
  MESSAGE("train loss " << last.loss << " acc " << last.accuracy << "; test loss " << after.loss << " acc "
                        << after.accuracy);
  // Measured 0.920 with seed 42 (the first 2,000 test images are the harder half of the test
  // set); 0.90 leaves room for seed-to-seed variation (~0.5 pp) while still failing for any real
  // bug in forward, backward or Adam, which lands near chance or well below 0.85.
  CHECK(after.accuracy >= 0.90);
  CHECK(after.loss < before.loss / 4);
}

TEST_CASE("same seed and flags give bitwise identical training; another seed does not") {
  const MnistData& d = mnist_data();
  const ImageSet train = d.train.slice(0, 1000);
  auto run = [&](uint64_t seed) {
    auto engine = make_cpu_engine(small_config(seed));
    const int tr = engine->add_dataset(train.view());
    std::vector<double> losses;
    for (int e = 0; e < 2; ++e) losses.push_back(engine->train_epoch(tr, e, 1e-3f).loss);
    TrainState s;
    engine->get_state(s);
    return std::make_pair(losses, s);
  };
  auto [l1, s1] = run(7);
  auto [l2, s2] = run(7);
  auto [l3, s3] = run(8);
  CHECK(l1 == l2);
  CHECK(s1.params == s2.params);
  CHECK(s1.m == s2.m);
  CHECK(s1.v == s2.v);
  CHECK(s1.step == 2 * 16);  // ceil(1000/64) steps per epoch
  CHECK(s1.params != s3.params);
}

TEST_CASE("fit(): checkpoints the best val_loss, stops early, and restores the best weights") {
  const MnistData& d = mnist_data();
  const ImageSet train = d.train.slice(0, 2000);
  const ImageSet val = d.train.slice(2000, 2500);
  auto engine = make_cpu_engine(small_config(3));
  const int tr = engine->add_dataset(train.view());
  const int va = engine->add_dataset(val.view());
  const test::TempDir tmp("fit");
  const std::string& dir = tmp.path();
  FitOptions opt;
  opt.epochs = 40;
  opt.patience = 2;
  opt.lr = 3e-3;  // overfits 2,000 images quickly, so early stopping fires
  opt.checkpoint = dir + "/best.safetensors";
  std::ostringstream log;
  int hooks = 0;
  History h = fit(*engine, tr, va, ModelSpec{}, opt, log, [&](const EpochRecord&, Engine&) { ++hooks; });
  INFO(log.str());
  REQUIRE(h.stopped_early);
  CHECK(hooks == int(h.epochs.size()));
  CHECK(int(h.epochs.size()) == h.best_epoch + 2);
  double best = 1e9;
  for (const auto& r : h.epochs) best = std::min(best, r.val_loss);
  CHECK(h.epochs[std::size_t(h.best_epoch - 1)].val_loss == best);
  CHECK(log.str().find("early stopping") != std::string::npos);
  CHECK(log.str().find("Restoring model weights from the end of the best epoch") != std::string::npos);
  // The engine now holds the best epoch's weights, which are also the checkpoint's.
  CHECK(engine->evaluate(va).loss == doctest::Approx(best).epsilon(1e-9));
  std::vector<float> ckpt, now;
  load_weights(opt.checkpoint, engine->layout(), ckpt);
  engine->get_params(now);
  CHECK(ckpt == now);
}
