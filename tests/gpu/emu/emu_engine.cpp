// The CUDA engine (layers/cuda_engine.cu, emulated on the host by run.sh) against the CPU engine,
// and its progress hook and device-memory cap. See README.md.
#include <cstdio>
#include <cmath>
#include <cstring>
#include <random>
#include <atomic>
#include <map>
#include "kernels/autotune.cuh"
#include "kernels/dense.cuh"
#include "layers/engine.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"
#include "runtime/device_buffer.cuh"
#include "runtime/graph.cuh"  // the emulation's capture and replay counters
#include <cooperative_groups.h>  // the count of programmatic launches
#include <cuda_runtime.h>
#include <cstdlib>
#include "emu_x_in_place.hpp"

using namespace mnist;
static int failures = 0, checks = 0;
void expect(bool c, const std::string& w) { ++checks; if (!c) { ++failures; std::printf("FAIL %s\n", w.c_str()); } }
double nerr(const std::vector<double>& o, const std::vector<double>& r) {
  double a = 0, b = 0; for (size_t i = 0; i < o.size(); ++i) { if (!std::isfinite(o[i])) return INFINITY; a += (o[i]-r[i])*(o[i]-r[i]); b += r[i]*r[i]; } return std::sqrt(a)/std::max(std::sqrt(b),1e-30);
}
std::vector<double> delta(const std::vector<float>& p, const std::vector<float>& p0) { std::vector<double> d(p.size()); for (size_t i = 0; i < p.size(); ++i) d[i] = double(p[i]) - p0[i]; return d; }
std::vector<uint8_t> rbytes(std::size_t n, uint64_t seed, int lo, int hi) { std::mt19937_64 g(seed); std::uniform_int_distribution<int> d(lo, hi); std::vector<uint8_t> v(n); for (auto& x : v) x = uint8_t(d(g)); return v; }

static bool g_head = true;  // EngineConfig::head_kernel of compare()'s CUDA engine
static bool g_split_in_launch = false;  // EngineConfig::split_in_launch of compare()'s CUDA engine
static Kernels g_kernels = Kernels::Graph;  // compare()'s CUDA path (Tail: the large-batch launches)

void compare(int input, std::vector<int> hidden, int classes, float dropout, int batch, int n, uint64_t seed, bool shuffle, int epochs, int resume_at, int graph_steps = 25) {
  EngineConfig cfg; cfg.head_kernel = g_head; cfg.head_min_batch = 0; cfg.split_in_launch = g_split_in_launch; cfg.spec.input = input; cfg.spec.hidden = hidden; cfg.spec.classes = classes; cfg.spec.dropout = dropout; cfg.batch_size = batch; cfg.seed = seed; cfg.shuffle = shuffle; cfg.graph_steps = graph_steps; cfg.kernels = g_kernels;  // the fused path: emu_fused.cpp
  auto images = rbytes(std::size_t(n) * input, seed + 1, 0, 255), labels = rbytes(n, seed + 2, 0, classes - 1);
  DataView v{images.data(), labels.data(), n, input};
  auto cpu = make_cpu_engine(cfg); auto gpu = make_cuda_engine(cfg);
  int tc = cpu->add_dataset(v), tg = gpu->add_dataset(v);
  std::vector<float> p0, pc, pg; cpu->get_params(p0); gpu->get_params(pg);
  expect(pg == p0, "init");
  const bool tail = g_kernels == Kernels::Tail;
  expect(gpu->head_kernel() == (g_head && !tail), "head kernel chosen as configured");
  expect(gpu->tail_kernel() == tail && gpu->notice().empty(), "tail path chosen as configured");
  const std::string tag = cat(tail ? "tail " : g_head ? "head " : "no-head ", "in=", input, " batch=", batch, " n=", n, " p=", dropout, shuffle ? "" : " noshuffle", " K=", graph_steps);
  for (int e = 0; e < epochs; ++e) {
    EpochStats sc, sg;
    if (e == 0 && resume_at > 0) {
      EpochProgress a, b; a.next_batch = b.next_batch = resume_at;
      cpu->train_steps(tc, e, 1e-3f, a, nullptr); gpu->train_steps(tg, e, 1e-3f, b, nullptr);
      sc = a.stats(); sg = b.stats();
      expect(a.next_batch == b.next_batch, "resume next_batch");
    } else { sc = cpu->train_epoch(tc, e, 1e-3f); sg = gpu->train_epoch(tg, e, 1e-3f); }
    cpu->get_params(pc); gpu->get_params(pg);
    double err = nerr(delta(pg, p0), delta(pc, p0));
    std::printf("%s epoch %d: loss cpu %.9f gpu %.9f acc %.4f/%.4f  param-change err %.3g\n", tag.c_str(), e, sc.loss, sg.loss, sc.accuracy, sg.accuracy, err);
    expect(err < 1e-3, tag + " params");
    expect(std::fabs(sc.loss - sg.loss) <= 1e-4 * std::fabs(sc.loss), tag + " loss");
    expect(std::fabs(sc.accuracy - sg.accuracy) * n <= 1.0 + 1e-9, tag + " acc");
    expect(sc.examples == sg.examples, tag + " examples");
  }
  TrainState a, b; cpu->get_state(a); gpu->get_state(b);
  expect(a.step == b.step, cat(tag, " step ", a.step, " vs ", b.step));
  EpochStats ec = cpu->evaluate(tc), eg = gpu->evaluate(tg);
  std::printf("  eval loss %.9f / %.9f acc %.4f / %.4f\n", ec.loss, eg.loss, ec.accuracy, eg.accuracy);
  expect(std::fabs(ec.loss - eg.loss) <= 1e-4 * ec.loss && std::fabs(ec.accuracy - eg.accuracy) * n <= 1.0 + 1e-9, tag + " eval");
  std::vector<float> qc(std::size_t(n) * classes), qg(std::size_t(n) * classes, NAN);
  cpu->predict(qc.data(), images.data(), n); gpu->predict(qg.data(), images.data(), n);
  double pe = nerr(std::vector<double>(qg.begin(), qg.end()), std::vector<double>(qc.begin(), qc.end()));
  expect(pe < 1e-4, cat(tag, " predict ", pe));
}

