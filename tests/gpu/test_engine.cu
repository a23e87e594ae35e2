// The CUDA engine against the CPU reference engine: same EngineConfig (so the same initial
// weights, epoch shuffles and dropout masks), trained on the same small random dataset, compared
// epoch by epoch (stats, parameters, optimiser state), then in evaluation and prediction.
//
// Tolerances. Parameters are compared by their change since initialisation (Δ = p - p0), with a
// normalised error of 1e-3: the two engines differ only by FP32 summation order (~1e-6 relative
// in each gradient), which Adam turns into update differences of ~1e-6·lr per element, except
// for the rare gradient component that sits within rounding of zero, where Adam's normalisation
// (m / (sqrt(v) + eps)) can turn a tiny absolute difference into one of up to lr. A few such
// elements out of ~10⁵ over a few dozen steps stay well below 1e-3 of ‖Δ‖ (≈ lr·sqrt(#params·steps)),
// while any real fault (a wrong mask, step, batch or order) changes every element's update by
// ~lr, a normalised error of order 1. Loss means: 1e-4 relative. Accuracy: the argmax can differ
// only for a near-tie, so at most one example per epoch. At TF32/BF16 the rounding of the GEMM
// inputs turns those ulp differences into 2^-11 / 2^-8 ones and the runs drift apart as the CPU
// engine drifts from itself under a one-ulp nudge: each tolerance is then the larger of the above
// and kYardstickFactor times that drift (tests/gpu/engine_problem.hpp, NudgedTwins).
// Evaluation and prediction are compared on the same weights (the CPU engine's, loaded into the
// GPU engine), so their tolerances stay the FP32 ones at every precision.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/autotune.cuh"
#include "kernels/dense.cuh"
#include "kernels/pdl.cuh"
#include "layers/engine.hpp"
#include "runtime/cuda_check.cuh"
#include "tests/gpu/engine_problem.hpp"
#include "tests/gpu/gpu_test.cuh"

