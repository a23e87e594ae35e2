// Autotuning of the GEMM tiles (kernels/autotune.cuh, cuda::DenseAutotune in kernels/dense.cuh).
// What must hold, whatever the device's timings:
//   - inside a scope, each operation is tuned once, at its first launch: every later launch of it
//     runs the kept tile, which is what its record names, and gives bit for bit what that tile
//     gives when a test forces it;
//   - the kept tile is the fastest of those that agree with the size model's pick, and the model's
//     pick loses only to a tile kMargin faster;
//   - a tile whose outputs disagree (NaN, or off by more than kAgreement of the largest magnitude)
//     is rejected, named, and never runs; a difference of float32 summation order is not rejection;
//   - outside a scope, with a tile forced, for an operation under 2^20 multiply-adds, or (on the
//     GPU) inside a stream capture for one not yet tuned, the launchers keep their size models and
//     record nothing.
// Timings are injected (autotune::TestHooks::time_us) so that the choice is known in advance and a
// non-model tile wins: on real events alone the model's pick could win every time and the tests
// would prove nothing about applying a choice. One case times on the device's events (the host
// emulation's are all 0), at the engine's layer-0 shapes: every tile, wgmma included where the
// device runs it, must agree with the model's pick there, and the kept one must then be what runs.
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "kernels/autotune.cuh"
#include "kernels/dense.cuh"
#include "runtime/stream.cuh"
#include "tests/gpu/gpu_test.cuh"

namespace mnist::test {
namespace {

using cuda::autotune::Record;

// Hooks off and every tuning forgotten, at the start and end of each case.
struct Clean {
  Clean() { reset(); }
  ~Clean() { reset(); }
  static void reset() {
    cuda::autotune::set_test_hooks({});
    cuda::dense_autotune_reset();
    cuda::dense_force_tile({});
    cuda::dense_force_simt_tile({});
  }
};

// Times that make `fastest` win: it 1 µs, the model's pick 10, every other tile 20.
void favour(const std::string& fastest) {
  cuda::autotune::TestHooks h;
  h.time_us = [fastest](const std::string& label) { return label == fastest ? 1.0 : label == "model" ? 10.0 : 20.0; };
  cuda::autotune::set_test_hooks(h);
}

// The forcing hooks' value of a candidate label (kernels/dense.cu tile_options' spelling).
void force_label(const std::string& label) {
  const bool fold = label.size() > 5 && label.substr(label.size() - 5) == " fold";
  const std::string tile = fold ? label.substr(0, label.size() - 5) : label;
  using cuda::GemmTile;
  using cuda::SimtTileKind;
  if (tile == "scalar") return cuda::dense_force_simt_tile({SimtTileKind::Scalar, fold});
  if (tile == "vec32") return cuda::dense_force_simt_tile({SimtTileKind::Vec32, fold});
  if (tile == "vec64") return cuda::dense_force_simt_tile({SimtTileKind::Vec64, fold});
  if (tile == "vec128") return cuda::dense_force_simt_tile({SimtTileKind::Vec128, fold});
  const std::pair<const char*, GemmTile> tc[] = {{"mma", GemmTile::Mma},           {"pipe64", GemmTile::Pipe64},
                                                 {"pipe64x8", GemmTile::Pipe64x8}, {"pipe128", GemmTile::Pipe128},
                                                 {"wgmma", GemmTile::Wgmma},       {"wgmma128", GemmTile::Wgmma128},
                                                 {"wgmma2wg", GemmTile::WgmmaWide}};
  for (const auto& [name, t] : tc)
    if (tile == name) return cuda::dense_force_tile({t, fold});
  FAIL("unknown tile label ", label);
}

struct Shape {
  int B, K, N;
};

// One launcher's call on fixed random operands, its outputs read back.
struct Op {
  std::string name;
  std::function<std::vector<std::vector<float>>()> run;
};

// The operands of every launcher at one shape (X as floats, or as the images by index).
struct Operands {
  Shape s;
  DeviceBuffer<float> X, W, b, dZ, mask, Y, dW, db, dX, part, ws;
  DeviceBuffer<unsigned> tickets;
  DeviceBuffer<uint8_t> images;
  DeviceBuffer<int32_t> idx;
  DeviceBuffer<cuda::TrainCounters> counters;

