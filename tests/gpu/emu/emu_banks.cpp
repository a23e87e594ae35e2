// The shared-memory bank model (banks.cpp) over the kernels the engine runs at the tutorial's model
// (784 -> 128 -> 64 -> 10, dropout 0.2), two training steps and an evaluation a configuration.
// Prints, per kernel and per source line, the shared-memory wavefronts the device would take
// against the conflict-free count, and with --budgets FILE checks each kernel's excess against it.
//   emu_banks [--budgets FILE] [--top N] [set]
// Sets: ci: the fused step at batch 128 (the default path) at fp32, tf32 and bf16; the graph and tail
// paths at batch 4096 at fp32 and at batch 512 at tf32 and bf16 (≈ 2 minutes). full (default): also
// tf32 and bf16 at batch 4096 on both paths (≈ 7 minutes more: the tensor-core tiles at 4096 rows
// are the slow part of the emulation); its check skips the stale-budget part (below).
//
// Budgets (tests/resources/bank_conflicts.txt): lines `EXCESS PATTERN`, EXCESS the percentage of
// wavefronts above the conflict-free count a kernel may take, PATTERN a regex (ECMAScript) on the
// kernel's name as the report prints it; the first match counts, no match is a budget of 0. The
// check fails on a kernel over its budget, and on a budget more than 1.5 points above what every
// kernel it matches takes (tighten it), or that matches none (remove it): that part in the ci set only.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "kernels/dense.cuh"
#include "layers/engine.hpp"
#include "runtime/error.hpp"
#include "emu_x_in_place.hpp"

namespace emu {
void banks_report(std::FILE* to, std::size_t top);
extern std::map<std::string, std::pair<unsigned long long, unsigned long long>> g_bank_kernels;
}

using namespace mnist;

static void run(Kernels kernels, Precision prec, int batch, bool layer0_inside = false) {
  const auto t0 = std::chrono::steady_clock::now();
  EngineConfig cfg;
  cfg.kernels = kernels;
  cfg.precision = prec;
  cfg.batch_size = batch;
  cfg.tail_layer0 = layer0_inside;
  cfg.graph_steps = 2;
  const int n = 2 * batch, input = cfg.spec.input;
  const auto images = emu_x::bytes(std::size_t(n) * input, 1, 255), labels = emu_x::bytes(n, 2, 9);
  // (layer 0 inside: shared across clusters, the engine's default, on a device of 132 SMs; the
  // emulation's default 2 hold too few clusters for a wave, and the launch would take none)
  const int sms = g_emu_sm_count;
  if (layer0_inside) g_emu_sm_count = 132;
  auto gpu = make_cuda_engine(cfg);
  const int t = gpu->add_dataset({images.data(), labels.data(), n, input});
  const EpochStats s = gpu->train_epoch(t, 0, 1e-3f);
  gpu->evaluate(t);
  std::printf("%s%s %s batch %d: loss %.4f (%.1f s)\n", to_string(kernels),
              gpu->tail_layer0() ? cat(" (layer 0 inside, clusters of ", gpu->tail_layer0_cluster(), ")").c_str() : "",
              to_string(prec), batch, s.loss, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  g_emu_sm_count = sms;
  std::fflush(stdout);
}

// The clustered split-K forward (GemmTileChoice / SimtTileChoice::cluster_split), which the engine
// runs only where autotuning keeps it (never here: the emulation's timings tie): layer 0's forward
// over K = 784 (4 pieces) at 128 rows on every tile that takes it, at the precision it runs.
static void clustered_forwards() {
  const int B = 128, K = 784, N = 128;  // (whole row tiles: a tail chunk's zero stores are the loop's, not the finish's)
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> X(std::size_t(B) * K), W(std::size_t(N) * K), b(N), Y(std::size_t(B) * N);
  for (float& v : X) v = u(rng);
  for (float& v : W) v = u(rng);
  for (float& v : b) v = u(rng);
  std::vector<float> ws(cuda::dense_workspace_floats(B, K, N));
  std::vector<unsigned> tk(cuda::dense_ticket_count(B, K, N), 0u);
  for (const cuda::GemmTile t : {cuda::GemmTile::Pipe128, cuda::GemmTile::Pipe64x8, cuda::GemmTile::Pipe64})
    for (const GemmPrecision p : {GemmPrecision::TF32, GemmPrecision::BF16}) {
      cuda::dense_force_tile({t, false, true});
      cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, p, ws.data(), tk.data());
    }
  cuda::dense_force_tile({});
  for (const cuda::SimtTileKind t : {cuda::SimtTileKind::Vec128, cuda::SimtTileKind::Vec64, cuda::SimtTileKind::Vec32}) {
    cuda::dense_force_simt_tile({t, false, true});
    cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, true, nullptr, GemmPrecision::FP32,
                        ws.data(), tk.data());
  }
  cuda::dense_force_simt_tile({});
  std::printf("clustered split-K forwards: %lld cluster launches\n", emu::g_emu_cluster_launches);
}

