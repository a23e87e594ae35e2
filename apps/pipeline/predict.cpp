// mnist_cuda predict: the class and confidence of each PNG given (any size or colour type; each is
// converted to the 28x28 grey MNIST format first).
#include <cstdio>
#include <ostream>

#include "apps/io/png.hpp"
#include "apps/pipeline/app.hpp"
#include "apps/pipeline/core.hpp"

namespace mnist {

int run_predict(const AppOptions& o, std::ostream& log) {
  validate_options(o);
  std::vector<uint8_t> pixels;
  int dim = 0;  // pixels per image, as the conversion makes them
  for (const std::string& path : o.images) {
    const std::vector<uint8_t> img = to_mnist_28x28(read_png_gray(path));
    dim = int(img.size());
    pixels.insert(pixels.end(), img.begin(), img.end());
  }
  std::string hidden;
  std::unique_ptr<Engine> engine = engine_from_checkpoint(o, dim, log, &hidden);
  const std::vector<Top1> p = predict_top1(*engine, pixels.data(), int(o.images.size()));
  char line[512];
  for (std::size_t i = 0; i < p.size(); ++i) {
    std::snprintf(line, sizeof line, "%s: class %d (confidence %.3f)\n", o.images[i].c_str(), p[i].label,
                  p[i].confidence);
    log << line;
  }
  return 0;
}

}  // namespace mnist