  explicit Operands(Shape sh) : s(sh) {
    X = to_device(random_vector(std::size_t(s.B) * s.K, 21 + s.K, 0.0, 1.0));
    W = to_device(random_vector(std::size_t(s.N) * s.K, 22 + s.N, -0.5, 0.5));
    b = to_device(random_vector(std::size_t(s.N), 23, -0.5, 0.5));
    dZ = to_device(random_vector(std::size_t(s.B) * s.N, 24 + s.B));
    mask = to_device(random_vector(std::size_t(s.B) * s.K, 25 + s.B));
    Y = poisoned<float>(std::size_t(s.B) * s.N);
    dW = poisoned<float>(std::size_t(s.N) * s.K);
    db = poisoned<float>(std::size_t(s.N));
    dX = poisoned<float>(std::size_t(s.B) * s.K);
    part = poisoned<float>(cuda::dense_weight_partial_floats(s.B, s.K, s.N));
    ws = poisoned<float>(std::max<std::size_t>(1, cuda::dense_workspace_floats(s.B, s.K, s.N)));
    tickets = DeviceBuffer<unsigned>(std::max<std::size_t>(1, cuda::dense_ticket_count(s.B, s.K, s.N)));
    CUDA_CHECK(cudaMemset(tickets.data(), 0, tickets.bytes()));
    images = to_device(random_bytes(std::size_t(2 * s.B) * s.K, 26 + s.B));
    std::vector<int32_t> h_idx(std::size_t(2 * s.B));
    for (std::size_t i = 0; i < h_idx.size(); ++i) h_idx[i] = int32_t((i * 7 + 3) % h_idx.size());
    idx = to_device(h_idx);
    cuda::TrainCounters c;
    c.step = 2;
    c.batch = 1;
    counters = DeviceBuffer<cuda::TrainCounters>(1);
    counters.upload(&c, 1);
  }

  // The launchers the engine uses, each as an Op over these operands.
  std::vector<Op> ops(GemmPrecision prec, cudaStream_t st) {
    const cuda::DenseInput in = cuda::DenseInput::images_by_index(images.data(), idx.data(), 0, counters.data(), s.B);
    cuda::DropoutSpec drop;
    drop.p = 0.2f;
    drop.seed = 5;
    drop.counters = counters.data();
    return {
        {"forward, split K (workspace)",
         [=] {
           cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), s.B, s.K, s.N, true, st, prec, ws.data());
           return std::vector<std::vector<float>>{to_host(Y)};
         }},
        {"relu + dropout forward, X from the images",
         [=] {
           cuda::dense_relu_dropout_forward(Y.data(), in, W.data(), b.data(), s.B, s.K, s.N, drop, st, prec, ws.data());
           return std::vector<std::vector<float>>{to_host(Y)};
         }},
        {"weight + db, split rows",
         [=] {
           cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), s.B, s.K, s.N, st, prec, ws.data(),
                                        tickets.data());
           return std::vector<std::vector<float>>{to_host(dW), to_host(db)};
         }},
        {"weight pieces, X from the images",
         [=] {
           cuda::dense_weight_partials(part.data(), dZ.data(), in, s.B, s.K, s.N, st, prec);
           return std::vector<std::vector<float>>{to_host(part)};
         }},
        {"data + mask",
         [=] {
           cuda::dense_backward_data(dX.data(), dZ.data(), W.data(), mask.data(), 1.25f, s.B, s.K, s.N, st, prec);
           return std::vector<std::vector<float>>{to_host(dX)};
         }},
        {"fused backward (weight, data + mask)",
         [=] {
           cuda::dense_backward_fused(dW.data(), db.data(), dX.data(), dZ.data(), X.data(), W.data(), mask.data(),
                                      1.25f, s.B, s.K, s.N, st, prec, ws.data());
           return std::vector<std::vector<float>>{to_host(dW), to_host(db), to_host(dX)};
         }},
    };
  }
};

