// Training-step benchmark of the CUDA engine: the fused kernel (kernels/fused_step.cuh) at several
// grid sizes against the graph path (--kernels graph), the tutorial's model at batch 128, 512 and
// 4096 over a 48,000-example random uint8 dataset (the step's time does not depend on the pixel
// values). Training only, but for the eval rows below (race.py times whole epochs).
//
//   bench_fused [--json FILE] [--epochs N] [--batches 128,512,4096] [--precision fp32|tf32|bf16]
//
// Timing: wall clock around Engine::train_epoch, which ends with the epoch's one synchronisation
// (the metrics read-back); one warm-up epoch first, then the median of N epochs. µs/step is that
// over ceil(48000 / batch) steps. Grid sizes: one block per SM (the engine's default), half and a
// quarter of that (a barrier costs less with fewer blocks; the phases then take more rounds).
// Then the phases apart (EngineConfig::fused_phases, profiling only; these rows train nothing):
// "-A", "-B", "-C" leave that phase's work out (its barrier stays), "sync" leaves all three out
// (the barriers, index loads and launches alone). So A ≈ fused − (−A), and so on. "fused-barriers"
// and "sync-barriers" put back the two grid barriers a step that counters replaced
// (EngineConfig::fused_grid_barriers; same results), so that the counters' gain is measured.
// Last, the graph and tail paths with layer 0 reading X from the images in place (the default,
// EngineConfig::x_in_place) and with the batch gathered into floats first ("-gather": the step's
// launches before it), so that the difference is this change's gain or loss (profiling/NOTES.md,
// "The engine reads X from the images"); "tail-nopdl": the tail path with ordinary launches
// (EngineConfig::pdl off), so that "tail" against it is what the programmatic launches buy;
// "tail-wimages": layer 0's weight GEMM on the images instead of X gathered beside the tail kernel
// (EngineConfig::x_weight_gathered off); "tail-driver": the driver's shared-memory carveout per
// launch instead of one for the step (EngineConfig::carveout); "tail-adam-apart": layer 0's Adam in
// the optimizer launch over its weight GEMM's pieces instead of in that GEMM's clustered launch
// (EngineConfig::weight_adam off: "tail" against it is what the one launch buys); "tail-rows16": the
// tail kernel in 16-row blocks, two an SM (EngineConfig::tail_rows; NOTES "Two tail blocks an SM"),
// and "tail-rows16-img" the same without the gather launch (its blocks find no registers beside two
// tail blocks an SM: layer 0's weight GEMM reads the images); "tail-l0": layer 0's forward inside
// the tail kernel (EngineConfig::tail_layer0; tf32/bf16 only, NOTES "Layer 0 inside the tail kernel":
// "tail" against it is what the separate forward launch costs), its blocks sharing layer 0 across
// clusters of up to 4 (the default, EngineConfig::tail_layer0_cluster), and "tail-l0-alone" each
// block alone (NOTES "Layer 0 shared across a cluster": "tail-l0" against it is what the clusters buy).
// Then
// the same paths autotuned (EngineConfig::autotune, the
// app's default: "-tuned"; every GEMM's tile timed on the device) and "auto-tuned" (--kernels auto
// with autotuning: above batch 512 the graph/tail race), each with the engine's autotune report
// (the warm-up epoch does the tuning). --precision runs the GEMMs at tf32 or bf16 (the fused rows
// then round their inputs on SIMT chains, the other paths run tensor-core tiles). At batch 512 and
// up, last, "eval-4096" and "eval-16384": one evaluation of 12,000 rows on the tail path in chunks
// of EngineConfig::eval_rows (µs/eval; the default is one chunk).
//
// Without a CUDA device it prints one line saying so and exits 77 (the suite's "skipped").
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "layers/engine.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"