namespace mnist::test {
namespace {

void check_stats(const EpochStats& gpu, const EpochStats& cpu, int n, const char* what, double loss_tol = 1e-4,
                 double examples = 1.0) {
  INFO(what);
  CHECK(gpu.examples == cpu.examples);
  CHECK(gpu.loss == doctest::Approx(cpu.loss).epsilon(loss_tol));
  CHECK(std::fabs(gpu.accuracy - cpu.accuracy) * n <= examples + 1e-9);
}

// Trains both engines `epochs` epochs from the same config and compares them after each one.
void compare_with_cpu(const Problem& p, int epochs, float lr) {
  std::optional<NudgedTwins> twins;  // at TF32/BF16: the tolerances' yardstick
  if (p.cfg.precision != Precision::FP32) twins.emplace(p);
  auto cpu = make_cpu_engine(p.cfg);
  auto gpu = make_cuda_engine(p.cfg);
  const int tc = cpu->add_dataset(p.view()), tg = gpu->add_dataset(p.view());
  std::vector<float> p0, pc, pg;
  cpu->get_params(p0);
  gpu->get_params(pg);
  CHECK(bitwise_equal(pg, p0));  // same initialisation
  for (int e = 0; e < epochs; ++e) {
    INFO("epoch ", e);
    const EpochStats sc = cpu->train_epoch(tc, e, lr);
    const EpochStats sg = gpu->train_epoch(tg, e, lr);
    cpu->get_params(pc);
    gpu->get_params(pg);
    const NudgedTwins::Drift y = twins ? twins->epoch(e, lr, p0, pc, sc) : NudgedTwins::Drift{};
    check_stats(sg, sc, p.n, "train", yardstick_tol(1e-4, y.loss), yardstick_tol(1.0, y.accuracy));
    expect_close(delta(pg, p0), delta(pc, p0), yardstick_tol(1e-3, y.params), "parameter change");
  }
  TrainState st_c, st_g;
  cpu->get_state(st_c);
  gpu->get_state(st_g);
  CHECK(st_g.step == st_c.step);
  const auto [ym, yv] = twins ? twins->moments(st_c) : std::pair<double, double>{0.0, 0.0};
  expect_close(st_g.m, st_c.m, yardstick_tol(1e-3, ym), "Adam m");
  expect_close(st_g.v, st_c.v, yardstick_tol(1e-3, yv), "Adam v");

  gpu->set_state(st_c);  // evaluation and prediction on the same weights
  check_stats(gpu->evaluate(tg), cpu->evaluate(tc), p.n, "evaluate");
  const int np = std::min(p.n, 300);
  const std::size_t C = std::size_t(p.cfg.spec.classes);
  std::vector<float> prob_c(std::size_t(np) * C), prob_g(std::size_t(np) * C, NAN);
  cpu->predict(prob_c.data(), p.images.data(), np);
  gpu->predict(prob_g.data(), p.images.data(), np);
  expect_close(prob_g, prob_c, 1e-4, "predict");
}

TEST_CASE("CUDA engine = CPU engine: small model, dropout, partial last batch") {
  // 200 examples in batches of 32: 6 replays of the captured step graph + one 8-row batch.
  compare_with_cpu(make_problem(50, {33, 20}, 10, 0.2f, 32, 200, 7), 3, 1e-3f);
}

TEST_CASE("CUDA engine = CPU engine: the default 784-128-64-10 model") {
  compare_with_cpu(make_problem(784, {128, 64}, 10, 0.2f, 128, 600, 42), 2, 1e-3f);
}

TEST_CASE("CUDA engine = CPU engine: multi-step graphs (3 steps a replay, then 1, then the partial batch)") {
  // 600 / 64: 9 full batches = 3 replays of the 3-step graph, then an 11-row batch.
  Problem p = make_problem(784, {128, 64}, 10, 0.2f, 64, 600, 43);
  p.cfg.graph_steps = 3;
  compare_with_cpu(p, 2, 1e-3f);
}

TEST_CASE("CUDA engine = CPU engine: --gemm cublas path") {
  Problem p = make_problem(50, {33, 20}, 10, 0.2f, 32, 200, 8);
  p.cfg.gemm = Gemm::Cublas;
  compare_with_cpu(p, 2, 1e-3f);
}

TEST_CASE("CUDA engine = CPU engine: --kernels tail (layers >= 1 in one kernel, Adam fused with the sums)") {
  // The default model at batch 512 (layer 0's weight GEMM in pieces, the tail in several row
  // blocks, a 88-row last batch), then an odd three-hidden-layer model; each at every precision
  // against the CPU engine with the same input rounding (the tolerances above; at tf32/bf16 widened
  // to the CPU engine's own drift, which the H200 showed these runs need: 2.6e-3 after one epoch).
  for (const Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    INFO("precision ", std::string(to_string(prec)));
    Problem p = make_problem(784, {128, 64}, 10, 0.2f, 512, 1112, 44);
    p.cfg.kernels = Kernels::Tail;
    p.cfg.precision = prec;
    REQUIRE(make_cuda_engine(p.cfg)->tail_kernel());
    compare_with_cpu(p, 2, 1e-3f);
    Problem q = make_problem(50, {40, 24, 17}, 7, 0.2f, 64, 300, 45);
    q.cfg.kernels = Kernels::Tail;
    q.cfg.precision = prec;
    compare_with_cpu(q, 2, 1e-3f);
  }
  Problem f = make_problem(50, {33}, 10, 0.2f, 32, 100, 46);
  f.cfg.kernels = Kernels::Tail;
  f.cfg.gemm = Gemm::Cublas;
  auto e = make_cuda_engine(f.cfg);
  CHECK(!e->tail_kernel());
  CHECK(e->notice().find("--kernels tail") != std::string::npos);
}

TEST_CASE("CUDA engine = CPU engine: --kernels tail in 16-row blocks, two an SM (EngineConfig::tail_rows)") {
  // The tail kernel's rows in 16-row halves (cuda::TailRows::Half: 32 blocks at batch 512, 6 for the
  // 88-row last batch) against the CPU engine, as the 32-row case above; the path race's option
  // "tail step, two blocks an SM" trains so.
  for (const Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16}) {
    INFO("precision ", std::string(to_string(prec)));
    Problem p = make_problem(784, {128, 64}, 10, 0.2f, 512, 1112, 47);
    p.cfg.kernels = Kernels::Tail;
    p.cfg.precision = prec;
    p.cfg.tail_rows = TailRows::Rows16;
    REQUIRE(make_cuda_engine(p.cfg)->tail_kernel());
    compare_with_cpu(p, 2, 1e-3f);
  }
}

TEST_CASE("CUDA engine = CPU engine: --kernels tail with layer 0 inside the tail kernel (EngineConfig::tail_layer0)") {
  // Layer 0's forward computed by the tail kernel (cuda::TailLayer0: no layer-0 forward launch, A0
  // never in memory) against the CPU engine, as the cases above, at tf32 and bf16 (fp32 ignores the
  // option: checked); the path race's option "tail step, layer 0 inside" trains so. Batch 512 and an
  // 88-row last batch.
  for (const Precision prec : {Precision::TF32, Precision::BF16}) {
    INFO("precision ", std::string(to_string(prec)));
    Problem p = make_problem(784, {128, 64}, 10, 0.2f, 512, 1112, 53);
    p.cfg.kernels = Kernels::Tail;
    p.cfg.precision = prec;
    p.cfg.tail_layer0 = true;
    REQUIRE(make_cuda_engine(p.cfg)->tail_layer0());
    compare_with_cpu(p, 2, 1e-3f);
  }
  Problem p = make_problem(784, {128, 64}, 10, 0.2f, 512, 1112, 53);
  p.cfg.kernels = Kernels::Tail;
  p.cfg.tail_layer0 = true;
  CHECK_FALSE(make_cuda_engine(p.cfg)->tail_layer0());
}

// The default model at batch 512 on n examples, on the given path and precision, with the head
// kernel from this batch (head_min_batch 0): the cases below that compare two runs of one path.
Problem large_batch_problem(Precision prec, Kernels kernels, int n, uint64_t seed) {
  Problem p = make_problem(784, {128, 64}, 10, 0.2f, 512, n, seed);
  p.cfg.kernels = kernels;
  p.cfg.precision = prec;
  p.cfg.head_min_batch = 0;
  return p;
}

// Two epochs on p (the second resumed at batch 1), then the state, an evaluation and predictions:
// what the cases below compare bit for bit between two configurations of one path.
struct TwoEpochs {
  std::vector<EpochProgress> progress;
  TrainState state;
  EpochStats eval;
  std::vector<float> probs;
};
TwoEpochs two_epochs(Engine& gpu, const Problem& p) {
  TwoEpochs r;
  const int t = gpu.add_dataset(p.view());
  for (int e = 0; e < 2; ++e) {
    EpochProgress pr;
    pr.next_batch = e;
    gpu.train_steps(t, e, 1e-3f, pr, nullptr);
    r.progress.push_back(pr);
  }
  gpu.get_state(r.state);
  r.eval = gpu.evaluate(t);
  r.probs.assign(std::size_t(p.n) * 10, NAN);
  gpu.predict(r.probs.data(), p.images.data(), p.n);
  return r;
}
void check_bitwise(const TwoEpochs& a, const TwoEpochs& b) {
  for (int e = 0; e < 2; ++e) {
    CHECK(std::memcmp(&a.progress[e].loss_sum, &b.progress[e].loss_sum, sizeof(double)) == 0);
    CHECK(a.progress[e].correct == b.progress[e].correct);
  }
  CHECK(a.state.step == b.state.step);
  CHECK(bitwise_equal(a.state.params, b.state.params));
  CHECK(bitwise_equal(a.state.m, b.state.m));
  CHECK(bitwise_equal(a.state.v, b.state.v));
  CHECK(std::memcmp(&a.eval.loss, &b.eval.loss, sizeof(double)) == 0);
  CHECK(a.eval.accuracy == b.eval.accuracy);
  CHECK(bitwise_equal(a.probs, b.probs));
}

// Layer 0's X read in place from the images (EngineConfig::x_in_place, the default) against the
// batch gathered into floats first (false: the launches before it). Both give the GEMMs the same
// floats (pixel_value) and the GEMMs' results do not depend on where X came from
// (test_dense_images.cu), so the tolerance is none: each epoch's loss sum and hits, every parameter
// and Adam moment, the evaluation and the predictions bitwise. The default model on 4200 examples
// at batch 512 (a 104-row last batch, the second epoch resumed at batch 1; evaluation and
// prediction in two chunks, the second from row 4096), graph path (with the head from this batch:
// head_min_batch 0) and tail path, at every precision. The tail path in place runs twice: its weight
// GEMM on X gathered beside the tail kernel (EngineConfig::x_weight_gathered, the default) and on
// the images.
TEST_CASE("CUDA engine: layer 0 reading the images in place = the gathered batch, bitwise") {
  for (const Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (const Kernels kernels : {Kernels::Graph, Kernels::Tail}) {
      INFO("precision ", std::string(to_string(prec)), ", kernels ", std::string(to_string(kernels)));
      Problem p = large_batch_problem(prec, kernels, 4200, 47);
      p.cfg.eval_rows = 4096;  // (two chunks; the default's 16384 would be one)
      const int runs = kernels == Kernels::Tail ? 3 : 2;
      TwoEpochs r[3];
      for (int in_place = 0; in_place < runs; ++in_place) {  // gathered, in place, in place + weight on images
        p.cfg.x_in_place = in_place >= 1;
        p.cfg.x_weight_gathered = in_place == 1;
        auto gpu = make_cuda_engine(p.cfg);
        REQUIRE(gpu->tail_kernel() == (kernels == Kernels::Tail));
        r[in_place] = two_epochs(*gpu, p);
      }
      for (int i = 1; i < runs; ++i) {
        INFO("run ", i, " against the gathered X");
        check_bitwise(r[0], r[i]);
      }
    }
}

// EngineConfig::tail_layer0_cluster: layer 0 inside the tail kernel, its blocks sharing that work
// across thread block clusters (each computes 1/C of the units for the C blocks' rows), against each
// block alone. Every A0 element is the same mma chain, so nothing may change: two epochs (4200
// examples at batch 512: 16 blocks, clusters of 4 on an H100/H200; a last batch of 104 rows, 4
// blocks), the state, the evaluation and the predictions, bitwise. The MESSAGE says the size the
// device took (1 where it launches no clusters: then the two runs are one).
TEST_CASE("CUDA engine: layer 0 shared across thread block clusters changes no bit") {
  for (const Precision prec : {Precision::TF32, Precision::BF16}) {
    INFO("precision ", std::string(to_string(prec)));
    Problem p = large_batch_problem(prec, Kernels::Tail, 4200, 59);
    p.cfg.tail_layer0 = true;
    TwoEpochs r[2];
    int sizes[2] = {0, 0};
    for (const int on : {0, 1}) {
      p.cfg.tail_layer0_cluster = on ? Layer0Cluster::Four : Layer0Cluster::One;
      auto gpu = make_cuda_engine(p.cfg);
      REQUIRE(gpu->tail_layer0());
      sizes[on] = gpu->tail_layer0_cluster();
      r[on] = two_epochs(*gpu, p);
    }
    MESSAGE("layer 0 in clusters of ", sizes[1], " (", to_string(prec), ")");
    CHECK(sizes[0] == 1);
    CHECK(sizes[1] == (cuda::device_launches_clusters() ? 4 : 1));  // (16 blocks of the model: 4 clusters of 4 fit any sm_90)
    check_bitwise(r[0], r[1]);
  }
}

// EngineConfig::rounded_weights (the default): at TF32/BF16 the graph and tail paths' GEMMs read W
// from a copy of the parameters rounded to the precision, which the optimizer writes in its pass
// (kernels/adam.cuh RoundedParams), and skip their own rounding of W. Rounding is idempotent, so
// nothing may change against the raw weights: each epoch's loss sum and hits, every parameter and
// Adam moment, the evaluation and the predictions bitwise (the default model at batch 512 on 1300
// examples, head kernel included on the graph path). FP32 keeps no copy. Then the copy must follow
// the parameters written from the host: the trained engine given another engine's initial weights
// (set_params), and then that engine's whole state (set_state), evaluates and predicts bitwise as
// that engine; a copy left behind would evaluate the trained weights instead.
TEST_CASE("CUDA engine: W read from the optimizer's rounded copy changes no bit; the copy follows set_params") {
  for (const Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (const Kernels kernels : {Kernels::Graph, Kernels::Tail}) {
      INFO("precision ", std::string(to_string(prec)), ", kernels ", std::string(to_string(kernels)));
      Problem p = large_batch_problem(prec, kernels, 1300, 53);
      TwoEpochs r[2];
      for (const int on : {0, 1}) {
        p.cfg.rounded_weights = on != 0;
        auto gpu = make_cuda_engine(p.cfg);
        REQUIRE(gpu->tail_kernel() == (kernels == Kernels::Tail));
        CHECK(gpu->rounded_weights() == (on && prec != Precision::FP32));
        r[on] = two_epochs(*gpu, p);
        if (!on) continue;
        Problem q = p;
        q.cfg.seed = 77;  // other initial weights
        auto other = make_cuda_engine(q.cfg);
        const int to = other->add_dataset(q.view()), tg = gpu->add_dataset(p.view());
        std::vector<float> w;
        other->get_params(w);
        REQUIRE_FALSE(bitwise_equal(w, r[1].state.params));
        auto evaluate_both = [&](const char* what) {
          INFO(what);
          const EpochStats a = gpu->evaluate(tg), b = other->evaluate(to);
          CHECK(std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0);
          CHECK(a.accuracy == b.accuracy);
          std::vector<float> pa(std::size_t(p.n) * 10, NAN), pb(pa.size(), NAN);
          gpu->predict(pa.data(), p.images.data(), p.n);
          other->predict(pb.data(), q.images.data(), q.n);
          CHECK(bitwise_equal(pa, pb));
        };
        gpu->set_params(w);
        evaluate_both("after set_params");
        EpochProgress pr;
        other->train_steps(to, 0, 1e-3f, pr, nullptr);  // (another state to load)
        TrainState st;
        other->get_state(st);
        gpu->set_state(st);
        evaluate_both("after set_state");
      }
      check_bitwise(r[0], r[1]);
    }
}

// EngineConfig::pdl: the tail path's launches programmatic (kernels/pdl.cuh; each kernel launched
// while the one before runs, its prologue overlapping it) against ordinary launches. Every kernel
// waits before it reads its predecessor's output, so nothing may change: each epoch's loss sum and
// hits, every parameter and Adam moment, the evaluation and the predictions bitwise, at batch 512
// and 4096 (the model's batch for issue 12: 2 full steps replayed and a partial one), every
// precision. On sm_90+ the probe must pass (programmatic_launch() true): a device where it fails
// would silently lose the overlap, which this test reports instead.
TEST_CASE("CUDA engine: programmatic launches on the tail path change no bit") {
  int device = 0, major = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  for (const Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (const int batch : {512, 4096}) {
      INFO("precision ", std::string(to_string(prec)), ", batch ", batch);
      Problem p = large_batch_problem(prec, Kernels::Tail, batch == 512 ? 1300 : 9000, 49);
      p.cfg.batch_size = batch;
      // 0: ordinary launches; 1: programmatic, the largest carveout (the default); 2: programmatic,
      // the driver's carveout (EngineConfig::carveout).
      TwoEpochs r[3];
      for (const int v : {0, 1, 2}) {
        INFO("variant ", v);
        p.cfg.pdl = v ? Pdl::On : Pdl::Off;
        p.cfg.carveout = v == 2 ? Carveout::Driver : Carveout::Max;
        auto gpu = make_cuda_engine(p.cfg);
        REQUIRE(gpu->tail_kernel());
        CHECK(gpu->programmatic_launch() == (v >= 1 && major >= 9));
        CHECK(gpu->max_carveout() == (v == 1 && major >= 9));
        r[v] = two_epochs(*gpu, p);
      }
      check_bitwise(r[0], r[1]);
      check_bitwise(r[0], r[2]);
    }
}

__global__ void carveout_probe_kernel(int* out) { *out = 1; }

// kernels/pdl.cuh's launch_kernel inside a ProgrammaticLaunches scope, captured as the engine
// captures its steps: the kernel node carries the 100 % carveout where the scope asks for it
// (pdl_scope.hpp), and not outside a scope or with --carveout driver's (true, false).
TEST_CASE("launch_kernel: a scope's carveout reaches the captured kernel node") {
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  DeviceBuffer<int> out(1);
  for (const int v : {0, 1, 2}) {
    INFO("scope ", v, " (0: none, 1: overlap + carveout, 2: overlap alone)");
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    {
      std::optional<cuda::ProgrammaticLaunches> scope;
      if (v) scope.emplace(true, v == 1);
      cuda::launch_kernel(carveout_probe_kernel, dim3(1), dim3(1), 0, stream, out.data());
    }
    CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    std::size_t n = 0;
    CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
    REQUIRE(n == 1);
    cudaGraphNode_t node = nullptr;
    CUDA_CHECK(cudaGraphGetNodes(graph, &node, &n));
    cudaLaunchAttributeValue value{};
    const cudaError_t got = cudaGraphKernelNodeGetAttribute(node, cudaLaunchAttributePreferredSharedMemoryCarveout, &value);
    if (v == 1) {
      REQUIRE(got == cudaSuccess);
      CHECK(value.sharedMemCarveout == 100u);
    } else if (got == cudaSuccess) {  // (a node without the attribute may also answer that it has none)
      CHECK(value.sharedMemCarveout != 100u);
    } else {
      cudaGetLastError();
    }
    CUDA_CHECK(cudaGraphDestroy(graph));
  }
  CUDA_CHECK(cudaStreamDestroy(stream));
}

// EngineConfig::autotune: with timings injected so that a tile the size model does not pick wins
// every GEMM (FP32: vec32; TF32/BF16: pipe64, the same family of bits as every model pick), the
// engine must give bit for bit what it gives untuned (the tile contracts of kernels/dense.cuh), on
// the graph and the tail paths, and report the training step's own GEMMs as tuned (tune_step ran
// before the graphs captured them: a GEMM first met inside a capture would not be tuned at all).
TEST_CASE("CUDA engine: --autotune keeps other tiles and changes no bit; the step's GEMMs are tuned before capture") {
  for (const Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (const Kernels kernels : {Kernels::Graph, Kernels::Tail}) {
      INFO("precision ", std::string(to_string(prec)), ", kernels ", std::string(to_string(kernels)));
      Problem p = large_batch_problem(prec, kernels, 1300, 48);
      const std::string kept = prec == Precision::FP32 ? "vec32" : "pipe64";
      TrainState state[2];
      EpochStats train[2], eval[2];
      std::vector<float> probs[2];
      std::vector<std::string> report[2];
      for (const int tune : {0, 1}) {
        cuda::dense_autotune_reset();
        cuda::autotune::TestHooks h;
        h.time_us = [kept](const std::string& l) { return l == kept ? 1.0 : l == "model" ? 10.0 : 20.0; };
        cuda::autotune::set_test_hooks(h);
        p.cfg.autotune = tune == 1 ? Autotune::On : Autotune::Off;
        auto gpu = make_cuda_engine(p.cfg);
        const int t = gpu->add_dataset(p.view());
        for (int e = 0; e < 2; ++e) train[tune] = gpu->train_epoch(t, e, 1e-3f);
        gpu->get_state(state[tune]);
        eval[tune] = gpu->evaluate(t);
        probs[tune].assign(std::size_t(p.n) * 10, NAN);
        gpu->predict(probs[tune].data(), p.images.data(), p.n);
        report[tune] = gpu->autotune_report();
      }
      cuda::autotune::set_test_hooks({});
      cuda::dense_autotune_reset();
      CHECK(report[0].empty());
      REQUIRE(!report[1].empty());
      bool step_forward = false, step_weight = false;
      for (const std::string& l : report[1]) {
        INFO(l);
        CHECK(l.find(": " + kept + ", ") != std::string::npos);
        CHECK(l.find("REJECTED") == std::string::npos);
        step_forward |= l.rfind("forward 512x784->128", 0) == 0;
        step_weight |= l.rfind(kernels == Kernels::Tail ? "weight pieces 512x784->128" : "weight+db 512x784->128", 0) == 0;
      }
      CHECK_MESSAGE(step_forward, "the training step's layer-0 forward was not tuned before the capture");
      CHECK_MESSAGE(step_weight, "the training step's layer-0 weight GEMM was not tuned before the capture");
      CHECK(std::memcmp(&train[0].loss, &train[1].loss, sizeof(double)) == 0);
      CHECK(state[0].step == state[1].step);
      CHECK(bitwise_equal(state[0].params, state[1].params));
      CHECK(bitwise_equal(state[0].m, state[1].m));
      CHECK(bitwise_equal(state[0].v, state[1].v));
      CHECK(std::memcmp(&eval[0].loss, &eval[1].loss, sizeof(double)) == 0);
      CHECK(bitwise_equal(probs[0], probs[1]));
    }
}

// Kernels::Auto above the fused kernel's batches, autotuned, on the device's own clock: the first
// epoch races the graph and tail paths; the tail must agree with the graph path (no rejection: a
// hardware check of the tail kernel and the fused Adam pass against the graph path), and the engine
// must then train bit for bit as an engine pinned to the path it kept (the race restores the state
// exactly; the second engine reuses the process's tuned tiles, so both run the same tiles).
TEST_CASE("CUDA engine: --kernels auto with --autotune races graph and tail, then trains as the path it kept") {
  for (const Precision prec : {Precision::FP32, Precision::TF32}) {
    INFO("precision ", std::string(to_string(prec)));
    cuda::dense_autotune_reset();
    Problem p = make_problem(784, {128, 64}, 10, 0.2f, 1024, 2600, 49);
    p.cfg.precision = prec;
    p.cfg.autotune = Autotune::On;
    TrainState state[2];
    EpochStats eval[2];
    bool tail = false;
    for (const int pinned : {0, 1}) {
      p.cfg.kernels = pinned ? (tail ? Kernels::Tail : Kernels::Graph) : Kernels::Auto;
      auto gpu = make_cuda_engine(p.cfg);
      const int t = gpu->add_dataset(p.view());
      for (int e = 0; e < 2; ++e) gpu->train_epoch(t, e, 1e-3f);
      gpu->get_state(state[pinned]);
      eval[pinned] = gpu->evaluate(t);
      if (!pinned) {
        tail = gpu->tail_kernel();
        const std::vector<std::string> report = gpu->autotune_report();
        REQUIRE(!report.empty());
        MESSAGE(report[0]);
        CHECK(report[0].rfind("training step 1024 rows", 0) == 0);
        CHECK(report[0].find(tail ? ": tail step, " : ": graph step, ") != std::string::npos);
        for (const std::string& l : report) CHECK_MESSAGE(l.find("REJECTED") == std::string::npos, l);
      }
    }
    CHECK(bitwise_equal(state[0].params, state[1].params));
    CHECK(bitwise_equal(state[0].m, state[1].m));
    CHECK(std::memcmp(&eval[0].loss, &eval[1].loss, sizeof(double)) == 0);
  }
  cuda::dense_autotune_reset();
}

TEST_CASE("CUDA engine = CPU engine: no shuffle, no dropout, one hidden layer") {
  Problem p = make_problem(33, {17}, 3, 0.0f, 16, 100, 9);
  p.cfg.shuffle = false;
  compare_with_cpu(p, 2, 5e-3f);
}

TEST_CASE("CUDA engine: two runs with one seed are bitwise identical") {
  const Problem p = make_problem(784, {128, 64}, 10, 0.2f, 64, 300, 5);
  std::vector<float> a, b;
  EpochStats sa, sb;
  for (int run = 0; run < 2; ++run) {
    auto gpu = make_cuda_engine(p.cfg);
    const int t = gpu->add_dataset(p.view());
    EpochStats s;
    for (int e = 0; e < 2; ++e) s = gpu->train_epoch(t, e, 1e-3f);
    gpu->get_params(run == 0 ? a : b);
    (run == 0 ? sa : sb) = s;
  }
  CHECK(bitwise_equal(a, b));
  CHECK(std::memcmp(&sa.loss, &sb.loss, sizeof(double)) == 0);
  CHECK(sa.accuracy == sb.accuracy);
}

TEST_CASE("CUDA engine: steps per graph replay change nothing (bitwise), also after a mid-epoch resume") {
  // 300 / 32: 9 full batches and a 12-row one. K = 1, 2, 4, 25 split the full batches differently
  // between the K-step graph, the one-step graph and (K = 25 > 9) the one-step graph only.
  const Problem base = make_problem(50, {33, 20}, 10, 0.2f, 32, 300, 13);
  std::vector<float> ref;
  EpochProgress ref_progress;
  for (int K : {1, 2, 4, 25}) {
    INFO("graph_steps ", K);
    Problem p = base;
    p.cfg.graph_steps = K;
    auto gpu = make_cuda_engine(p.cfg);
    const int t = gpu->add_dataset(p.view());
    gpu->train_epoch(t, 0, 1e-3f);
    EpochProgress progress;
    progress.next_batch = 3;  // resume epoch 1 at its 4th batch
    CHECK(gpu->train_steps(t, 1, 1e-3f, progress, nullptr));
    std::vector<float> params;
    gpu->get_params(params);
    TrainState st;
    gpu->get_state(st);
    CHECK(st.step == 9 + 1 + 6 + 1);
    if (ref.empty()) {
      ref = params;
      ref_progress = progress;
    } else {
      CHECK(bitwise_equal(params, ref));
      CHECK(progress.next_batch == ref_progress.next_batch);
      CHECK(progress.examples == ref_progress.examples);
      CHECK(progress.correct == ref_progress.correct);
      CHECK(std::memcmp(&progress.loss_sum, &ref_progress.loss_sum, sizeof(double)) == 0);
    }
  }
}

TEST_CASE("CUDA engine continues a CPU run from its TrainState (step counter, moments)") {
  const Problem p = make_problem(50, {33, 20}, 10, 0.2f, 32, 200, 11);
  auto cpu = make_cpu_engine(p.cfg);
  auto gpu = make_cuda_engine(p.cfg);
  const int tc = cpu->add_dataset(p.view()), tg = gpu->add_dataset(p.view());
  cpu->train_epoch(tc, 0, 1e-3f);
  TrainState st;
  cpu->get_state(st);
  gpu->set_state(st);
  std::vector<float> p0 = st.params, pc, pg;
  check_stats(gpu->train_epoch(tg, 1, 1e-3f), cpu->train_epoch(tc, 1, 1e-3f), p.n, "epoch 1");
  cpu->get_params(pc);
  gpu->get_params(pg);
  expect_close(delta(pg, p0), delta(pc, p0), 1e-3, "parameter change");
}

TEST_CASE("CUDA engine: train_steps resumes mid-epoch and honours an interrupt") {
  const Problem p = make_problem(50, {33, 20}, 10, 0.2f, 32, 200, 12);
  auto cpu = make_cpu_engine(p.cfg);
  auto gpu = make_cuda_engine(p.cfg);
  const int tc = cpu->add_dataset(p.view()), tg = gpu->add_dataset(p.view());
  std::vector<float> p0, pc, pg;
  cpu->get_params(p0);

  std::atomic<bool> stop{true};
  EpochProgress none;
  CHECK_FALSE(gpu->train_steps(tg, 0, 1e-3f, none, &stop));
  CHECK(none.next_batch == 0);
  CHECK(none.examples == 0);

  // Stop before batch 5 (end_batch), as a checkpoint cut would; then resume at batch 3 below.
  {
    auto c2 = make_cpu_engine(p.cfg);
    auto g2 = make_cuda_engine(p.cfg);
    const int t2c = c2->add_dataset(p.view()), t2g = g2->add_dataset(p.view());
    EpochProgress a, b;
    a.end_batch = b.end_batch = 5;
    CHECK_FALSE(c2->train_steps(t2c, 0, 1e-3f, a, nullptr));
    CHECK_FALSE(g2->train_steps(t2g, 0, 1e-3f, b, nullptr));
    CHECK(b.next_batch == 5);
    CHECK(b.examples == a.examples);
    CHECK(b.loss_sum == doctest::Approx(a.loss_sum).epsilon(1e-4));
    b.end_batch = -1;
    CHECK(g2->train_steps(t2g, 0, 1e-3f, b, nullptr));
    CHECK(b.next_batch == 7);
    CHECK(b.examples == p.n);
  }

  EpochProgress pcpu, pgpu;
  pcpu.next_batch = pgpu.next_batch = 3;  // resume at the 4th of 7 batches
  CHECK(cpu->train_steps(tc, 0, 1e-3f, pcpu, nullptr));
  CHECK(gpu->train_steps(tg, 0, 1e-3f, pgpu, nullptr));
  CHECK(pgpu.next_batch == pcpu.next_batch);
  CHECK(pgpu.examples == pcpu.examples);
  CHECK(pgpu.loss_sum == doctest::Approx(pcpu.loss_sum).epsilon(1e-4));
  CHECK(std::llabs(pgpu.correct - pcpu.correct) <= 1);
  TrainState sc, sg;
  cpu->get_state(sc);
  gpu->get_state(sg);
  CHECK(sg.step == sc.step);
  expect_close(delta(sg.params, p0), delta(sc.params, p0), 1e-3, "parameter change");
}

}  // namespace
}  // namespace mnist::test