bool all_bitwise(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!bitwise_equal(a[i], b[i])) return false;
  return true;
}

// Deep enough for the forward's K split (K >= 512) and the weight GEMM's row split (B >= 512).
Shape split_shape() { return quick_tests() ? Shape{576, 520, 24} : Shape{1100, 784, 72}; }

TEST_CASE("autotune: each launcher keeps the fastest tile, runs it afterwards, bit for bit the forced tile") {
  Clean clean;
  Stream stream;
  Operands o(split_shape());
  const std::vector<GemmPrecision> precisions =
      quick_tests() ? std::vector<GemmPrecision>{GemmPrecision::FP32, GemmPrecision::TF32}
                    : std::vector<GemmPrecision>{GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16};
  for (const GemmPrecision prec : precisions) {
    // A tile the size model does not pick at this shape, not bitwise-special: the result must be
    // the family's bits (FP32: one FMA chain per output; TF32/BF16: the same mma sequence).
    const std::string fastest = prec == GemmPrecision::FP32 ? "vec32" : "pipe64";
    for (Op& op : o.ops(prec, stream.get())) {
      INFO(op.name, ", precision ", int(prec));
      Clean::reset();
      const auto model = op.run();  // no scope: the size model
      CHECK(cuda::dense_last_tile() == "auto");
      favour(fastest);
      std::vector<std::vector<float>> first, again;
      {
        const cuda::DenseAutotune scope;
        first = op.run();  // tunes, then runs the kept tile
        again = op.run();
        CHECK(cuda::dense_last_tile() == fastest);
      }
      const std::vector<Record> rec = cuda::dense_autotune_records();
      REQUIRE(rec.size() == 1);  // once per operation
      CHECK(rec[0].chosen == fastest);
      CHECK(rec[0].model == "model");
      CHECK(rec[0].chosen_us == 1.0);
      CHECK(rec[0].model_us == 10.0);
      CHECK(rec[0].rejected.empty());
      CHECK(rec[0].candidates >= (prec == GemmPrecision::FP32 ? 5 : 5));
      force_label(fastest);
      const auto forced = op.run();
      cuda::dense_force_tile({});
      cuda::dense_force_simt_tile({});
      CHECK_MESSAGE(all_bitwise(first, forced), "the tuned launch is not the kept tile");
      CHECK_MESSAGE(all_bitwise(again, forced), "a later launch is not the kept tile");
      CHECK_MESSAGE(all_bitwise(model, forced), "the family's bits changed with the tile");
      // The outputs are real: random operands give no all-zero or poisoned result.
      for (const auto& v : forced)
        CHECK(std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }));
    }
  }
}

