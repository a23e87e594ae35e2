// `mnist_cuda predict`: a PNG written from a known MNIST test image is classified as that image.
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "apps/data/mnist.hpp"
#include "apps/io/checkpoint.hpp"
#include "apps/io/png.hpp"
#include "apps/pipeline/app.hpp"
#include "helpers.hpp"

using namespace mnist;

TEST_CASE("predict on PNGs of test images gives their labels (and the same class as the raw pixels)") {
  MnistData d;
  try {
    d = load_mnist_dir(MNIST_TEST_DATA_DIR);
  } catch (const std::exception& e) {
    FAIL("real MNIST is needed (" << e.what() << "); run apps/fetch_data.sh");
  }
  EngineConfig cfg;
  auto engine = make_cpu_engine(cfg);
  const ImageSet train = d.train.slice(0, 12000);
  const int tr = engine->add_dataset(train.view());
  for (int e = 0; e < 3; ++e) engine->train_epoch(tr, e, 1e-3f);

  const test::TempDir tmp("predict");
  const std::string& dir = tmp.path();
  std::vector<float> params;
  engine->get_params(params);
  save_weights(dir + "/m.safetensors", cfg.spec, engine->layout(), params);

  const int n = 20;
  std::vector<float> raw(std::size_t(n) * 10);
  engine->predict(raw.data(), d.test.images.data(), n);
  AppOptions o;
  o.device = Device::Cpu;
  o.checkpoint = dir + "/m.safetensors";
  for (int i = 0; i < n; ++i) {
    o.images.push_back(dir + "/test" + std::to_string(i) + ".png");
    write_png_gray(o.images.back(), d.test.images.data() + std::size_t(i) * 784, 28, 28);
  }
  std::ostringstream out;
  REQUIRE(run_predict(o, out) == 0);
  std::istringstream lines(out.str());
  std::string line;
  int i = 0, confident = 0;
  while (std::getline(lines, line)) {
    INFO(line);
    REQUIRE(i < n);
    const float* p = raw.data() + std::size_t(i) * 10;
    const int raw_class = int(std::max_element(p, p + 10) - p);
    CHECK(line.find(o.images[std::size_t(i)] + ": class " + std::to_string(raw_class)) == 0);
    if (p[raw_class] > 0.9f) {  // a confident model: the PNG's class must be the true label
      ++confident;
      CHECK(raw_class == d.test.labels[std::size_t(i)]);
    }
    ++i;
  }
  CHECK(i == n);
  CHECK(confident >= 15);
  o.images = {dir + "/m.safetensors"};  // not a PNG
  CHECK_THROWS_AS(run_predict(o, out), InputError);
}