// Steps per graph replay must not change a bit of the result (K = 1, 2, 4, 25; resume at batch 3);
// for K > 1, epoch 0 is also cut at end_batch 5 and continued, which must not change it either.
void graph_steps_bitwise() {
  const int n = 300, input = 50;
  auto images = rbytes(std::size_t(n) * input, 14, 0, 255), labels = rbytes(n, 15, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  std::vector<float> ref;
  for (int K : {1, 2, 4, 25}) {
    EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {33, 20}; cfg.batch_size = 32; cfg.seed = 13; cfg.graph_steps = K; cfg.kernels = Kernels::Graph;
    auto gpu = make_cuda_engine(cfg);
    int t = gpu->add_dataset(v);
    if (K == 1) {
      gpu->train_epoch(t, 0, 1e-3f);
    } else {
      EpochProgress cut; cut.end_batch = 5;
      expect(!gpu->train_steps(t, 0, 1e-3f, cut, nullptr) && cut.next_batch == 5, cat("K=", K, " cut at 5"));
      cut.end_batch = -1;
      expect(gpu->train_steps(t, 0, 1e-3f, cut, nullptr) && cut.next_batch == 10 && cut.examples == 300, cat("K=", K, " continue"));
    }
    EpochProgress pr; pr.next_batch = 3;
    gpu->train_steps(t, 1, 1e-3f, pr, nullptr);
    std::vector<float> p; gpu->get_params(p);
    TrainState st; gpu->get_state(st);
    expect(st.step == 17, cat("K=", K, " step ", st.step));
    if (ref.empty()) ref = p; else expect(p == ref, cat("K=", K, " bitwise equal to K=1"));
  }
}

// EpochProgress::on_steps: the CUDA engine (graph and fused paths) reports after each of its launches
// from pinned snapshots (K = 4 over 9 full batches and a partial one), the CPU engine after every step; all
// end on the epoch's own running loss and accuracy, and a resumed epoch starts past its batch.
void progress_hook() {
  const int n = 300, input = 50;
  auto images = rbytes(std::size_t(n) * input, 16, 0, 255), labels = rbytes(n, 17, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {33, 20}; cfg.batch_size = 32; cfg.seed = 3; cfg.graph_steps = 4;
  for (int path : {0, 1, 2}) {  // CUDA graph, CUDA fused, CPU
    const bool cuda = path < 2;
    cfg.kernels = path == 1 ? Kernels::Fused : Kernels::Graph;
    auto engine = cuda ? make_cuda_engine(cfg) : make_cpu_engine(cfg);
    const int t = engine->add_dataset(v);
    for (int first : {0, 3}) {
      std::vector<std::pair<int, EpochStats>> seen;
      EpochProgress p; p.next_batch = first;
      p.on_steps = [&](int done, int total, const EpochStats& r) { expect(total == 10, "on_steps total"); seen.push_back({done, r}); };
      engine->train_steps(t, first, 1e-3f, p, nullptr);
      const std::string tag = cat(engine->name(), path == 1 ? " fused" : "", " from batch ", first);
      expect(!seen.empty() && seen.back().first == 10, tag + ": last report at batch 10");
      for (std::size_t i = 0; i < seen.size(); ++i) expect(seen[i].first > (i ? seen[i - 1].first : first), tag + ": reports increase");
      // One report per launch. Graph: from 0, two 4-step replays, a single step, the partial batch;
      // from 3, one replay (3..6), two single steps, the partial batch. Fused: launches of up to 4
      // full steps (0..3, 4..7, 8 / 3..6, 7..8), then the partial batch. CPU: one per step.
      const std::size_t launches = path == 0 ? 4 : path == 1 ? (first == 0 ? 4 : 3) : std::size_t(10 - first);
      expect(seen.size() == launches, cat(tag, ": ", seen.size(), " reports"));
      const EpochStats s = p.stats();
      expect(!seen.empty() && seen.back().second.loss == s.loss && seen.back().second.accuracy == s.accuracy && seen.back().second.examples == s.examples, tag + ": last report is the epoch's stats");
    }
  }
}

// MNIST_GPU_MEM_LIMIT caps the engine's device memory: one CudaError naming the flags to lower,
// and every buffer allocated before the failing one is given back.
void memory_cap() {
  const std::size_t before = detail::g_device_bytes.load();
  EngineConfig cfg; cfg.spec.input = 50; cfg.spec.hidden = {33}; cfg.batch_size = 32;
  setenv("MNIST_GPU_MEM_LIMIT", "20000", 1);
  try {
    make_cuda_engine(cfg);
    expect(false, "memory cap: no error");
  } catch (const CudaError& e) {
    const std::string m = e.what();
    expect(m.find("out of GPU memory") != std::string::npos && m.find("MNIST_GPU_MEM_LIMIT=20000") != std::string::npos &&
           m.find("--batch-size") != std::string::npos && m.find("--hidden") != std::string::npos, "memory cap message: " + m);
  }
  unsetenv("MNIST_GPU_MEM_LIMIT");
  expect(detail::g_device_bytes.load() == before, "memory cap: buffers given back");
  auto ok = make_cuda_engine(cfg);
  expect(detail::g_device_bytes.load() > before, "memory cap: counted without the cap");
}

// The head kernel (kernels/head.cuh) against the launches it replaces, in the engine at fp32: one
// step from the same state gives the same loss sum and hits bit for bit, and the same gradients
// below the last layer (its dA is dense_backward_data's FMA chain), so after the step every
// parameter below the last layer is bitwise equal; the last layer's dW/db differ by float32
// summation order only (a few ulp of a gradient; Adam's first step, ≈ lr·sign(g), then moves by
// far less than 1e-5 of its size, normalised over the layer). Over two
// epochs the runs stay within float32 noise (the graph path's own bound against the CPU: 1e-3).
// A last layer the head cannot hold (34 classes) keeps the separate launches.
void head_vs_separate() {
  const int n = 300, input = 50;
  auto images = rbytes(std::size_t(n) * input, 18, 0, 255), labels = rbytes(n, 19, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {33, 20}; cfg.batch_size = 100; cfg.seed = 21; cfg.kernels = Kernels::Graph;
  cfg.head_min_batch = 0;  // the head at this small batch too (the default takes it from 1024)
  std::vector<float> p[2], q[2];
  EpochProgress one[2];
  EpochStats ev[2];
  for (int h : {0, 1}) {
    cfg.head_kernel = h == 1;
    auto gpu = make_cuda_engine(cfg);
    expect(gpu->head_kernel() == (h == 1), "head_kernel() reports the choice");
    const int t = gpu->add_dataset(v);
    one[h].end_batch = 1;
    gpu->train_steps(t, 0, 1e-3f, one[h], nullptr);
    gpu->get_params(p[h]);
    EpochProgress rest;
    rest.next_batch = 1;
    gpu->train_steps(t, 0, 1e-3f, rest, nullptr);
    gpu->train_epoch(t, 1, 1e-3f);
    gpu->get_params(q[h]);
    ev[h] = gpu->evaluate(t);
  }
  expect(std::memcmp(&one[0].loss_sum, &one[1].loss_sum, sizeof(double)) == 0 && one[0].correct == one[1].correct,
         cat("head: first step's loss bits ", one[0].loss_sum, " vs ", one[1].loss_sum));
  const ParamLayout layout = make_layout(cfg.spec);
  const DenseSlot& last = layout.dense.back();
  expect(std::memcmp(p[0].data(), p[1].data(), last.w_offset * sizeof(float)) == 0, "head: layers below the last bitwise equal after one step");
  std::vector<float> init; { auto cpu = make_cpu_engine(cfg); cpu->get_params(init); }
  const std::vector<float> tail0(p[0].begin() + long(last.w_offset), p[0].end()), tail1(p[1].begin() + long(last.w_offset), p[1].end()),
      tail_init(init.begin() + long(last.w_offset), init.end());
  const double step_err = nerr(delta(tail1, tail_init), delta(tail0, tail_init));
  expect(step_err < 1e-5, cat("head: the last layer's first step within 1e-5 (normalised) of the separate launches', ", step_err));
  const double err = nerr(delta(q[1], init), delta(q[0], init));
  std::printf("head vs separate launches: two epochs, param-change err %.3g, eval loss %.9f / %.9f\n", err, ev[1].loss, ev[0].loss);
  expect(err < 1e-4, "head: two epochs within float noise of the separate launches");
  expect(std::fabs(ev[0].loss - ev[1].loss) <= 1e-4 * ev[0].loss, "head: evaluation loss");
  cfg.spec.classes = 34;
  cfg.head_kernel = true;
  expect(!make_cuda_engine(cfg)->head_kernel(), "head: 34 classes keep the separate launches");
  cfg.spec.classes = 10;
  cfg.head_min_batch = 1024;  // the default
  expect(!make_cuda_engine(cfg)->head_kernel(), "head: batch 100 below head_min_batch keeps the separate launches");
  cfg.batch_size = 1024;
  expect(make_cuda_engine(cfg)->head_kernel(), "head: batch 1024 takes the head");
}

// Two engines of one model on the same 600 examples (a 512-row batch and an 88-row one), set apart
// by set(cfg, t) for t = 0, 1 and told apart by check(engine, t): each trains one step, the rest of
// the epoch and a second epoch. What holds for a pair whose only difference is the float32 summation
// order of layers >= 1's weight gradients: the first step's loss and hits bitwise, layer 0 bitwise
// after it, the parameters not all equal (else the pair proves nothing), the first step within 1e-5
// (normalised), two epochs within 1e-4, the evaluation alike.
template <class Set, class Check>
void later_sums_only(const std::string& what, uint8_t data_seed, uint64_t seed, Set set, Check check) {
  const int n = 600, input = 40;
  auto images = rbytes(std::size_t(n) * input, data_seed, 0, 255), labels = rbytes(n, data_seed + 1, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {48, 24}; cfg.batch_size = 512; cfg.seed = seed;
  std::vector<float> p[2], q[2];
  EpochProgress one[2];
  EpochStats ev[2];
  for (int t : {0, 1}) {
    set(cfg, t);
    auto gpu = make_cuda_engine(cfg);
    check(*gpu, t);
    const int d = gpu->add_dataset(v);
    one[t].end_batch = 1;
    gpu->train_steps(d, 0, 1e-3f, one[t], nullptr);
    gpu->get_params(p[t]);
    EpochProgress rest;
    rest.next_batch = 1;
    gpu->train_steps(d, 0, 1e-3f, rest, nullptr);
    gpu->train_epoch(d, 1, 1e-3f);
    gpu->get_params(q[t]);
    ev[t] = gpu->evaluate(d);
  }
  expect(std::memcmp(&one[0].loss_sum, &one[1].loss_sum, sizeof(double)) == 0 && one[0].correct == one[1].correct,
         cat(what, ": first step's loss bits ", one[0].loss_sum, " vs ", one[1].loss_sum));
  const ParamLayout layout = make_layout(cfg.spec);
  const DenseSlot& first = layout.dense.front();
  expect(std::memcmp(p[0].data() + first.w_offset, p[1].data() + first.w_offset, std::size_t(first.out) * first.in * sizeof(float)) == 0 &&
             std::memcmp(p[0].data() + first.b_offset, p[1].data() + first.b_offset, std::size_t(first.out) * sizeof(float)) == 0,
         what + ": layer 0 bitwise equal after one step");
  expect(p[0] != p[1], what + ": the later layers' gradients are other sums (not the same launches twice)");
  std::vector<float> init; { auto cpu = make_cpu_engine(cfg); cpu->get_params(init); }
  const double step_err = nerr(delta(p[1], init), delta(p[0], init));
  expect(step_err < 1e-5, cat(what, ": the first step within 1e-5 (normalised), ", step_err));
  const double err = nerr(delta(q[1], init), delta(q[0], init));
  std::printf("%s: one step err %.3g, two epochs err %.3g, eval loss %.9f / %.9f\n", what.c_str(), step_err, err,
              ev[1].loss, ev[0].loss);
  expect(err < 1e-4, what + ": two epochs within float noise");
  expect(std::fabs(ev[0].loss - ev[1].loss) <= 1e-4 * ev[0].loss && std::fabs(ev[0].accuracy - ev[1].accuracy) * n <= 1.0 + 1e-9,
         what + ": evaluation");
}

// The tail path against the graph path at fp32, in the engine: one step from the same state gives
// the same loss sum and hits bit for bit (the tail's logits are dense_forward's FMA chains and its
// softmax is xent_row), the same dZ_0 (dense_backward_data's chain), so layer 0's weight pieces are
// the graph path's split-K pieces and adam_reduce_update adds them in its order: every parameter of
// layer 0 is bitwise equal after the step. Layers >= 1 differ by the order of the float32 sum over
// the rows of their dW/db only (block slices vs split-K pieces): after Adam's first step (≈ lr·sign
// (g)) within 1e-5 normalised, as the head's check above. Batch 512 (layer 0's weight GEMM in
// pieces, the tail in 16 row blocks of 32) and the counters moved on exactly once a
// step (the second epoch's dropout and Adam t depend on it: two epochs stay within 1e-4).
void tail_vs_graph() {  // (one 512-row batch: 8 weight pieces, 16 tail blocks; and one of 88)
  later_sums_only(
      "tail vs graph path", 28, 31, [](EngineConfig& c, int t) { c.kernels = t ? Kernels::Tail : Kernels::Graph; },
      [](const Engine& e, int t) { expect(e.tail_kernel() == (t == 1), "tail_kernel() reports the choice"); });
}

// The tail kernel in 16-row blocks (EngineConfig::tail_rows Rows16: cuda::TailRows::Half, twice the
// blocks) against 32-row ones, in the engine, programmatic launches on: the first step's loss and
// hits bit for bit (the metrics' 32-row trees formed from their halves), layer 0 bitwise after it
// (its weight GEMM reads dz0, which does not depend on the blocks); layers >= 1 differ by their
// slices' summation order only (within 1e-5 normalised after Adam's first step), two epochs within
// 1e-4, the evaluation alike. Batch 512 (32 tail blocks of 16 rows against 16 of 32) and 88.
void tail_half_rows() {
  later_sums_only(
      "tail in 16-row blocks vs 32", 35, 37,
      [](EngineConfig& c, int t) {
        c.kernels = Kernels::Tail;
        c.tail_rows = t ? TailRows::Rows16 : TailRows::Rows32;
      },
      [](const Engine& e, int t) { expect(e.tail_kernel() && e.tail_rows16() == (t == 1), "half rows: the tail path, 16-row blocks as set"); });
}

// Layer 0's forward inside the tail kernel (EngineConfig::tail_layer0, cuda::TailLayer0) against its
// own launch, in the engine, at tf32 and bf16, programmatic launches on. The two sum layer 0's exact
// products in different code: the separate tile (forced MmaTile: one mma chain over K, no split)
// and the tail kernel's slices (one mma chain over K across them). The emulation's mma adds in
// ascending k in both, so here A0 is the same bits and so is everything after it: a full epoch (a
// 512-row step from its graph and an 88-row one), a second epoch, the evaluation and the prediction,
// bit for bit. (On the GPU the order inside one mma is the hardware's: test_engine compares within
// the drift of rounded inputs; test_tail checks the kernel itself within its bound.) The option is
// ignored at fp32 and where X is gathered; the engine says whether it took it.
void tail_layer0_vs_separate() {
  const int n = 600, input = 40;
  auto images = rbytes(std::size_t(n) * input, 61, 0, 255), labels = rbytes(n, 62, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  // (t = 2: layer 0 shared across clusters, on a device of 132 SMs: the emulation's default 2 hold
  // too few clusters for a wave, and the launch would take none)
  const int sms = g_emu_sm_count;
  for (Precision prec : {Precision::TF32, Precision::BF16}) {
    EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {48, 24}; cfg.batch_size = 512; cfg.seed = 63;
    cfg.kernels = Kernels::Tail;
    cfg.precision = prec;
    std::vector<float> p[3], pr[3];
    EpochStats tr[3], ev[3];
    long long clusters[3];
    cuda::dense_force_tile({cuda::GemmTile::Mma, false});
    for (int t : {0, 1, 2}) {
      cfg.tail_layer0 = t >= 1;
      cfg.tail_layer0_cluster = t == 2 ? Layer0Cluster::Four : Layer0Cluster::One;
      g_emu_sm_count = t == 2 ? 132 : sms;
      const long long before = emu::g_emu_cluster_launches;
      auto gpu = make_cuda_engine(cfg);
      expect(gpu->tail_kernel() && gpu->tail_layer0() == (t >= 1), cat("layer 0 inside: taken as set (", t, ")"));
      // (w0 = 48: clusters of 2, since of 4 the last block would compute no units)
      expect(gpu->tail_layer0_cluster() == (t == 2 ? 2 : 1), cat("layer 0 in clusters of ", gpu->tail_layer0_cluster(), " (", t, ")"));
      const int d = gpu->add_dataset(v);
      gpu->train_epoch(d, 0, 1e-3f);
      tr[t] = gpu->train_epoch(d, 1, 1e-3f);
      gpu->get_params(p[t]);
      ev[t] = gpu->evaluate(d);
      pr[t].assign(std::size_t(n) * 10, -1.0f);
      gpu->predict(pr[t].data(), images.data(), n);
      clusters[t] = emu::g_emu_cluster_launches - before;
    }
    g_emu_sm_count = sms;
    cuda::dense_force_tile({});
    const std::string what = cat("layer 0 inside (", prec == Precision::TF32 ? "tf32" : "bf16", ")");
    for (int t : {1, 2}) {
      const std::string w = cat(what, t == 2 ? ", in clusters" : "");
      expect(std::memcmp(&tr[0].loss, &tr[t].loss, sizeof(double)) == 0 && tr[0].accuracy == tr[t].accuracy,
             cat(w, ": second epoch's loss bits ", tr[0].loss, " vs ", tr[t].loss));
      expect(p[0] == p[t], w + ": the parameters after two epochs, bitwise");
      expect(std::memcmp(&ev[0].loss, &ev[t].loss, sizeof(double)) == 0 && pr[0] == pr[t], w + ": evaluation and prediction, bitwise");
    }
    // (layer 0's weight GEMM with Adam launches in clusters in every run; with layer 0 in clusters,
    // so do the two epochs' 512-row tail launches (16 blocks) and the evaluation's (19 blocks padded
    // to 20), not the 88-row ones (3 blocks))
    expect(clusters[0] == clusters[1] && clusters[2] >= clusters[1] + 3,
           cat(what, ": ", clusters[2], " cluster launches with clusters, ", clusters[1], " without"));
  }
  // Clusters asked for where the launch takes none (the emulation's 2 SMs hold too few for a wave):
  // said in the notice, and the layer runs in each block alone.
  {
    EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {48, 24}; cfg.batch_size = 512; cfg.seed = 63;
    cfg.kernels = Kernels::Tail;
    cfg.precision = Precision::TF32;
    cfg.tail_layer0 = true;
    auto gpu = make_cuda_engine(cfg);
    expect(gpu->tail_layer0() && gpu->tail_layer0_cluster() == 1 &&
               gpu->notice().find("note: --layer0-cluster 4: layer 0 in clusters of 1 here") != std::string::npos,
           "layer 0 inside: clusters asked for and not taken are said: " + gpu->notice());
  }
  // Where it cannot run, the option is ignored: fp32, and X gathered.
  EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {48, 24}; cfg.batch_size = 512; cfg.seed = 63;
  cfg.kernels = Kernels::Tail;
  cfg.tail_layer0 = true;
  expect(make_cuda_engine(cfg)->tail_kernel() && !make_cuda_engine(cfg)->tail_layer0(), "layer 0 inside: not at fp32");
  cfg.precision = Precision::TF32;
  cfg.x_in_place = false;
  expect(!make_cuda_engine(cfg)->tail_layer0(), "layer 0 inside: not with X gathered");
}

// The tail path's programmatic launches (EngineConfig::pdl, kernels/pdl.cuh) against ordinary ones.
// Programmatic, the emulation runs each launch's part before its pdl_wait() BEFORE the rest of the
// launch before it (ov/cooperative_groups.h): a kernel that read its predecessor's output, or wrote
// what that one reads, before its wait would give other bits here. Training (a full epoch: one
// 512-row step replayed from its graph and an 88-row step uncaptured; a second epoch, resumed after
// its first step), evaluation and prediction, bitwise; the launches were programmatic.
void tail_programmatic_vs_ordinary() {
  const int n = 600, input = 40;
  auto images = rbytes(std::size_t(n) * input, 41, 0, 255), labels = rbytes(n, 42, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {48, 24}; cfg.batch_size = 512; cfg.seed = 43;
  cfg.kernels = Kernels::Tail;
  std::vector<float> p[2], probs[2];
  TrainState st[2];
  EpochStats ev[2];
  EpochProgress second[2];
  long long launches[2];
  for (int on : {0, 1}) {
    cfg.pdl = on ? Pdl::On : Pdl::Off;
    const long long before = g_emu_programmatic_launches;
    auto gpu = make_cuda_engine(cfg);
    expect(gpu->tail_kernel() && gpu->programmatic_launch() == (on == 1), cat("pdl ", on, ": programmatic_launch() reports it"));
    const int d = gpu->add_dataset(v);
    gpu->train_epoch(d, 0, 1e-3f);
    second[on].end_batch = 1;
    gpu->train_steps(d, 1, 5e-4f, second[on], nullptr);
    second[on].end_batch = -1;
    gpu->train_steps(d, 1, 5e-4f, second[on], nullptr);
    gpu->get_params(p[on]);
    gpu->get_state(st[on]);
    ev[on] = gpu->evaluate(d);
    probs[on].resize(std::size_t(n) * 10);
    gpu->predict(probs[on].data(), images.data(), n);
    launches[on] = g_emu_programmatic_launches - before;
  }
  expect(launches[0] == 0 && launches[1] >= 4 * 4, cat("pdl: ", launches[1], " programmatic launches on, ", launches[0], " off"));
  expect(p[0] == p[1] && st[0].m == st[1].m && st[0].v == st[1].v && st[0].step == st[1].step,
         "pdl: parameters and Adam state bitwise as with ordinary launches");
  expect(std::memcmp(&second[0].loss_sum, &second[1].loss_sum, sizeof(double)) == 0 && second[0].correct == second[1].correct,
         cat("pdl: the resumed epoch's loss bits ", second[0].loss_sum, " vs ", second[1].loss_sum));
  expect(std::memcmp(&ev[0].loss, &ev[1].loss, sizeof(double)) == 0 && ev[0].accuracy == ev[1].accuracy,
         "pdl: evaluation bitwise");
  expect(probs[0] == probs[1], "pdl: predictions bitwise");
  std::printf("tail, programmatic vs ordinary launches: %lld programmatic; eval loss %.9f / %.9f\n", launches[1], ev[1].loss, ev[0].loss);
}

// The tail path's layer-0 weight GEMM with its Adam in one cluster launch (EngineConfig::weight_adam,
// cuda::dense_weight_adam) against the pieces in memory and the optimizer's pass over them: two
// epochs of a 512-row batch (8 pieces of 64 rows: clusters of 8) and an 88-row one (unsplit:
// clusters of one), the second epoch resumed after its first step, programmatic launches on; then
// evaluation. Parameters, moments, step, losses and evaluation bitwise; one cluster launch a
// training step with it on, none without. At fp32 (SimtVecTile's kernel) and tf32 (PipeTile's, with
// the optimizer's rounded copy of the weights, which it writes too).
void tail_weight_adam_vs_apart(Precision prec) {
  const int n = 600, input = 40;
  auto images = rbytes(std::size_t(n) * input, 51, 0, 255), labels = rbytes(n, 52, 0, 9);
  DataView v{images.data(), labels.data(), n, input};
  EngineConfig cfg; cfg.spec.input = input; cfg.spec.hidden = {48, 24}; cfg.batch_size = 512; cfg.seed = 53;
  cfg.kernels = Kernels::Tail;
  cfg.precision = prec;
  TrainState st[2];
  EpochStats tr[2], ev[2];
  long long clusters[2];
  for (int on : {0, 1}) {
    cfg.weight_adam = on == 1;
    const long long before = emu::g_emu_cluster_launches;
    auto gpu = make_cuda_engine(cfg);
    expect(gpu->tail_kernel(), "weight_adam: the tail path runs");
    const int d = gpu->add_dataset(v);
    gpu->train_epoch(d, 0, 1e-3f);
    EpochProgress second;
    second.end_batch = 1;
    gpu->train_steps(d, 1, 5e-4f, second, nullptr);
    second.end_batch = -1;
    gpu->train_steps(d, 1, 5e-4f, second, nullptr);
    tr[on].loss = second.loss_sum;
    gpu->get_state(st[on]);
    ev[on] = gpu->evaluate(d);
    clusters[on] = emu::g_emu_cluster_launches - before;
  }
  const std::string tag = cat("weight_adam ", to_string(prec), ": ");
  expect(st[0].step == 4 && st[1].step == 4, tag + "four steps taken");
  expect(clusters[0] == 0 && clusters[1] == 4, cat(tag, clusters[1], " cluster launches on (one a step), ", clusters[0], " off"));
  expect(st[0].params == st[1].params && st[0].m == st[1].m && st[0].v == st[1].v,
         tag + "parameters and Adam state bitwise the pieces + optimizer pass");
  expect(std::memcmp(&tr[0].loss, &tr[1].loss, sizeof(double)) == 0, tag + "the resumed epoch's loss bits");
  expect(std::memcmp(&ev[0].loss, &ev[1].loss, sizeof(double)) == 0 && ev[0].accuracy == ev[1].accuracy,
         tag + "evaluation bitwise (the rounded copy the next forward reads included)");
}

// Kernels::Tail where it cannot run: the graph path, and one line saying why.
void tail_fallbacks() {
  EngineConfig cfg; cfg.spec.input = 20; cfg.spec.hidden = {8, 8, 8, 8, 8, 8, 8, 8}; cfg.spec.classes = 5; cfg.batch_size = 16; cfg.kernels = Kernels::Tail;
  auto a = make_cuda_engine(cfg);  // 9 Dense layers: more than the fused Adam pass's 8 segments
  expect(!a->tail_kernel() && a->notice().find("--kernels tail") != std::string::npos && a->notice().find("9 Dense layers") != std::string::npos,
         cat("tail: 9 layers fall back with a notice: '", a->notice(), "'"));
  cfg.spec.hidden = {16}; cfg.spec.classes = 40;  // more classes than the tail kernel holds
  auto c = make_cuda_engine(cfg);
  expect(!c->tail_kernel() && !c->notice().empty(), cat("tail: 40 classes fall back: '", c->notice(), "'"));
}

// Layer 0's X read in place from the images against the gathered floats, at fp32 (emu_x_in_place.hpp):
// the graph path with and without the head kernel and the tail path, at batch 512 (layer 0's weight
// GEMM in 8 pieces, the tail in 16 row blocks, an 88-row last batch), at batch 32 (4-step replays,
// single steps, a 12-row last batch, the second epoch resumed at batch 3) and on 4200 examples in
// batches of 1024 (evaluation and prediction in two chunks: the second starts at row 4096), every
// result bitwise.
void x_in_place_vs_gathered() {
  struct Case {
    int input;
    std::vector<int> hidden;
    int batch, graph_steps, n, resume_at;
  };
  for (const Case& c : {Case{40, {48, 24}, 512, 25, 600, 1}, Case{50, {33, 20}, 32, 4, 300, 3},
                        Case{20, {16, 8}, 1024, 2, 4200, 2}}) {
    EngineConfig cfg;
    cfg.spec.input = c.input;
    cfg.spec.hidden = c.hidden;
    cfg.batch_size = c.batch;
    cfg.graph_steps = c.graph_steps;
    cfg.seed = 37;
    cfg.head_min_batch = 0;
    cfg.eval_rows = c.n > 4096 ? 4096 : EngineConfig{}.eval_rows;  // (4200 examples: two chunks, not the default's one)
    for (const int path : {0, 1, 2}) {  // graph + head, graph without it, tail
      cfg.kernels = path == 2 ? Kernels::Tail : Kernels::Graph;
      cfg.head_kernel = path == 0;
      const std::string tag = cat("x in place, ", path == 2 ? "tail" : path == 0 ? "graph+head" : "graph", " batch ", c.batch, " n ", c.n);
      expect(make_cuda_engine(cfg)->tail_kernel() == (path == 2), tag + ": path as configured");
      emu_x::in_place_vs_gathered(cfg, c.n, c.resume_at, tag, expect);
    }
  }
}

// EngineConfig::autotune in the emulated engine (fp32; the GPU's test_engine.cu also runs tf32/bf16):
// with timings injected so that vec32, a tile the size model does not pick, wins every GEMM, the
// tuned engine gives bit for bit the untuned one's epochs, state, evaluation and predictions (the
// FP32 contract: every tile one FMA chain per output), on the graph and tail paths, and its report
// holds the training step's layer-0 GEMMs (tune_step tuned them before the graphs captured them).
// Layer 0 600 -> 48 at batch 512: its forward splits K (the fold candidates), its weight GEMM rows.
// A 10-class model input -> 48 -> 24 -> 10 at `batch` rows (the autotuning cases below).
EngineConfig tuning_config(int input, int batch, uint64_t seed) {
  EngineConfig cfg;
  cfg.spec.input = input;
  cfg.spec.hidden = {48, 24};
  cfg.batch_size = batch;
  cfg.seed = seed;
  return cfg;
}

void autotune_changes_no_bit() {
  const int n = 1100;
  EngineConfig cfg = tuning_config(600, 512, 41);
  cfg.head_min_batch = 0;
  const auto images = emu_x::bytes(std::size_t(n) * 600, 91, 255), labels = emu_x::bytes(std::size_t(n), 92, 9);
  for (const Kernels k : {Kernels::Graph, Kernels::Tail}) {
    cfg.kernels = k;
    const std::string tag = cat("autotune, ", to_string(k));
    TrainState st[2];
    EpochStats tr[2], ev[2];
    std::vector<float> pr[2];
    std::vector<std::string> rep[2];
    for (const int tune : {0, 1}) {
      cuda::dense_autotune_reset();
      cuda::autotune::TestHooks h;
      h.time_us = [](const std::string& l) { return l == "vec32" ? 1.0 : l == "model" ? 10.0 : 20.0; };
      cuda::autotune::set_test_hooks(h);
      cfg.autotune = tune == 1 ? Autotune::On : Autotune::Off;
      auto gpu = make_cuda_engine(cfg);
      const int t = gpu->add_dataset({images.data(), labels.data(), n, 600});
      for (int e = 0; e < 2; ++e) tr[tune] = gpu->train_epoch(t, e, 1e-3f);
      gpu->get_state(st[tune]);
      ev[tune] = gpu->evaluate(t);
      pr[tune].assign(std::size_t(n) * 10, -1.0f);
      gpu->predict(pr[tune].data(), images.data(), n);
      rep[tune] = gpu->autotune_report();
    }
    cuda::autotune::set_test_hooks({});
    cuda::dense_autotune_reset();
    expect(rep[0].empty() && !rep[1].empty(), tag + ": reported only when on");
    bool fwd = false, wgt = false, all_vec32 = true;
    for (const std::string& l : rep[1]) {
      std::printf("  %s: %s\n", tag.c_str(), l.c_str());
      all_vec32 = all_vec32 && l.find(": vec32, ") != std::string::npos && l.find("REJECTED") == std::string::npos;
      fwd = fwd || l.rfind("forward 512x600->48", 0) == 0;
      wgt = wgt || l.rfind(k == Kernels::Tail ? "weight pieces 512x600->48" : "weight+db 512x600->48", 0) == 0;
    }
    expect(all_vec32, tag + ": every GEMM kept the fastest tile");
    expect(fwd && wgt, tag + ": the step's layer-0 GEMMs were tuned before the capture");
    expect(std::memcmp(&tr[0].loss, &tr[1].loss, sizeof(double)) == 0 && tr[0].accuracy == tr[1].accuracy, tag + ": training loss bitwise");
    expect(st[0].step == st[1].step && st[0].params == st[1].params && st[0].m == st[1].m && st[0].v == st[1].v,
           tag + ": parameters and moments bitwise");
    expect(std::memcmp(&ev[0].loss, &ev[1].loss, sizeof(double)) == 0 && pr[0] == pr[1], tag + ": evaluation and predictions bitwise");
  }
}

// Kernels::Auto above the fused kernel's batches: untuned, the tail path; with autotuning the first
// epoch races the tail (the reference) and graph paths (race_paths) and keeps the faster. Timings
// injected (the emulation's events read 0): where the tail wins, the engine must train, evaluate and
// predict bit for bit as one pinned to --kernels tail (the race restores parameters, moments and
// counters exactly); where the graph path wins, as one pinned to --kernels graph; and a graph step
// whose moments disagree with the tail's (the corrupt hook) is rejected and named. Batch 1024: 2 full
// batches and a 52-row one.
void auto_races_paths() {
  const int n = 2100;
  EngineConfig cfg = tuning_config(40, 1024, 43);
  cfg.autotune = Autotune::On;
  const auto images = emu_x::bytes(std::size_t(n) * 40, 93, 255), labels = emu_x::bytes(std::size_t(n), 94, 9);
  struct Out {
    bool tail = false, pdl = false, carveout = false, rows16 = false, l0 = false;
    TrainState st;
    EpochStats tr, ev;
    std::vector<float> pr;
    std::vector<std::string> rep;
    std::map<std::string, std::string> choices;
  };
  auto run = [&](Kernels k, double tail_us, bool corrupt_graph, const std::map<std::string, std::string>& preset = {},
                 double gathered_us = 100.0, double in_place_only_us = 100.0, double apart_us = 100.0,
                 double ordinary_us = 100.0, double driver_us = 100.0, double half_us = 100.0,
                 double half_in_place_us = 100.0, double l0_us = 100.0) {
    cuda::dense_autotune_reset();
    cuda::autotune::TestHooks h;
    h.time_us = [tail_us, gathered_us, in_place_only_us, apart_us, ordinary_us, driver_us, half_us,
                 half_in_place_us, l0_us](const std::string& l) {
      return l == "tail step" ? tail_us : l == "graph step" ? 10.0 : l == "tail step, X gathered" ? gathered_us
             : l == "tail step, X in place only" ? in_place_only_us
             : l == "tail step, Adam apart" ? apart_us
             : l == "tail step, ordinary launches" ? ordinary_us
             : l == "tail step, driver carveout" ? driver_us
             : l == "tail step, two blocks an SM" ? half_us
             : l == "tail step, two blocks an SM, X in place only" ? half_in_place_us
             : l == "tail step, layer 0 inside" ? l0_us
             : l == "graph step, X gathered" ? 100.0 : l == "model" ? 1.0 : 2.0;
    };
    if (corrupt_graph)
      h.corrupt = [](const std::string& l, std::vector<float>& v) {
        if (l == "graph step") v[3] += 1.0f;
      };
    cuda::autotune::set_test_hooks(h);
    cfg.kernels = k;
    auto gpu = make_cuda_engine(cfg);
    gpu->set_autotune_choices(preset);
    const int t = gpu->add_dataset({images.data(), labels.data(), n, 40});
    Out o;
    for (int e = 0; e < 2; ++e) o.tr = gpu->train_epoch(t, e, 1e-3f);
    o.tail = gpu->tail_kernel();
    o.pdl = gpu->programmatic_launch();
    o.carveout = gpu->max_carveout();
    o.rows16 = gpu->tail_rows16();
    o.l0 = gpu->tail_layer0();
    gpu->get_state(o.st);
    o.ev = gpu->evaluate(t);
    o.pr.assign(std::size_t(n) * 10, -1.0f);
    gpu->predict(o.pr.data(), images.data(), n);
    o.rep = gpu->autotune_report();
    o.choices = gpu->autotune_choices();
    cuda::autotune::set_test_hooks({});
    return o;
  };
  auto same = [](const Out& a, const Out& b) {
    return std::memcmp(&a.tr.loss, &b.tr.loss, sizeof(double)) == 0 && a.st.step == b.st.step && a.st.params == b.st.params &&
           a.st.m == b.st.m && a.st.v == b.st.v && std::memcmp(&a.ev.loss, &b.ev.loss, sizeof(double)) == 0 && a.pr == b.pr;
  };
  const Out tail = run(Kernels::Tail, 1.0, false), graph = run(Kernels::Graph, 1.0, false);
  expect(tail.tail && !graph.tail && !same(tail, graph), "auto race: the pinned paths differ (else the checks below prove nothing)");
  const Out fast_tail = run(Kernels::Auto, 5.0, false);
  expect(fast_tail.tail, "auto race: a tail step 2x faster is kept");
  expect(same(fast_tail, tail), "auto race (tail kept): bitwise the pinned tail path");
  expect(!fast_tail.rep.empty() && fast_tail.rep[0].rfind("training step 1024 rows fp32 (--kernels auto): tail step, 5.0 µs (tail step: 5.0 µs)", 0) == 0,
         cat("auto race: reported first: '", fast_tail.rep.empty() ? "" : fast_tail.rep[0], "'"));
  // A resumed run (Engine::set_autotune_choices) keeps the interrupted run's path and tiles even
  // where its own timings would choose otherwise: here the graph path would now win.
  expect(fast_tail.choices.count("training step 1024 rows fp32 (--kernels auto)") &&
             fast_tail.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step",
         "auto race: the path is among the choices");
  const Out preset = run(Kernels::Auto, 50.0, false, fast_tail.choices);
  expect(preset.tail && same(preset, tail) && preset.choices == fast_tail.choices,
         "auto race: preset choices (resume) keep the tail path and the tiles, bitwise");
  bool threw = false;
  try {
    run(Kernels::Auto, 5.0, false, {{"forward 1024x40->48 fp32", "vec33"}});
  } catch (const Error& e) {
    threw = std::string(e.what()).find("'vec33'") != std::string::npos;
  }
  expect(threw, "auto race: a preset naming no tile is an error naming it");
  // X gathered into floats first is a candidate too (bitwise the in-place step): kept where faster.
  const Out gathered = run(Kernels::Auto, 5.0, false, {}, 3.0);
  expect(gathered.tail && same(gathered, tail) && !gathered.rep.empty() &&
             gathered.rep[0].find("(--kernels auto): tail step, X gathered, 3.0 µs (tail step: 5.0 µs), 10 tried") != std::string::npos,
         cat("auto race: the gathered tail step kept, bitwise the in-place tail path: '", gathered.rep.empty() ? "" : gathered.rep[0], "'"));
  // ... and the tail step with X in place for both of layer 0's GEMMs (EngineConfig::x_weight_gathered
  // off), bitwise too.
  const Out in_place_only = run(Kernels::Auto, 5.0, false, {}, 100.0, 3.0);
  expect(in_place_only.tail && same(in_place_only, tail) && !in_place_only.rep.empty() &&
             in_place_only.rep[0].find("(--kernels auto): tail step, X in place only, 3.0 µs (tail step: 5.0 µs), 10 tried") !=
                 std::string::npos &&
             in_place_only.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step, X in place only",
         cat("auto race: the tail step with X in place only kept, bitwise: '", in_place_only.rep.empty() ? "" : in_place_only.rep[0], "'"));
  const Out in_place_preset = run(Kernels::Auto, 5.0, false, in_place_only.choices);
  expect(in_place_preset.tail && same(in_place_preset, tail) && in_place_preset.choices == in_place_only.choices,
         "auto race: a preset 'tail step, X in place only' (resume) is kept, bitwise");
  // ... and the tail step with layer 0's Adam apart from its weight GEMM (EngineConfig::weight_adam
  // off), bitwise too, and kept on a resume.
  const Out apart = run(Kernels::Auto, 5.0, false, {}, 100.0, 100.0, 3.0);
  expect(apart.tail && same(apart, tail) && !apart.rep.empty() &&
             apart.rep[0].find("(--kernels auto): tail step, Adam apart, 3.0 µs (tail step: 5.0 µs), 10 tried") != std::string::npos &&
             apart.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step, Adam apart",
         cat("auto race: the tail step with Adam apart kept, bitwise: '", apart.rep.empty() ? "" : apart.rep[0], "'"));
  const Out apart_preset = run(Kernels::Auto, 5.0, false, apart.choices);
  expect(apart_preset.tail && same(apart_preset, tail) && apart_preset.choices == apart.choices,
         "auto race: a preset 'tail step, Adam apart' (resume) is kept, bitwise");
  // ... and the tail step with ordinary launches where the probe allows programmatic ones: bitwise,
  // reported without "+pdl", and kept on a resume.
  expect(tail.pdl, "auto race: the emulation's probe passes (else the ordinary-launch option is not raced)");
  const Out ordinary = run(Kernels::Auto, 5.0, false, {}, 100.0, 100.0, 100.0, 3.0);
  expect(ordinary.tail && !ordinary.pdl && same(ordinary, tail) && !ordinary.rep.empty() &&
             ordinary.rep[0].find("(--kernels auto): tail step, ordinary launches, 3.0 µs (tail step: 5.0 µs), 10 tried") !=
                 std::string::npos &&
             ordinary.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step, ordinary launches",
         cat("auto race: the tail step with ordinary launches kept, bitwise: '", ordinary.rep.empty() ? "" : ordinary.rep[0], "'"));
  const Out ordinary_preset = run(Kernels::Auto, 5.0, false, ordinary.choices);
  expect(ordinary_preset.tail && !ordinary_preset.pdl && same(ordinary_preset, tail) &&
             ordinary_preset.choices == ordinary.choices,
         "auto race: a preset 'tail step, ordinary launches' (resume) is kept, bitwise");
  expect(fast_tail.pdl, "auto race: the tail step kept with programmatic launches");
  // ... and with programmatic launches at the driver's carveout (where they would ask for the
  // largest): bitwise, reported "+pdl" without "+smem", kept on a resume.
  expect(tail.carveout, "auto race: the emulation's probe passes the carveout too (else that option is not raced)");
  const Out driver = run(Kernels::Auto, 5.0, false, {}, 100.0, 100.0, 100.0, 100.0, 3.0);
  expect(driver.tail && driver.pdl && !driver.carveout && same(driver, tail) && !driver.rep.empty() &&
             driver.rep[0].find("(--kernels auto): tail step, driver carveout, 3.0 µs (tail step: 5.0 µs), 10 tried") !=
                 std::string::npos &&
             driver.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step, driver carveout",
         cat("auto race: the tail step at the driver's carveout kept, bitwise: '", driver.rep.empty() ? "" : driver.rep[0], "'"));
  const Out driver_preset = run(Kernels::Auto, 5.0, false, driver.choices);
  expect(driver_preset.tail && driver_preset.pdl && !driver_preset.carveout && same(driver_preset, tail) &&
             driver_preset.choices == driver.choices,
         "auto race: a preset 'tail step, driver carveout' (resume) is kept, bitwise");
  expect(fast_tail.carveout, "auto race: the tail step kept with the largest carveout");
  // ... and the tail kernel in 16-row blocks (EngineConfig::tail_rows Rows16): bitwise a run pinned
  // to the tail path with 16-row blocks (not the 32-row one: the later layers' slices are other
  // sums), reported and kept on a resume.
  cfg.tail_rows = TailRows::Rows16;
  const Out tail16 = run(Kernels::Tail, 1.0, false);
  cfg.tail_rows = TailRows::Rows32;
  expect(tail16.tail && !same(tail16, tail), "auto race: the pinned 16-row tail path differs from the 32-row one");
  const Out half = run(Kernels::Auto, 5.0, false, {}, 100.0, 100.0, 100.0, 100.0, 100.0, 3.0);
  expect(tail16.rows16 && !tail.rows16 && !fast_tail.rows16, "auto race: tail_rows16() says which blocks the tail takes");
  expect(half.tail && half.rows16 && same(half, tail16) && !half.rep.empty() &&
             half.rep[0].find("(--kernels auto): tail step, two blocks an SM, 3.0 µs (tail step: 5.0 µs), 10 tried") !=
                 std::string::npos &&
             half.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step, two blocks an SM",
         cat("auto race: the tail step in 16-row blocks kept, bitwise the pinned one: '", half.rep.empty() ? "" : half.rep[0], "'"));
  const Out half_preset = run(Kernels::Auto, 5.0, false, half.choices);
  expect(half_preset.tail && same(half_preset, tail16) && half_preset.choices == half.choices,
         "auto race: a preset 'tail step, two blocks an SM' (resume) is kept, bitwise");
  // ... and so without the gather launch (layer 0's weight GEMM on the images: the same bits).
  const Out half_ip = run(Kernels::Auto, 5.0, false, {}, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 3.0);
  expect(half_ip.tail && half_ip.rows16 && same(half_ip, tail16) && !half_ip.rep.empty() &&
             half_ip.rep[0].find("(--kernels auto): tail step, two blocks an SM, X in place only, 3.0 µs") != std::string::npos &&
             half_ip.choices.at("training step 1024 rows fp32 (--kernels auto)") == "tail step, two blocks an SM, X in place only",
         cat("auto race: 16-row blocks without the gather kept, bitwise: '", half_ip.rep.empty() ? "" : half_ip.rep[0], "'"));
  const Out half_ip_preset = run(Kernels::Auto, 5.0, false, half_ip.choices);
  expect(half_ip_preset.tail && same(half_ip_preset, tail16) && half_ip_preset.choices == half_ip.choices,
         "auto race: a preset 'tail step, two blocks an SM, X in place only' (resume) is kept, bitwise");
  const Out slow_tail = run(Kernels::Auto, 20.0, false);
  expect(!slow_tail.tail && same(slow_tail, graph), "auto race: a graph step 2x faster is kept; bitwise the pinned graph path");
  const Out near = run(Kernels::Auto, 10.1, false);
  expect(near.tail && same(near, tail), "auto race: a graph step 1 % faster does not displace the tail path; bitwise the pinned tail path");
  const Out wrong = run(Kernels::Auto, 20.0, true);
  expect(wrong.tail && same(wrong, tail), "auto race: a graph step that disagrees is not kept, however fast");
  expect(!wrong.rep.empty() && wrong.rep[0].find("REJECTED graph step: ") != std::string::npos,
         cat("auto race: the rejection reported: '", wrong.rep.empty() ? "" : wrong.rep[0], "'"));
  // --autotune check: the paths are run and checked, not timed; the tail path stays (bitwise the
  // pinned tail path), a disagreeing graph step is still named.
  cfg.autotune = Autotune::Check;
  const Out check = run(Kernels::Auto, 20.0, true);
  expect(check.tail && same(check, tail) && !check.rep.empty() &&
             check.rep[0].find(": tail step, 10 checked, not timed, in ") != std::string::npos &&
             check.rep[0].find(" ms; REJECTED graph step: ") != std::string::npos,
         cat("auto race, check only: '", check.rep.empty() ? "" : check.rep[0], "'"));
  // --autotune off: the tail path, no race, bitwise the pinned tail path.
  cfg.autotune = Autotune::Off;
  const Out untuned = run(Kernels::Auto, 20.0, false);
  expect(untuned.tail && same(untuned, tail) &&
             std::none_of(untuned.rep.begin(), untuned.rep.end(), [](const std::string& l) { return l.rfind("training step", 0) == 0; }),
         "auto, untuned: the tail path, no race, bitwise the pinned tail path");
  cfg.autotune = Autotune::On;
  // Where the fused kernel does not run below batch 512 (tf32 above kFusedAutoMaxBatchRounded),
  // Auto races the paths too.
  cfg.batch_size = kFusedAutoMaxBatchRounded + 64;
  cfg.precision = Precision::TF32;
  const Out small = run(Kernels::Auto, 5.0, false);
  const std::string head = cat("training step ", cfg.batch_size, " rows tf32 (--kernels auto): tail step");
  expect(small.tail && !small.l0 && !small.rep.empty() && small.rep[0].rfind(head + ", ", 0) == 0,
         cat("auto race at tf32, batch ", cfg.batch_size, ": '", small.rep.empty() ? "" : small.rep[0], "'"));
  // ... where, at tf32 with X in place, it tries layer 0's forward inside the tail kernel: kept when
  // fastest, bitwise an engine pinned to it (the tail path with EngineConfig::tail_layer0), and kept
  // from a preset (resume).
  expect(!small.rep.empty() && small.rep[0].find(", tail step, layer 0 inside 100.0") != std::string::npos,
         cat("auto race at tf32: layer 0 inside among the candidates: '", small.rep.empty() ? "" : small.rep[0], "'"));
  const Out l0 = run(Kernels::Auto, 5.0, false, {}, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 1.0);
  cfg.tail_layer0 = true;
  const Out l0_pinned = run(Kernels::Tail, 5.0, false);
  cfg.tail_layer0 = false;
  const Out small_pinned = run(Kernels::Tail, 5.0, false);
  expect(l0.tail && l0.l0 && l0_pinned.l0 && !small_pinned.l0, "auto race at tf32: layer 0 inside kept when fastest");
  expect(same(l0, l0_pinned) && same(small, small_pinned), "auto race at tf32: the kept path is bitwise the pinned one");
  const Out l0_preset = run(Kernels::Auto, 20.0, false, {{cat("training step ", cfg.batch_size, " rows tf32 (--kernels auto)"), "tail step, layer 0 inside"}});
  expect(l0_preset.l0 && same(l0_preset, l0_pinned), "auto race at tf32: a preset 'tail step, layer 0 inside' (resume) is kept, bitwise");
  cuda::dense_autotune_reset();
}

// Engine::queue_evaluation: the evaluation enqueued behind the epoch's last step and read with the
// training metrics in one synchronisation. On the fused, graph and tail paths, against an engine
// without the hint: the same bits everywhere (training, evaluation, parameters), one host
// synchronisation fewer an epoch; the hint ignored where it no longer holds (another dataset
// evaluated, new parameters, an epoch cut short); an unknown dataset refused at once.
void queued_evaluation() {
  extern long long g_emu_stream_syncs;
  const int n = 150, input = 30;
  const auto images = rbytes(std::size_t(n) * input, 71, 0, 255), labels = rbytes(n, 72, 0, 9);
  const auto vimages = rbytes(std::size_t(60) * input, 73, 0, 255), vlabels = rbytes(60, 74, 0, 9);
  for (Kernels k : {Kernels::Fused, Kernels::Graph, Kernels::Tail}) {
    EngineConfig cfg;
    cfg.spec.input = input;
    cfg.spec.hidden = {20, 12};
    cfg.batch_size = 32;
    cfg.seed = 11;
    cfg.kernels = k;
    cfg.head_min_batch = 0;
    const std::string tag = cat("queued evaluation, ", to_string(k));
    auto a = make_cuda_engine(cfg), b = make_cuda_engine(cfg);
    const int ta = a->add_dataset({images.data(), labels.data(), n, input}), va = a->add_dataset({vimages.data(), vlabels.data(), 60, input});
    const int tb = b->add_dataset({images.data(), labels.data(), n, input}), vb = b->add_dataset({vimages.data(), vlabels.data(), 60, input});
    auto same_stats = [](const EpochStats& x, const EpochStats& y) {
      return std::memcmp(&x.loss, &y.loss, sizeof(double)) == 0 && x.accuracy == y.accuracy && x.examples == y.examples;
    };
    for (int e = 0; e < 2; ++e) {
      const long long s0 = g_emu_stream_syncs;
      a->queue_evaluation(va);
      const EpochStats ra = a->train_epoch(ta, e, 1e-3f), ea = a->evaluate(va);
      const long long s1 = g_emu_stream_syncs;
      const EpochStats rb = b->train_epoch(tb, e, 1e-3f), eb = b->evaluate(vb);
      const long long s2 = g_emu_stream_syncs;
      expect(same_stats(ra, rb) && same_stats(ea, eb), cat(tag, ": epoch ", e, " training and evaluation bitwise"));
      expect(s2 - s1 - (s1 - s0) == 1, cat(tag, ": one synchronisation fewer (", s1 - s0, " vs ", s2 - s1, ")"));
      const EpochStats again = a->evaluate(va);  // read once: now evaluated anew, the same bits
      expect(same_stats(again, eb), tag + ": a second evaluate recomputes the same");
    }
    TrainState sa, sb;
    a->get_state(sa);
    b->get_state(sb);
    expect(sa.step == sb.step && sa.params == sb.params && sa.m == sb.m, tag + ": parameters and moments bitwise");
    // Another dataset evaluated first: its own result; the queued one is then recomputed, the same.
    a->queue_evaluation(va);
    b->train_epoch(tb, 2, 1e-3f);
    a->train_epoch(ta, 2, 1e-3f);
    expect(same_stats(a->evaluate(ta), b->evaluate(tb)) && same_stats(a->evaluate(va), b->evaluate(vb)),
           tag + ": another dataset evaluated first");
    // New parameters after the epoch: the evaluation is of them, not of the trained ones.
    std::vector<float> p;
    b->get_params(p);
    for (float& x : p) x *= 0.5f;
    a->queue_evaluation(va);
    a->train_epoch(ta, 3, 1e-3f);
    b->train_epoch(tb, 3, 1e-3f);
    a->set_params(p);
    b->set_params(p);
    expect(same_stats(a->evaluate(va), b->evaluate(vb)), tag + ": set_params after the epoch");
    // An epoch cut short: nothing is enqueued; evaluate runs as always.
    EpochProgress pa, pb;
    pa.end_batch = pb.end_batch = 2;
    a->queue_evaluation(va);
    expect(!a->train_steps(ta, 4, 1e-3f, pa, nullptr) && !b->train_steps(tb, 4, 1e-3f, pb, nullptr),
           tag + ": cut epochs");
    expect(same_stats(a->evaluate(va), b->evaluate(vb)), tag + ": a cut epoch");
    bool refused = false;
    try {
      a->queue_evaluation(99);
    } catch (const Error&) {
      refused = true;
    }
    expect(refused, tag + ": an unknown dataset refused");
  }
}

// EngineConfig::eval_rows: evaluation and prediction in chunks of that many rows give every row's
// result as one chunk does (predictions bitwise, the same hits; the loss the same up to the order
// in which the chunks' double sums are added), on the graph path with the head kernel and on the
// tail path; training does not depend on it (the parameters after an epoch bitwise). A value
// outside [1, 65536] is refused with a message naming it.
void eval_rows_chunks() {
  const int n = 150, nv = 120, input = 30, classes = 10;
  const auto images = rbytes(std::size_t(n) * input, 81, 0, 255), labels = rbytes(n, 82, 0, 9);
  const auto vimages = rbytes(std::size_t(nv) * input, 83, 0, 255), vlabels = rbytes(nv, 84, 0, 9);
  for (Kernels k : {Kernels::Graph, Kernels::Tail}) {
    EngineConfig cfg;
    cfg.spec.input = input;
    cfg.spec.hidden = {20, 12};
    cfg.spec.classes = classes;
    cfg.batch_size = 32;
    cfg.seed = 19;
    cfg.kernels = k;
    cfg.head_min_batch = 0;
    const std::string tag = cat("eval_rows, ", to_string(k));
    auto one = make_cuda_engine(cfg);  // the default: 120 rows in one chunk
    cfg.eval_rows = 50;                // 50, 50, 20
    auto three = make_cuda_engine(cfg);
    expect(one->tail_kernel() == (k == Kernels::Tail) && three->tail_kernel() == (k == Kernels::Tail), tag + ": path");
    const int t1 = one->add_dataset({images.data(), labels.data(), n, input}), v1 = one->add_dataset({vimages.data(), vlabels.data(), nv, input});
    const int t3 = three->add_dataset({images.data(), labels.data(), n, input}), v3 = three->add_dataset({vimages.data(), vlabels.data(), nv, input});
    one->train_epoch(t1, 0, 1e-3f);
    three->train_epoch(t3, 0, 1e-3f);
    TrainState s1, s3;
    one->get_state(s1);
    three->get_state(s3);
    expect(s1.params == s3.params && s1.m == s3.m && s1.v == s3.v, tag + ": training bitwise");
    const long long l0 = g_emu_launches;
    const EpochStats e1 = one->evaluate(v1);
    const long long l1 = g_emu_launches;
    const EpochStats e3 = three->evaluate(v3);
    const long long l3 = g_emu_launches;
    // (each chunk its launches: a chunk's forward and loss kernels, the same count for each)
    expect(l3 - l1 == 3 * (l1 - l0) && l1 - l0 >= 2, cat(tag, ": 3 chunks against 1 (", l3 - l1, " vs ", l1 - l0, " launches)"));
    expect(e1.examples == nv && e3.examples == nv && e1.accuracy == e3.accuracy, tag + ": the same hits");
    expect(std::fabs(e1.loss - e3.loss) <= 1e-12 * std::fabs(e1.loss) && e1.loss > 0, cat(tag, ": the same loss up to the chunks' order (", e1.loss, " vs ", e3.loss, ")"));
    std::vector<float> p1(std::size_t(nv) * classes), p3(p1.size());
    one->predict(p1.data(), vimages.data(), nv);
    three->predict(p3.data(), vimages.data(), nv);
    expect(std::memcmp(p1.data(), p3.data(), p1.size() * sizeof(float)) == 0, tag + ": predictions bitwise");
  }
  for (const int bad : {0, -3, 65537}) {
    EngineConfig cfg;
    cfg.spec.input = input;
    cfg.spec.hidden = {20};
    cfg.eval_rows = bad;
    std::string what;
    try {
      make_cuda_engine(cfg);
    } catch (const Error& e) {
      what = e.what();
    }
    expect(what.find("eval_rows") != std::string::npos && what.find(std::to_string(bad)) != std::string::npos,
           cat("eval_rows ", bad, " refused: '", what, "'"));
  }
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // whole lines, also before an abort
  eval_rows_chunks();
  head_vs_separate();
  memory_cap();
  progress_hook();
  graph_steps_bitwise();
  compare(50, {33, 20}, 10, 0.2f, 32, 200, 7, true, 2, 0);
  compare(33, {17}, 3, 0.0f, 16, 100, 9, false, 2, 0);
  compare(50, {33, 20}, 10, 0.5f, 32, 200, 12, true, 2, 3);
  compare(20, {8, 8, 8}, 4, 0.2f, 64, 64, 3, true, 3, 0);   // exactly one full batch per epoch, three hidden layers
  compare(20, {9}, 5, 0.2f, 64, 50, 4, true, 2, 0);         // only a partial batch
  compare(50, {33, 20}, 10, 0.2f, 32, 300, 13, true, 2, 3, 2);  // 2-step graph replays, after a resume at batch 3
  compare(50, {33, 20}, 10, 0.2f, 32, 300, 14, true, 2, 0, 4);  // 4-step replays, then single steps, then the partial batch
  g_head = false;  // the separate launches of the last layer (the fallback)
  compare(50, {33, 20}, 10, 0.2f, 32, 200, 7, true, 2, 0);
  compare(20, {9}, 5, 0.2f, 64, 50, 4, true, 2, 0);
  // Batch 512: every weight GEMM splits (8 pieces of 64 rows); with EngineConfig::split_in_launch
  // (off by default: measured slower) reduced in its own launch by the last block of each tile
  // (tickets, kernels/dense.cu finish_split_tile) across graph replays, where a ticket left non-zero
  // by one launch would break the next; then the default second pass. Then the 76-row batch (no split).
  g_head = true;
  g_split_in_launch = true;
  compare(20, {16}, 5, 0.2f, 512, 1100, 5, true, 2, 0);
  g_split_in_launch = false;
  compare(20, {16}, 5, 0.2f, 512, 1100, 5, true, 2, 0);
  // The tail path (Kernels::Tail): layers >= 1 in one launch, Adam fused with the gradient sums;
  // the same epochs as above, against the CPU engine with the same tolerances: full and partial
  // batches, dropout 0 / 0.2 / 0.5, one to three hidden layers, a resume mid-epoch, 2-step replays
  // (512-row batches, with layer 0's weight GEMM in pieces: tail_vs_graph below).
  g_kernels = Kernels::Tail;
  compare(50, {33, 20}, 10, 0.2f, 32, 200, 7, true, 2, 0);
  compare(33, {17}, 3, 0.0f, 16, 100, 9, false, 2, 0);
  compare(50, {33, 20}, 10, 0.5f, 32, 200, 12, true, 2, 3, 2);
  compare(20, {8, 8, 8}, 4, 0.2f, 64, 64, 3, true, 3, 0);
  compare(20, {9}, 5, 0.2f, 64, 50, 4, true, 2, 0);
  g_kernels = Kernels::Graph;
  tail_vs_graph();
  tail_half_rows();
  tail_layer0_vs_separate();
  tail_programmatic_vs_ordinary();
  tail_weight_adam_vs_apart(Precision::FP32);
  tail_weight_adam_vs_apart(Precision::TF32);
  tail_fallbacks();
  x_in_place_vs_gathered();
  autotune_changes_no_bit();
  auto_races_paths();
  queued_evaluation();
  std::printf("%d checks, %d failures, %lld launches, %d captures, %d replays\n", checks, failures, g_emu_launches, g_emu_captures, g_emu_replays);
  return failures != 0;
}