TEST_CASE("autotune: a tile whose outputs disagree is rejected and never runs; summation order is no disagreement") {
  Clean clean;
  Stream stream;
  Operands o(split_shape());
  Op forward = o.ops(GemmPrecision::FP32, stream.get())[0];
  struct Fault {
    const char* what;
    std::function<void(std::vector<float>&)> apply;
    bool rejected;
  };
  const std::vector<Fault> faults = {
      {"NaN", [](std::vector<float>& v) { v[v.size() / 2] = std::nanf(""); }, true},
      {"one element off by 1 % of the largest",
       [](std::vector<float>& v) {
         float m = 0;
         for (float x : v) m = std::max(m, std::fabs(x));
         v[7] += 0.01f * m;
       },
       true},
      {"every element off by float32 rounding",
       [](std::vector<float>& v) {
         for (float& x : v) x = std::nextafter(x, 2.0f * x + 1.0f);
       },
       false},
  };
  for (const Fault& f : faults) {
    INFO(f.what);
    Clean::reset();
    cuda::autotune::TestHooks h;
    h.time_us = [](const std::string& l) { return l == "vec64" ? 1.0 : l == "vec32" ? 5.0 : l == "model" ? 10.0 : 20.0; };
    h.corrupt = [&f](const std::string& l, std::vector<float>& out) {
      if (l == "vec64") f.apply(out);
    };
    cuda::autotune::set_test_hooks(h);
    {
      const cuda::DenseAutotune scope;
      forward.run();
      forward.run();
    }
    const std::vector<Record> rec = cuda::dense_autotune_records();
    REQUIRE(rec.size() == 1);
    if (f.rejected) {
      CHECK(rec[0].chosen == "vec32");  // the fastest of those that agree
      REQUIRE(rec[0].rejected.size() == 1);
      CHECK(rec[0].rejected[0].rfind("vec64: ", 0) == 0);
      CHECK(rec[0].line().find("REJECTED vec64") != std::string::npos);
    } else {
      CHECK(rec[0].chosen == "vec64");
      CHECK(rec[0].rejected.empty());
    }
  }
}

TEST_CASE("autotune, check only (timed false): every tile runs and is checked, none is timed, the model's pick stays") {
  Clean clean;
  Stream stream;
  Operands o(Shape{96, 400, 40});
  Op forward = o.ops(GemmPrecision::FP32, stream.get())[0];
  int timed = 0;
  std::vector<std::string> checked;
  cuda::autotune::TestHooks h;
  h.time_us = [&timed](const std::string&) { return ++timed, 1.0; };
  h.corrupt = [&checked](const std::string& l, std::vector<float>& out) {
    checked.push_back(l);
    if (l == "vec64") out[0] = std::nanf("");
  };
  cuda::autotune::set_test_hooks(h);
  {
    const cuda::DenseAutotune scope(true, false);
    forward.run();
    CHECK(cuda::dense_last_tile() == "model");
    {
      const cuda::DenseAutotune inner;  // a timed scope inside: the choice stands, no retuning
      forward.run();
    }
  }
  CHECK(timed == 0);
  CHECK(checked == std::vector<std::string>{"scalar", "vec32", "vec64", "vec128"});
  const std::vector<Record> rec = cuda::dense_autotune_records();
  REQUIRE(rec.size() == 1);
  CHECK(rec[0].chosen == "model");
  CHECK(!rec[0].timed);
  CHECK(rec[0].line().find(": model, 5 checked, not timed, in ") != std::string::npos);
  CHECK(rec[0].line().find(" ms; REJECTED vec64: output 0 is nan") != std::string::npos);
  REQUIRE(rec[0].rejected.size() == 1);
  CHECK(rec[0].rejected[0].rfind("vec64: output 0 is nan", 0) == 0);
}

TEST_CASE("autotune: the model's pick loses only to a tile kMargin faster") {
  Clean clean;
  Stream stream;
  Operands o(Shape{96, 400, 40});
  Op forward = o.ops(GemmPrecision::FP32, stream.get())[0];
  const double margin = cuda::autotune::kMargin;
  struct Race {
    double vec32, model;
    const char* kept;
  };
  for (const Race& r : {Race{100, 100, "model"}, Race{100 * (1 - margin / 2), 100, "model"},
                        Race{100 * (1 - 2 * margin), 100, "vec32"}, Race{150, 100, "model"}}) {
    INFO("vec32 ", r.vec32, " µs, model ", r.model, " µs");
    Clean::reset();
    cuda::autotune::TestHooks h;
    h.time_us = [r](const std::string& l) { return l == "vec32" ? r.vec32 : l == "model" ? r.model : 1000.0; };
    cuda::autotune::set_test_hooks(h);
    const cuda::DenseAutotune scope;
    forward.run();
    REQUIRE(cuda::dense_autotune_records().size() == 1);
    CHECK(cuda::dense_autotune_records()[0].chosen == r.kept);
    CHECK(cuda::dense_last_tile() == r.kept);
  }
}

