// The shared-memory bank model (banks.cpp) over the kernels the engine runs at the tutorial's model
// (784 -> 128 -> 64 -> 10, dropout 0.2): the fused step at batch 128 (the default path) and the
// graph and tail paths at batch 4096, each at fp32, tf32 and bf16; two training steps and an
// evaluation each. Prints, per kernel and per source line, the shared-memory wavefronts the device
// would take against the conflict-free count.
//   emu_banks [top-lines] [config ...]    configs: fused, graph, tail (default all three)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "layers/engine.hpp"
#include "runtime/error.hpp"

namespace emu {
void banks_report(std::FILE* to, std::size_t top);
}

using namespace mnist;

static std::vector<uint8_t> rbytes(std::size_t n, uint64_t seed, int hi) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> d(0, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(d(g));
  return v;
}

static void run(Kernels kernels, Precision prec, int batch) {
  const auto t0 = std::chrono::steady_clock::now();
  EngineConfig cfg;
  cfg.kernels = kernels;
  cfg.precision = prec;
  cfg.batch_size = batch;
  cfg.graph_steps = 2;
  const int n = 2 * batch, input = cfg.spec.input;
  const auto images = rbytes(std::size_t(n) * input, 1, 255), labels = rbytes(n, 2, 9);
  auto gpu = make_cuda_engine(cfg);
  const int t = gpu->add_dataset({images.data(), labels.data(), n, input});
  const EpochStats s = gpu->train_epoch(t, 0, 1e-3f);
  gpu->evaluate(t);
  std::printf("%s %s batch %d: loss %.4f (%.1f s)\n", to_string(kernels), to_string(prec), batch,
              s.loss, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  std::size_t top = 40;
  std::vector<std::string> configs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "fused" || a == "graph" || a == "tail") configs.push_back(a);
    else top = std::size_t(std::strtoul(argv[i], nullptr, 10));
  }
  if (configs.empty()) configs = {"fused", "graph", "tail"};
  for (const std::string& c : configs)
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
      if (c == "fused") run(Kernels::Auto, p, 128);
      if (c == "graph") run(Kernels::Graph, p, 4096);
      if (c == "tail") run(Kernels::Tail, p, 4096);
    }
  emu::banks_report(stdout, top);
  return 0;
}
