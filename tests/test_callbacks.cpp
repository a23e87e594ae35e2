// The Keras callbacks' logic on synthetic val_loss sequences, against what Keras does.
#include "helpers.hpp"
#include "layers/callbacks.hpp"

using namespace mnist;

TEST_CASE("EarlyStopping(patience=5) stops 5 epochs after the best and remembers it") {
  EarlyStopping es(5);
  const double seq[] = {0.5, 0.4, 0.3, 0.31, 0.32, 0.30, 0.35, 0.33, 0.9, 0.2};
  std::vector<bool> improved;
  int stopped_at = -1;
  for (int e = 0; e < 10; ++e) {
    improved.push_back(es.update(e, seq[e]));
    if (es.should_stop()) {
      stopped_at = e;
      break;
    }
  }
  CHECK(improved == std::vector<bool>{true, true, true, false, false, false, false, false});
  CHECK(stopped_at == 7);  // best at epoch 2, then 5 epochs without improvement (3..7)
  CHECK(es.best_epoch() == 2);
  CHECK(es.best() == 0.3);
}

TEST_CASE("EarlyStopping: an equal value is not an improvement; a new best resets the wait") {
  EarlyStopping es(2);
  CHECK(es.update(0, 1.0));
  CHECK_FALSE(es.update(1, 1.0));
  CHECK(es.wait() == 1);
  CHECK(es.update(2, 0.9));
  CHECK(es.wait() == 0);
  CHECK_FALSE(es.update(3, 0.95));
  CHECK_FALSE(es.should_stop());
  CHECK_FALSE(es.update(4, 0.95));
  CHECK(es.should_stop());
}

TEST_CASE("ModelCheckpoint(save_best_only) saves on every strict improvement only") {
  ModelCheckpoint mc;
  std::vector<bool> saves;
  for (double v : {0.5, 0.6, 0.4, 0.4, 0.39}) saves.push_back(mc.update(v));
  CHECK(saves == std::vector<bool>{true, false, true, false, true});
}

TEST_CASE("ReduceLROnPlateau(factor .5, patience 2, min_lr 1e-7, min_delta 1e-4)") {
  ReduceLROnPlateau rl(0.5, 2, 1e-7);
  double lr = 1e-3;
  std::vector<double> lrs;
  // 0.3 best; 0.29995 is within min_delta (no improvement); so is 0.3 -> reduce after 2 epochs.
  for (double v : {0.3, 0.29995, 0.3, 0.31, 0.2, 0.25, 0.25, 0.25, 0.25}) {
    lr = rl.update(v, lr);
    lrs.push_back(lr);
  }
  CHECK(lrs[0] == 1e-3);
  CHECK(lrs[1] == 1e-3);
  CHECK(lrs[2] == 5e-4);   // second epoch without improvement
  CHECK(lrs[3] == 5e-4);   // wait restarted at 0
  CHECK(lrs[4] == 5e-4);   // improvement
  CHECK(lrs[5] == 5e-4);
  CHECK(lrs[6] == 2.5e-4);
  CHECK(lrs[7] == 2.5e-4);
  CHECK(lrs[8] == 1.25e-4);
}

TEST_CASE("ReduceLROnPlateau never goes below min_lr") {
  ReduceLROnPlateau rl(0.5, 1, 1e-7);
  double lr = 3e-7;
  lr = rl.update(1.0, lr);  // first value: an improvement over inf
  lr = rl.update(1.0, lr);
  CHECK(lr == doctest::Approx(1.5e-7));
  lr = rl.update(1.0, lr);
  CHECK(lr == 1e-7);
  lr = rl.update(1.0, lr);
  CHECK(lr == 1e-7);
}