TEST_CASE("autotune: once per operation; no scope, a closed scope, an off scope, a forced tile or a tiny GEMM bypass it") {
  Clean clean;
  Stream stream;
  Operands a(Shape{96, 400, 40}), b(Shape{97, 400, 40}), tiny(Shape{16, 200, 40});
  Op fa = a.ops(GemmPrecision::FP32, stream.get())[0], fb = b.ops(GemmPrecision::FP32, stream.get())[0];
  Op ft = tiny.ops(GemmPrecision::FP32, stream.get())[0];
  favour("vec32");
  fa.run();  // no scope
  CHECK(cuda::dense_last_tile() == "auto");
  CHECK(cuda::dense_autotune_records().empty());
  {
    const cuda::DenseAutotune off(false);
    fa.run();
    CHECK(cuda::dense_last_tile() == "auto");
    CHECK(cuda::dense_autotune_records().empty());
  }
  {
    const cuda::DenseAutotune scope;
    fa.run();
    fa.run();
    CHECK(cuda::dense_autotune_records().size() == 1);
    fb.run();  // another row count: another operation
    CHECK(cuda::dense_autotune_records().size() == 2);
    ft.run();  // 128 k multiply-adds: below the size worth tuning
    CHECK(cuda::dense_last_tile() == "auto");
    CHECK(cuda::dense_autotune_records().size() == 2);
    {
      const cuda::DenseAutotune nested_off(false);  // an outer scope still tunes
      fa.run();
      CHECK(cuda::dense_last_tile() == "vec32");
    }
    cuda::dense_force_simt_tile({cuda::SimtTileKind::Vec64, false});
    fa.run();
    CHECK(cuda::dense_last_tile() == "forced");
    cuda::dense_force_simt_tile({});
  }
  fa.run();  // the scope closed: the size model again, the choice kept for a later scope
  CHECK(cuda::dense_last_tile() == "auto");
  {
    const cuda::DenseAutotune scope;
    fa.run();
    CHECK(cuda::dense_last_tile() == "vec32");
  }
  CHECK(cuda::dense_autotune_records().size() == 2);
  const std::string line = cuda::dense_autotune_records()[0].line();
  CHECK(line.find("forward 96x400->40 fp32") == 0);
  CHECK(line.find(": vec32, 1.0 µs (model: 10.0 µs)") != std::string::npos);
}

#ifndef MNIST_HOST_EMULATION  // the emulation has no stream capture (its graphs are callables)
TEST_CASE("autotune: inside a stream capture an untuned GEMM runs the size model's tile, a tuned one its kept tile") {
  Clean clean;
  Stream stream;
  Operands o(Shape{96, 400, 40});
  Op forward = o.ops(GemmPrecision::FP32, stream.get())[0];
  favour("vec32");
  const cuda::DenseAutotune scope;
  auto capture = [&] {
    cudaGraph_t g = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
    cuda::dense_forward(o.Y.data(), o.X.data(), o.W.data(), o.b.data(), 96, 400, 40, true, stream.get(),
                        GemmPrecision::FP32, o.ws.data());
    CUDA_CHECK(cudaStreamEndCapture(stream.get(), &g));
    CUDA_CHECK(cudaGraphDestroy(g));
  };
  capture();
  CHECK(cuda::dense_last_tile() == "auto");
  CHECK(cuda::dense_autotune_records().empty());
  forward.run();  // uncaptured: tuned here
  REQUIRE(cuda::dense_autotune_records().size() == 1);
  capture();
  CHECK(cuda::dense_last_tile() == "vec32");
}
#endif

