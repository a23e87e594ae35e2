// mnist_cuda evaluate: test loss and accuracy of a checkpoint, and ten sample predictions.
#include <algorithm>
#include <cstdio>
#include <ostream>

#include "apps/pipeline/app.hpp"
#include "apps/pipeline/core.hpp"

namespace mnist {

int run_evaluate(const AppOptions& o, std::ostream& log) {
  validate_options(o);
  set_threads(o);
  const std::string dir = data_dir(o);
  const MnistData data = load_mnist_dir(dir);
  std::string hidden;
  std::unique_ptr<Engine> engine = engine_from_checkpoint(o, data.test.dim(), log, &hidden);
  const EpochStats test = engine->evaluate(engine->add_dataset(data.test.view()));
  char line[128];
  std::snprintf(line, sizeof line, "Test Loss: %.4f\nTest Accuracy: %.4f\n", test.loss, test.accuracy);
  log << "Checkpoint: " << o.checkpoint << " (hidden " << hidden << ", backend " << engine->name() << ")\n" << line;
  print_sample_predictions(predict_top1(*engine, data.test.images.data(), std::min(kSamplesShown, data.test.n)), data.test, log);
  return 0;
}

}  // namespace mnist