// The budget check (file format above); returns the number of failures.
static int check_budgets(const std::string& path, bool stale) {
  std::ifstream in(path);
  if (!in) {
    std::printf("emu_banks: cannot read the budgets file %s\n", path.c_str());
    return 1;
  }
  struct Budget {
    double excess;
    std::string pattern;
    std::regex re;
    double most = -1;  // the most any kernel it matched took
  };
  std::vector<Budget> budgets;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    double e;
    std::string pat;
    if (!(ls >> e) || !std::getline(ls >> std::ws, pat) || pat.empty()) {
      std::printf("emu_banks: %s:%d: expected `EXCESS PATTERN`, got '%s'\n", path.c_str(), no, line.c_str());
      return 1;
    }
    budgets.push_back({e, pat, std::regex(pat), -1});
  }
  int failures = 0;
  for (const auto& [kernel, w] : emu::g_bank_kernels) {
    const double excess = w.second ? 100.0 * double(w.first - w.second) / double(w.second) : 0.0;
    Budget* b = nullptr;
    for (Budget& x : budgets)
      if (std::regex_search(kernel, x.re)) {
        b = &x;
        break;
      }
    const double allowed = b ? b->excess : 0.0;
    if (b) b->most = std::max(b->most, excess);
    if (excess > allowed + 1e-9) {
      std::printf("FAIL bank conflicts: %s takes %.2f%% more wavefronts than conflict-free, its budget is %.1f%% (%s)\n",
                  kernel.c_str(), excess, allowed, b ? b->pattern.c_str() : "no budget line");
      ++failures;
    }
  }
  for (const Budget& b : budgets) {
    if (!stale) break;  // (the full set runs more kernels than the budgets were written for)
    if (b.most < 0) {
      std::printf("FAIL bank budget '%s' matches no kernel of this run: remove it\n", b.pattern.c_str());
      ++failures;
    } else if (b.most < b.excess - 1.5) {
      std::printf("FAIL bank budget '%s' allows %.1f%%, its kernels take at most %.2f%%: tighten it\n",
                  b.pattern.c_str(), b.excess, b.most);
      ++failures;
    }
  }
  std::printf("bank budgets: %zu kernels, %zu budget lines, %d failures\n", emu::g_bank_kernels.size(), budgets.size(),
              failures);
  return failures;
}

int main(int argc, char** argv) {
  // Each launch whole, in turn: the model pairs a warp's accesses per launch (a programmatic
  // launch's early run beside the launch before would interleave two launches' accesses).
  emu::g_programmatic_early = false;
  std::size_t top = 40;
  std::string budgets, set = "full";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--budgets" && i + 1 < argc) budgets = argv[++i];
    else if (a == "--top" && i + 1 < argc) top = std::size_t(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "full" || a == "ci") set = a;
    else {
      std::printf("emu_banks: unknown argument '%s' (expected --budgets FILE, --top N, full or ci)\n", a.c_str());
      return 2;
    }
  }
  for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) run(Kernels::Auto, p, 128);
  for (Kernels k : {Kernels::Graph, Kernels::Tail})
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) {
      if (p == Precision::FP32) {
        run(k, p, 4096);
      } else {
        run(k, p, 512);
        if (k == Kernels::Tail) run(k, p, 128, true);  // (layer 0 inside the tail kernel: tail_l0_kernel; 4 blocks, one cluster)
        if (set == "full") run(k, p, 4096);
      }
    }
  clustered_forwards();
  emu::banks_report(stdout, top);
  return budgets.empty() ? 0 : check_budgets(budgets, set == "ci") != 0;
}