// With tickets, a split GEMM's pieces can be summed by each tile's last block (one launch) or by the
// second kernel: every unfolded candidate also runs " 2-pass", a 2-pass candidate can be kept, and
// then the later launches run it (the same bits as in the launch; in the emulation, two launches
// instead of one). The forward's split (K >= 512) and the weight GEMM's (B >= 512). The forward's
// " cluster" candidate likewise, where the device launches clusters (one launch, the same bits).
TEST_CASE("autotune: with tickets each unfolded tile is also tried as a second pass, and a kept one runs so") {
  Clean clean;
  Stream stream;
  Operands o(split_shape());
  const Shape s = o.s;
  for (const GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32}) {
    cuda::DropoutSpec drop;
    drop.p = 0.2f;
    drop.seed = 5;
    drop.counters = o.counters.data();
    const cudaStream_t st = stream.get();
    const Op forward{"relu + dropout forward, split K with tickets", [&] {
                       cuda::dense_relu_dropout_forward(o.Y.data(), o.X.data(), o.W.data(), o.b.data(), s.B, s.K, s.N,
                                                        drop, st, prec, o.ws.data(), o.tickets.data());
                       return std::vector<std::vector<float>>{to_host(o.Y)};
                     }};
    const Op weight = o.ops(prec, st)[2];  // weight + db, split rows, with tickets
    for (const Op& op : {forward, weight}) {
      const bool fwd = op.name == forward.name;
      const std::string base = prec == GemmPrecision::FP32 ? "vec32" : "pipe64";
      INFO(op.name, ", precision ", int(prec));
      Clean::reset();
      const auto model = op.run();  // no scope: in the launch (tickets)
      // (and, for the forward where the device has clusters, the split summed across a cluster)
      std::vector<std::string> keep{base + " 2-pass", base};
      if (fwd && cuda::dense_clusters_available()) keep.push_back(base + " cluster");
      for (const std::string& kept : keep) {
        INFO("favoured ", kept);
        Clean::reset();
        favour(kept);
        std::vector<std::vector<float>> first, again;
#ifdef MNIST_HOST_EMULATION
        long long launches = 0;  // (the emulation counts launches)
#endif
        {
          const cuda::DenseAutotune scope;
          first = op.run();
#ifdef MNIST_HOST_EMULATION
          const long long l0 = g_emu_launches;
#endif
          again = op.run();
#ifdef MNIST_HOST_EMULATION
          launches = g_emu_launches - l0;
#endif
          CHECK(cuda::dense_last_tile() == kept);
        }
        const std::vector<Record> rec = cuda::dense_autotune_records();
        REQUIRE(rec.size() == 1);
        CHECK(rec[0].chosen == kept);
        CHECK(rec[0].rejected.empty());
        // unfolded candidates twice: FP32 model + scalar + 3 vec (+ 3 folds, forward); TF32 model + mma + 3 pipe
        // (+ wgmma, wgmma128 where the device has them) (+ their folds, forward)
        // (wgmma, wgmma128 on both, wgmma2wg on the forward only)
        const int wg = prec != GemmPrecision::FP32 && cuda::dense_wgmma_available() ? (fwd ? 3 : 2) : 0;
        const int unfolded = prec == GemmPrecision::FP32 ? 5 : 5 + wg;
        const int folds = fwd ? (prec == GemmPrecision::FP32 ? 3 : 3 + wg) : 0;
        // (+ 3 with the split summed across a cluster, forward, where the device launches clusters:
        // the 3 vector tiles at FP32, the 3 pipelined ones at TF32/BF16; not run twice)
        const int clusters = fwd && cuda::dense_clusters_available() ? 3 : 0;
        CHECK(rec[0].candidates == 2 * unfolded + folds + clusters);
#ifdef MNIST_HOST_EMULATION
        CHECK(launches == (kept == base + " 2-pass" ? 2 : 1));
#endif
        CHECK_MESSAGE(all_bitwise(first, model), "the kept candidate changed the bits");
        CHECK_MESSAGE(all_bitwise(again, model), "a later launch changed the bits");
      }
      // Every ticket is back to 0 whichever way the pieces were summed (the next in-launch run starts clean).
      std::vector<unsigned> tk(o.tickets.size());
      CUDA_CHECK(cudaMemcpy(tk.data(), o.tickets.data(), o.tickets.bytes(), cudaMemcpyDeviceToHost));
      CHECK(std::all_of(tk.begin(), tk.end(), [](unsigned v) { return v == 0u; }));
    }
  }
}