namespace mnist {
namespace {

struct Options {
  std::string json;
  int epochs = 5;
  std::vector<int> batches{128, 512, 4096};
  Precision precision = Precision::FP32;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw InputError(cat(a, " needs a value"));
      return argv[++i];
    };
    if (a == "--json") {
      o.json = value();
    } else if (a == "--epochs") {
      o.epochs = std::atoi(value().c_str());
      if (o.epochs < 1) throw InputError("--epochs must be >= 1");
    } else if (a == "--precision") {
      const std::string v = value();
      if (v == "fp32") o.precision = Precision::FP32;
      else if (v == "tf32") o.precision = Precision::TF32;
      else if (v == "bf16") o.precision = Precision::BF16;
      else throw InputError(cat("--precision must be fp32, tf32 or bf16, got '", v, "'"));
    } else if (a == "--batches") {
      o.batches.clear();
      std::stringstream ss(value());
      for (std::string t; std::getline(ss, t, ',');) {
        const int b = std::atoi(t.c_str());
        if (b < 1 || b > 48000) throw InputError(cat("--batches: ", t, " is not in 1..48000"));
        o.batches.push_back(b);
      }
    } else {
      throw InputError(cat("unknown argument ", a, " (bench_fused [--json FILE] [--epochs N] [--batches LIST])"));
    }
  }
  return o;
}

struct Result {
  std::string variant;
  int batch = 0, blocks = 0;
  double ms_per_epoch = 0, us_per_step = 0;
};