// The wgmma tiles (sm_90a) are candidates wherever the device runs them: 14 forward candidates at
// TF32 with a split-K workspace (wgmma, wgmma128, wgmma2wg, each also folded), 8 without them (3
// more, the " cluster" ones, where the device launches clusters). (Until they had passed the GPU tests and the
// sanitizers, on the H200 at a018989, they were admitted only by an environment variable.)
TEST_CASE("autotune: the wgmma tiles are candidates where the device has them") {
  Clean clean;
  Stream stream;
  Operands o(split_shape());
  Op forward = o.ops(GemmPrecision::TF32, stream.get())[0];
  favour("model");
  cuda::dense_autotune_reset();
  const cuda::DenseAutotune scope;
  forward.run();
  const std::vector<Record> rec = cuda::dense_autotune_records();
  REQUIRE(rec.size() == 1);
  const auto& times = rec[0].times;
  const bool wgmma = std::any_of(times.begin(), times.end(), [](const auto& t) { return t.first.rfind("wgmma", 0) == 0; });
  CHECK(wgmma == cuda::dense_wgmma_available());
  CHECK(rec[0].candidates == (wgmma ? 14 : 8) + (cuda::dense_clusters_available() ? 3 : 0));
}

TEST_CASE("autotune on the device's own timings: every tile agrees at layer 0's shapes, and the kept one runs") {
  Clean clean;
#ifdef MNIST_HOST_EMULATION  // the emulation's events all read 0: one run per tile, no timing loops
  cuda::autotune::TestHooks h;
  h.time_us = [](const std::string&) { return 1.0; };
  cuda::autotune::set_test_hooks(h);
#endif
  Stream stream;
  const Shape s = quick_tests() ? Shape{256, 784, 128} : Shape{4096, 784, 128};
  Operands o(s);
  for (const GemmPrecision prec : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
    std::vector<Op> ops = o.ops(prec, stream.get());
    for (const Op& op : {ops[1], ops[3]}) {  // layer 0's forward and weight pieces, X from the images
      INFO(op.name, ", precision ", int(prec));
      cuda::dense_autotune_reset();
      std::vector<std::vector<float>> tuned;
      {
        const cuda::DenseAutotune scope;
        op.run();
        tuned = op.run();
      }
      const std::vector<Record> rec = cuda::dense_autotune_records();
      REQUIRE(rec.size() == 1);
      MESSAGE(rec[0].line());
      CHECK_MESSAGE(rec[0].rejected.empty(), rec[0].line());
      const bool wgmma = prec != GemmPrecision::FP32 && cuda::dense_wgmma_available();
      const bool fwd = op.name.find("forward") != std::string::npos;
      const int clusters = fwd && cuda::dense_clusters_available() ? 3 : 0;  // (the " cluster" candidates)
      CHECK(rec[0].candidates == (prec == GemmPrecision::FP32 ? (fwd ? 8 : 5) : (fwd ? (wgmma ? 14 : 8) : (wgmma ? 7 : 5))) +
                                     clusters);
      if (rec[0].chosen != "model") {
        force_label(rec[0].chosen);
        const auto forced = op.run();
        cuda::dense_force_tile({});
        cuda::dense_force_simt_tile({});
        CHECK_MESSAGE(all_bitwise(tuned, forced), "the kept tile ", rec[0].chosen, " is not what ran");
      }
    }
  }
}

}  // namespace
}  // namespace mnist::test