int run(const Options& o) {
  const DeviceInfo dev = query_device();
  if (!dev.available) {
    std::printf("bench_fused: skipped: %s\n", dev.reason.c_str());
    return 77;
  }
  constexpr int n = 48000, input = 784;
  std::mt19937_64 gen(1);
  std::vector<uint8_t> images(std::size_t(n) * input), labels(n);
  for (auto& x : images) x = uint8_t(gen());
  for (auto& y : labels) y = uint8_t(gen() % 10);
  const DataView view{images.data(), labels.data(), n, input};
  std::printf("bench_fused on %s (%d SMs): training epochs of %d examples, median of %d, GEMMs %s\n",
              dev.name.c_str(), dev.sm_count, n, o.epochs, to_string(o.precision));
  std::vector<Result> results;
  for (int batch : o.batches) {
    struct Variant {
      std::string name;
      Kernels kernels;
      int blocks;
      unsigned phases;
      bool x_in_place = true;
      bool autotune = false;
      bool grid_barriers = false;
      Pdl pdl = Pdl::On;
      bool x_weight_gathered = true;
      Carveout carveout = Carveout::Max;
      bool weight_adam = true;
      TailRows tail_rows = TailRows::Rows32;
      bool tail_layer0 = false;
      Layer0Cluster l0_cluster = Layer0Cluster::Four;
    };
    const int sms = std::max(dev.sm_count, 4);
    // The phase variants time the step with one phase's work left out (its barrier kept), and
    // with none ("sync": the grid barrier, the counters, index loads and launches alone); they train
    // nothing.
    const std::vector<Variant> variants{{"fused", Kernels::Fused, 0, 7u},       {"fused", Kernels::Fused, sms / 2, 7u},
                                        {"fused", Kernels::Fused, sms / 4, 7u}, {"-A", Kernels::Fused, 0, 6u},
                                        {"-B", Kernels::Fused, 0, 5u},          {"-C", Kernels::Fused, 0, 3u},
                                        {"sync", Kernels::Fused, 0, 0u},
                                        {"fused-barriers", Kernels::Fused, 0, 7u, true, false, true},
                                        {"sync-barriers", Kernels::Fused, 0, 0u, true, false, true},
                                        {"graph", Kernels::Graph, 0, 7u},
                                        {"graph-gather", Kernels::Graph, 0, 7u, false},
                                        {"tail", Kernels::Tail, 0, 7u},         {"tail-gather", Kernels::Tail, 0, 7u, false},
                                        {"tail-nopdl", Kernels::Tail, 0, 7u, true, false, false, Pdl::Off},
                                        {"tail-wimages", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, false},
                                        {"tail-driver", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, true,
                                         Carveout::Driver},
                                        {"tail-adam-apart", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, true,
                                         Carveout::Max, false},
                                        {"tail-rows16", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, true,
                                         Carveout::Max, true, TailRows::Rows16},
                                        {"tail-rows16-img", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, false,
                                         Carveout::Max, true, TailRows::Rows16},
                                        {"tail-l0", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, true,
                                         Carveout::Max, true, TailRows::Rows32, true},
                                        {"tail-l0-alone", Kernels::Tail, 0, 7u, true, false, false, Pdl::On, true,
                                         Carveout::Max, true, TailRows::Rows32, true, Layer0Cluster::One},
                                        {"graph-tuned", Kernels::Graph, 0, 7u, true, true},
                                        {"tail-tuned", Kernels::Tail, 0, 7u, true, true},
                                        {"auto-tuned", Kernels::Auto, 0, 7u, true, true}};
    for (const Variant& v : variants) {
      if (v.grid_barriers && o.precision != Precision::FP32) continue;  // (the comparison kernel is FP32 only)
      if (v.tail_layer0 && o.precision == Precision::FP32) continue;    // (tensor cores only)
      EngineConfig cfg;
      cfg.precision = o.precision;
      cfg.autotune = v.autotune ? Autotune::On : Autotune::Off;
      cfg.batch_size = batch;
      cfg.kernels = v.kernels;
      cfg.fused_blocks = v.blocks;
      cfg.fused_phases = v.phases;
      cfg.fused_grid_barriers = v.grid_barriers;
      cfg.x_in_place = v.x_in_place;
      cfg.pdl = v.pdl;
      cfg.carveout = v.carveout;
      cfg.x_weight_gathered = v.x_weight_gathered;
      cfg.weight_adam = v.weight_adam;
      cfg.tail_rows = v.tail_rows;
      cfg.tail_layer0 = v.tail_layer0;
      cfg.tail_layer0_cluster = v.l0_cluster;
      auto e = make_cuda_engine(cfg);
      if (!e->notice().empty()) std::printf("  %s\n", e->notice().c_str());
      const int t = e->add_dataset(view);
      e->train_epoch(t, 0, 1e-3f);
      std::vector<double> ms;
      for (int ep = 1; ep <= o.epochs; ++ep) {
        const auto t0 = std::chrono::steady_clock::now();
        e->train_epoch(t, ep, 1e-3f);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      for (const std::string& l : e->autotune_report()) std::printf("    %s\n", l.c_str());
      std::sort(ms.begin(), ms.end());
      Result r{v.name, batch, v.blocks, ms[ms.size() / 2], 0};
      r.us_per_step = r.ms_per_epoch * 1e3 / ((n + batch - 1) / batch);
      std::printf("  batch %5d  %-12s blocks %-4s  %8.3f ms/epoch  %8.2f us/step\n", batch, v.name.c_str(),
                  v.kernels != Kernels::Fused ? "-" : (v.blocks ? std::to_string(v.blocks).c_str() : "all"),
                  r.ms_per_epoch, r.us_per_step);
      results.push_back(r);
    }
    // The evaluation of 12,000 rows (the tutorial's validation split) on the tail path, in chunks of
    // EngineConfig::eval_rows: 4096 (three chunks of two launches, before the twentieth session)
    // against the default (one chunk). Wall time of Engine::evaluate (its launches and one
    // synchronisation), median of 9 after a first evaluation; "us/eval" rows.
    for (const int chunk : {4096, EngineConfig{}.eval_rows}) {
      if (batch < 512) break;  // (the tail path's batches)
      EngineConfig cfg;
      cfg.precision = o.precision;
      cfg.batch_size = batch;
      cfg.kernels = Kernels::Tail;
      cfg.eval_rows = chunk;
      auto e = make_cuda_engine(cfg);
      const int t = e->add_dataset(view), v = e->add_dataset(DataView{images.data(), labels.data(), 12000, input});
      e->train_epoch(t, 0, 1e-3f);
      e->evaluate(v);
      std::vector<double> us;
      for (int i = 0; i < 9; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        e->evaluate(v);
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(us.begin(), us.end());
      const std::string name = "eval-" + std::to_string(chunk);
      std::printf("  batch %5d  %-12s blocks -     %8.2f us/eval (12000 rows, chunks of %d)\n", batch, name.c_str(),
                  us[us.size() / 2], chunk);
    }
  }
  if (!o.json.empty()) {
    FILE* f = std::fopen(o.json.c_str(), "w");
    if (!f) throw InputError(cat("--json ", o.json, ": cannot write"));
    std::fprintf(f, "{\"device\": \"%s\", \"epochs\": %d, \"results\": [\n", dev.name.c_str(), o.epochs);
    for (std::size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f, "  {\"variant\": \"%s\", \"batch\": %d, \"blocks\": %d, \"ms_per_epoch\": %.4f, \"us_per_step\": %.3f}%s\n",
                   r.variant.c_str(), r.batch, r.blocks, r.ms_per_epoch, r.us_per_step,
                   i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}

}  // namespace
}  // namespace mnist

int main(int argc, char** argv) {
  try {
    return mnist::run(mnist::parse(argc, argv));
  } catch (const mnist::InputError& e) {
    std::fprintf(stderr, "bench_fused: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_fused: %s\n", e.what());
    return 1;
  }
}
