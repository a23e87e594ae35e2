// Kernel micro-benchmark: each production kernel of kernels/ (linked, not copied) against its
// cuBLAS / cuBLASLt / cuDNN equivalent, over the cases of kernels/op_cases.hpp (the same table
// the GPU tests use) at the model's shapes and batch 128 / 512 / 4096.
//
//   bench_kernels [--json FILE] [--repeats N] [--inner N]
//
// Timing: CUDA events around `inner` back-to-back launches on one stream (so a sub-microsecond
// kernel is not lost in the event resolution), after warm-up; the median over `repeats` such
// samples, divided by `inner`. Launch overhead between back-to-back launches is included: it is
// part of what a step costs (the engine replays them from a CUDA graph, which hides most of it).
//
// Rates: achieved GFLOP/s and GB/s from the op's FLOPs and compulsory bytes (each input read and
// each output written once), and the floor max(FLOPs / peak FLOP/s, bytes / peak bandwidth).
// Assumed peaks, for an H100 SXM5: 67 TFLOP/s FP32 without tensor cores, 495 TFLOP/s TF32 and
// 990 TFLOP/s BF16 on dense tensor cores (the rows say which applies), 3.35 TB/s HBM3. On another
// GPU the floor column is only indicative (the device name is printed and written to the JSON).
//
// The GEMM section (op gemm_forward / gemm_data / gemm_weight) times every GEMM shape of the
// model (each layer's forward, data gradient below the first layer, weight gradient with the db
// column) at 128 ... 16384 rows: the native kernels at fp32 / tf32 / bf16 (--precision) against
// cuBLAS sgemm in FP32 and with CUBLAS_TF32_TENSOR_OP_MATH, in the same run. From 4096 rows also
// fp32 as the engine runs it ("engine ws") and with each FP32 tile forced (dense_force_simt_tile:
// vec128 / vec64 / vec32 / scalar, the forward's split across blocks or folded), to check the
// tile choice's model (profiling/NOTES.md, "FP32 tile").
//
// The head section (op head): the last layer's training step as the engine runs it, the head kernel
// (kernels/head.cuh, one launch) against the launches it replaces (dense_forward, softmax_xent,
// dense_backward_fused with the engine's split-K workspace: weight + data GEMM and the split's
// reduction), at fp32 / tf32 / bf16 and 128 / 4096 / 16384 rows.
//
// The layer-0 input section (op layer0_input): layer 0's forward (as the engine runs it: relu,
// dropout 0.2, the split-K workspace and tickets) and its weight pieces (the tail path's
// dense_weight_partials) on X read in place from the uint8 images by a shuffled index
// (DenseInput::images_by_index) against the gather_batch + float-X launches they replace, at fp32 /
// tf32 / bf16 and 512 / 4096 / 16384 rows; "gather" alone too. Same bits either way
// (test_dense_images); the rows say what the 3.2 MB of bytes instead of 12.8 MB of floats buys.
//
// The tail section (op tail): layers 1..L-1 of the model's training step (128 -> 64 -> 10: layer-2
// forward, softmax/xent, both backwards), the tail kernel (kernels/tail.cuh, one launch writing
// dz0, one [dW|db] slice per block and the metrics) against the launches the engine runs there today
// (dense_relu_dropout_forward, head_train, dense_backward_fused with its split-K workspace and
// tickets), at fp32 / tf32 / bf16 and 512 / 4096 / 16384 rows. The tail's slices are not summed
// here: that is the pass that also runs Adam (the comparison leaves both sides' Adam out, and the
// tail side's sum of its slices, ≈ 4.5 MB read at 4096 rows, goes to that pass). At 4096 and 16384
// rows (fp32, tf32) also the kernel cut after its staging, its forward and its softmax
// (tail_force_stop): each phase's share of a block's critical path; and the same launch timed from
// inside (op tail_clock, tail_force_clocks): each phase's cycles on its block's SM, chunk by chunk,
// and where the blocks start and end.
//
// The ablation section (op ablation): layer 0's two big TF32 GEMMs at 4096 and 16384 rows as the
// tail path runs them (the forward on the images in place with the split-K workspace and tickets,
// on the 128x128 tile split across blocks and the 64x64 8-warp tile folded; the weight pieces on X
// gathered, 64x64 8-warp; where the device runs it, the two-warpgroup wgmma forward tile folded),
// each whole and with a part of its main loop removed
// (dense_force_ablation: no copies, no prepare pass, no mma, or all three = the skeleton of
// launch, prologue, waits, barriers, epilogue and the split's finish). Which removal moves the time
// says what bounds the loop (profiling/NOTES.md, "Ablation rows"). The results of an ablated row
// are meaningless; only its time is.
//
// Without a CUDA device it prints one line saying so and exits 77 (the suite's "skipped").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/adam.cuh"
#include "kernels/cublas_ref.cuh"
#include "kernels/dense.cuh"
#include "kernels/dropout.cuh"
#include "kernels/gather.cuh"
#include "kernels/head.cuh"
#include "kernels/metrics.cuh"
#include "kernels/op_cases.hpp"
#include "kernels/softmax_xent.cuh"
#include "kernels/tail.cuh"
#include "layers/engine.hpp"
#include "profiling/icache.cuh"
#include "profiling/ingress.cuh"
#include "layers/model.hpp"
#include "runtime/device.hpp"
#include "runtime/device_buffer.cuh"
#include "runtime/error.hpp"
#include "runtime/handles.cuh"
#include "runtime/stream.cuh"

#if defined(MNIST_HAVE_CUDNN)
#include "kernels/cudnn_ref.cuh"
#include "runtime/cudnn_handle.cuh"
#endif

// Inside namespace mnist (not `using namespace mnist`): mnist::cuda would otherwise be ambiguous
// with CCCL's ::cuda.
namespace mnist {
namespace {

constexpr double kPeakFlops = 67e12;   // H100 SXM5 FP32, non-tensor
constexpr double kPeakBytes = 3.35e12; // H100 SXM5 HBM3
constexpr double kPeakTf32 = 495e12;   // H100 SXM5 dense TF32 tensor cores
constexpr double kPeakBf16 = 990e12;   // H100 SXM5 dense BF16 tensor cores

struct Options {
  std::string json;
  int repeats = 30, inner = 20, warmup = 10;
  std::vector<std::string> only;  // --only: time just the rows whose "op shape impl" contains one of these
};

struct Result {
  std::string op, shape, impl;
  double us = 0, flops = 0, bytes = 0;
  double peak_flops = kPeakFlops;
  double floor_us() const { return std::max(flops / peak_flops, bytes / kPeakBytes) * 1e6; }
};

DeviceBuffer<float> random_device(std::size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  DeviceBuffer<float> b(n);
  b.upload(v.data(), n);
  return b;
}

DeviceBuffer<uint8_t> random_bytes(std::size_t n, uint64_t seed, int hi) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int> dist(0, hi);
  std::vector<uint8_t> v(n);
  for (uint8_t& x : v) x = uint8_t(dist(gen));
  DeviceBuffer<uint8_t> b(n);
  b.upload(v.data(), n);
  return b;
}

// The median of v (the upper one of an even count).
double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// SM clock cycles a microsecond at the device's peak clock, to turn in-kernel clock64 differences
// into time (the icache and tail_clock rows).
double peak_cycles_per_us() {
  int dev = 0, khz = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev));
  return khz > 0 ? khz * 1e-3 : 1980.0;
}

class Bench {
 public:
  explicit Bench(const Options& o) : opt_(o) {}

  // Median microseconds per launch of `enqueue` (which enqueues one instance of the op on s).
  template <class F>
  double time_us(F&& enqueue) {
    const cudaStream_t s = stream_.get();
    for (int i = 0; i < opt_.warmup; ++i) enqueue(s);
    stream_.synchronize();
    std::vector<double> samples;
    for (int r = 0; r < opt_.repeats; ++r) {
      start_.record(s);
      for (int i = 0; i < opt_.inner; ++i) enqueue(s);
      end_.record(s);
      end_.synchronize();
      samples.push_back(double(Event::elapsed_ms(start_, end_)) * 1e3 / opt_.inner);
    }
    return median_of(std::move(samples));
  }

  // Whether --only selects the row (every row without --only).
  bool wanted(const std::string& op, const std::string& shape, const std::string& impl) const {
    if (opt_.only.empty()) return true;
    const std::string row = op + " " + shape + " " + impl;
    bool hit = false;
    for (const std::string& o : opt_.only) hit = hit || row.find(o) != std::string::npos;
    return hit;
  }

  template <class F>
  void run(const std::string& op, const std::string& shape, const std::string& impl, double flops, double bytes,
           F&& enqueue, double peak_flops = kPeakFlops) {
    if (!wanted(op, shape, impl)) return;
    add(Result{op, shape, impl, time_us(enqueue), flops, bytes, peak_flops});
  }

  // A row measured by other means than time_us (the tail kernel's clock rows).
  void add(const Result& r) {
    std::printf("%-16s %-26s %-28s %9.2f %10.1f %9.1f %9.2f\n", r.op.c_str(), r.shape.c_str(), r.impl.c_str(), r.us,
                r.flops / r.us * 1e-3, r.bytes / r.us * 1e-3, r.floor_us());
    results_.push_back(r);
  }

  const std::vector<Result>& results() const { return results_; }

 private:
  Options opt_;
  Stream stream_;
  Event start_, end_;
  std::vector<Result> results_;
};

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

void write_json(const std::string& path, const DeviceInfo& dev, const Options& opt, const std::vector<Result>& rs) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw Error(cat("cannot write ", path, ": ", std::strerror(errno)));
  std::fprintf(f, "{\n  \"device\": \"%s\",\n", json_escape(describe(dev)).c_str());
  std::fprintf(f, "  \"assumed_peak\": {\"fp32_flops\": %.3g, \"tf32_flops\": %.3g, \"bf16_flops\": %.3g, \"bytes_per_s\": %.3g, \"note\": \"H100 SXM5 FP32 non-tensor, dense tensor cores, HBM3\"},\n",
               kPeakFlops, kPeakTf32, kPeakBf16, kPeakBytes);
  std::fprintf(f, "  \"timing\": {\"repeats\": %d, \"inner\": %d, \"warmup\": %d, \"statistic\": \"median us per launch\"},\n",
               opt.repeats, opt.inner, opt.warmup);
  std::fprintf(f, "  \"results\": [\n");
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const Result& r = rs[i];
    std::fprintf(f,
                 "    {\"op\": \"%s\", \"shape\": \"%s\", \"impl\": \"%s\", \"us\": %.4f, \"flops\": %.0f, \"bytes\": %.0f, "
                 "\"gflops\": %.3f, \"gbps\": %.3f, \"floor_us\": %.4f}%s\n",
                 r.op.c_str(), r.shape.c_str(), r.impl.c_str(), r.us, r.flops, r.bytes, r.flops / r.us * 1e-3,
                 r.bytes / r.us * 1e-3, r.floor_us(), i + 1 < rs.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

// Instruction fetch: the same FADDs as straight-line code and as a loop (profiling/icache.cuh), one
// block an SM; rows of in-kernel time (median over the blocks of the last of 5 launches).
void bench_icache(Bench& bench) {
  using namespace icache;
  int dev = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const double cycles_per_us = peak_cycles_per_us();
  const std::string shape = cat(sms, " blocks x 8 warps");
  DeviceBuffer<float> sink(1 + kThreads);
  CUDA_CHECK(cudaMemset(sink.data(), 0, sink.bytes()));
  DeviceBuffer<unsigned long long> cycles{static_cast<std::size_t>(sms)};
  Stream stream;
  using Kernel = void (*)(float*, unsigned long long*);
  // The median block time of `timed` (launched 5 times, each after `before` when given).
  const auto measure = [&](Kernel timed, Kernel before) {
    for (int i = 0; i < 5; ++i) {
      if (before) before<<<unsigned(sms), kThreads, 0, stream.get()>>>(sink.data(), cycles.data());
      timed<<<unsigned(sms), kThreads, 0, stream.get()>>>(sink.data(), cycles.data());
    }
    CUDA_CHECK(cudaGetLastError());
    stream.synchronize();
    const std::vector<unsigned long long> c = cycles.to_host();
    return median_of(std::vector<double>(c.begin(), c.end())) / cycles_per_us;
  };
  const auto row = [&](const std::string& impl, Kernel timed, Kernel before) {
    if (bench.wanted("icache", shape, impl)) bench.add(Result{"icache", shape, impl, measure(timed, before), 0.0, 0.0, kPeakFlops});
  };
  row("8192 FADDs straight (128 KB), launched again", fetch_kernel<8192, 0, false>, nullptr);
  row("8192 FADDs straight (128 KB), after another 128 KB", fetch_kernel<8192, 0, false>, fetch_kernel<8192, 1, false>);
  row("8192 FADDs in a 4 KB loop", fetch_kernel<8192, 0, true>, nullptr);
  row("2048 FADDs straight (32 KB), launched again", fetch_kernel<2048, 0, false>, nullptr);
  row("2048 FADDs straight (32 KB), after another 32 KB", fetch_kernel<2048, 0, false>, fetch_kernel<2048, 1, false>);
  row("2048 FADDs in a 4 KB loop", fetch_kernel<2048, 0, true>, nullptr);
}

// L2 -> shared memory ingress by copy instruction and access pattern (profiling/ingress.cuh: what
// bounds the large GEMMs' loops). Last in the run: a bulk copy that never completes traps, which
// ends the process, and every other row is already out. Hopper and later only.
void bench_ingress(Bench& bench) {
  int dev = 0, major = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  if (major < 9) return;
  using namespace ingress;
  DeviceBuffer<uint8_t> src(std::size_t(2 * sms) * kBlockBytes);
  CUDA_CHECK(cudaMemset(src.data(), 1, src.size()));
  DeviceBuffer<float> sink(kThreads);
  const std::pair<void (*)(const uint8_t*, int, float*), const char*> copies[] = {
      {ingress_kernel<kCpAsync>, "cp.async 16 B"}, {ingress_kernel<kLdgSts>, "ld.global.v4 + st.shared"},
      {ingress_kernel<kBulk>, "cp.async.bulk rows"}};
  const std::pair<Pattern, const char*> patterns[] = {
      {kShared, "shared"}, {kStaggered, "staggered"}, {kSharedRows, "shared rows"}, {kDistinct, "distinct"}};
  for (const auto& [kernel, name] : copies)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 120 * 1024));
  for (int per_sm : {1, 2}) {
    // (dynamic shared memory asked so that exactly per_sm blocks fit an SM's 228 KB; 64 KB are used)
    const std::size_t smem = per_sm == 1 ? 120 * 1024 : 100 * 1024;
    const int grid = per_sm * sms;
    for (const auto& [kernel, name] : copies)
      for (const auto& [pat, pname] : patterns)
        bench.run("ingress", cat(grid, " blocks (", per_sm, " an SM)"), cat(name, ", ", pname), 0,
                  double(grid) * kBlockBytes, [&, k = kernel, pt = pat](cudaStream_t st) {
                    k<<<grid, kThreads, smem, st>>>(src.data(), int(pt), sink.data());
                  });
  }
}

// Every GEMM of the model's step at 128 ... 16384 rows: native fp32/tf32/bf16 against cuBLAS sgemm
// in FP32 and TF32 (a second handle in CUBLAS_TF32_TENSOR_OP_MATH). Epilogues as in the engine:
// forward with bias (+ReLU), data gradient masked by the previous activation, weight gradient
// with the db column (native) / without (cuBLAS: the GEMM alone).
void bench_gemm_shapes(Bench& bench, cublasHandle_t blas) {
  CublasHandle tf32;
  CUBLAS_CHECK(cublasSetMathMode(tf32.get(), CUBLAS_TF32_TENSOR_OP_MATH));
  DeviceBuffer<unsigned char> ws(cublas::kWorkspaceBytes);
  CUBLAS_CHECK(cublasSetWorkspace(tf32.get(), ws.data(), ws.bytes()));
  const GemmPrecision precs[] = {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16};
  const auto peak = [](GemmPrecision p) {
    return p == GemmPrecision::TF32 ? kPeakTf32 : p == GemmPrecision::BF16 ? kPeakBf16 : kPeakFlops;
  };
  const std::vector<cases::LayerShape>& layers = cases::model_layers();
  for (int B : {128, 512, 1024, 4096, 16384})
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const int K = layers[l].in, N = layers[l].out;
      auto X = random_device(std::size_t(B) * K, 41), W = random_device(std::size_t(N) * K, 42, -0.5f, 0.5f),
           b = random_device(N, 43), dZ = random_device(std::size_t(B) * N, 44), D = random_device(std::size_t(B) * K, 45);
      DeviceBuffer<float> Y(std::size_t(B) * N), dX(std::size_t(B) * K), dW(std::size_t(N) * K), db(N);
      const double flops = 2.0 * B * K * N;
      const std::string shape = cat(B, "x", K, "->", N);
      const double fwd_bytes = 4.0 * (double(B) * K + double(N) * K + N + double(B) * N);
      for (GemmPrecision p : precs)
        bench.run("gemm_forward", shape, cat("native ", to_string(p)), flops, fwd_bytes, [&](cudaStream_t st) {
          cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, layers[l].relu, st, p);
        }, peak(p));
      // As the engine runs it (with its split-K workspace and tickets, when K splits): the
      // tensor-core tiles fold the split into the block where the tiles fill the GPU (8-warp 64x64
      // tiles at 4096 rows), else split across blocks reduced in the same launch; the 4-warp 64x64
      // fold (the tile before PipeTile v2's 8 warps) and the 128x128 tile with the split across
      // blocks (plus the second kernel, and in one launch with tickets) for comparison.
      if (const std::size_t wsn = cuda::dense_workspace_floats(B, K, N)) {
        DeviceBuffer<float> fws(wsn);
        DeviceBuffer<unsigned> tk(cuda::dense_ticket_count(B, K, N));
        CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
        for (GemmPrecision p : {GemmPrecision::TF32, GemmPrecision::BF16}) {
          const auto fwd = [&](const std::string& impl, cuda::GemmTileChoice tile, unsigned* tickets) {
            cuda::dense_force_tile(tile);
            bench.run("gemm_forward", shape, cat("native ", to_string(p), " ", impl), flops, fwd_bytes,
                      [&](cudaStream_t st) {
                        cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, layers[l].relu, st,
                                            p, fws.data(), tickets);
                      }, peak(p));
            cuda::dense_force_tile({});
          };
          fwd("engine ws", {}, tk.data());
          fwd("engine ws, 2 launches", {}, nullptr);
          fwd("64x64 4-warp fold", {cuda::GemmTile::Pipe64, true}, tk.data());
          fwd("64x64 8-warp fold", {cuda::GemmTile::Pipe64x8, true}, tk.data());
          fwd("128x128 cross-split", {cuda::GemmTile::Pipe128, false}, nullptr);
          fwd("128x128 cross-split 1 launch", {cuda::GemmTile::Pipe128, false}, tk.data());
          // The split's pieces as one thread block cluster's blocks, summed from their shared memory
          // in the launch (cluster_split, sm_90): no partials in memory, no tickets, no second pass.
          {
            const std::string note = cuda::dense_clusters_available() ? "" : " unavailable (cross-split)";
            if (l == 0 && B == 4096 && p == GemmPrecision::TF32 && cuda::dense_clusters_available())
              for (const auto& [tile, name] : {std::pair{cuda::GemmTile::Pipe128, "128x128"},
                                               std::pair{cuda::GemmTile::Pipe64x8, "64x64 x 8 warps"},
                                               std::pair{cuda::GemmTile::Pipe64, "64x64 x 4 warps"}})
                std::printf("  clusters of 4 blocks (%s, tf32) held at once: %d\n", name,
                            cuda::dense_cluster_capacity(tile, 4, p));
            fwd("128x128 cluster split" + note, {cuda::GemmTile::Pipe128, false, true}, tk.data());
            fwd("64x64 8-warp cluster split" + note, {cuda::GemmTile::Pipe64x8, false, true}, tk.data());
            fwd("64x64 4-warp cluster split" + note, {cuda::GemmTile::Pipe64, false, true}, tk.data());
          }
          // The wgmma tile (issue 12; dense_force_tile only, not the launchers' choice yet): layer
          // 1's forward at 512 / 4096 / 16384 rows, its K split folded into the block and across
          // blocks in one launch. Labelled as the fallback where this build or device has no sm_90a.
          if (l == 0 && (B == 512 || B == 4096 || B == 16384)) {
            const bool ok = cuda::dense_wgmma_available();
            for (const auto& [tile, name] : {std::pair{cuda::GemmTile::Wgmma, "wgmma 64x64"},
                                             std::pair{cuda::GemmTile::Wgmma128, "wgmma 64x128"},
                                             std::pair{cuda::GemmTile::WgmmaWide, "wgmma 128x128 2wg"}}) {
              const std::string w = ok ? std::string(name) : std::string(name) + " unavailable (Pipe64x8)";
              fwd(w + " fold", {tile, true}, tk.data());
              fwd(w + " cross-split 1 launch", {tile, false}, tk.data());
            }
          }
        }
      }
      // FP32 at >= 4096 rows: as the engine runs it (with the workspace: the forward's K split folded
      // or across blocks, pick_simt), and each tile forced, to check pick_simt's model
      // (profiling/NOTES.md, "FP32 tile").
      const std::size_t fp32_wsn = cuda::dense_workspace_floats(B, K, N);
      DeviceBuffer<float> fp32_ws(std::max<std::size_t>(1, fp32_wsn));
      float* const fp32_w = fp32_wsn ? fp32_ws.data() : nullptr;
      const std::pair<cuda::SimtTileKind, const char*> simt_tiles[] = {{cuda::SimtTileKind::Vec128, "vec128"},
                                                                       {cuda::SimtTileKind::Vec64, "vec64"},
                                                                       {cuda::SimtTileKind::Vec32, "vec32"},
                                                                       {cuda::SimtTileKind::Scalar, "scalar"}};
      // (The engine row at every batch: without the workspace the launcher folds the split, which is
      // not what the engine runs at 128 ... 1024 rows, and the scoreboard takes this row.)
      if (fp32_w)
        bench.run("gemm_forward", shape, "native fp32 engine ws", flops, fwd_bytes, [&](cudaStream_t st) {
          cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, layers[l].relu, st, GemmPrecision::FP32,
                              fp32_w);
        });
      if (B >= 4096) {
        for (const auto& [tile, name] : simt_tiles)
          for (bool fold : {false, true}) {
            if (fold && (!fp32_w || tile == cuda::SimtTileKind::Scalar || !cuda::dense_workspace_floats(1, K, N)))
              continue;
            cuda::dense_force_simt_tile({tile, fold});
            bench.run("gemm_forward", shape, cat("native fp32 ", name, fp32_w ? (fold ? " ws folded" : " ws split") : ""),
                      flops, fwd_bytes, [&](cudaStream_t st) {
                        cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, layers[l].relu, st,
                                            GemmPrecision::FP32, fp32_w);
                      });
            cuda::dense_force_simt_tile({});
          }
      }
      // Each vector tile with the split's pieces summed across a thread block cluster (cluster_split:
      // no partials in memory, no second pass), where the forward splits and the device has clusters.
      if (fp32_w && cuda::dense_workspace_floats(1, K, N) && (B == 512 || B >= 4096) && cuda::dense_clusters_available())
        for (const auto& [tile, name] : simt_tiles) {
          if (tile == cuda::SimtTileKind::Scalar) continue;
          cuda::dense_force_simt_tile({tile, false, true});
          bench.run("gemm_forward", shape, cat("native fp32 ", name, " cluster split"), flops, fwd_bytes,
                    [&](cudaStream_t st) {
                      cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, layers[l].relu, st,
                                          GemmPrecision::FP32, fp32_w);
                    });
          cuda::dense_force_simt_tile({});
        }
      bench.run("gemm_forward", shape, "cuBLAS sgemm fp32", flops, fwd_bytes, [&](cudaStream_t st) {
        cublas::gemm_nt(blas, Y.data(), X.data(), W.data(), B, N, K, false, st);
      });
      bench.run("gemm_forward", shape, "cuBLAS sgemm tf32", flops, fwd_bytes, [&](cudaStream_t st) {
        cublas::gemm_nt(tf32.get(), Y.data(), X.data(), W.data(), B, N, K, false, st);
      }, kPeakTf32);
      if (l > 0) {  // the first layer has no data gradient
        const double bytes = 4.0 * (double(B) * N + double(N) * K + 2.0 * B * K);
        for (GemmPrecision p : precs)
          bench.run("gemm_data", shape, cat("native ", to_string(p)), flops, bytes, [&](cudaStream_t st) {
            cuda::dense_backward_data(dX.data(), dZ.data(), W.data(), D.data(), 1.25f, B, K, N, st, p);
          }, peak(p));
        if (B >= 4096)
          for (const auto& [tile, name] : simt_tiles) {
            cuda::dense_force_simt_tile({tile, false});
            bench.run("gemm_data", shape, cat("native fp32 ", name), flops, bytes, [&](cudaStream_t st) {
              cuda::dense_backward_data(dX.data(), dZ.data(), W.data(), D.data(), 1.25f, B, K, N, st);
            });
            cuda::dense_force_simt_tile({});
          }
        bench.run("gemm_data", shape, "cuBLAS sgemm fp32", flops, bytes, [&](cudaStream_t st) {
          cublas::gemm_nn(blas, dX.data(), dZ.data(), W.data(), B, K, N, st);
        });
        bench.run("gemm_data", shape, "cuBLAS sgemm tf32", flops, bytes, [&](cudaStream_t st) {
          cublas::gemm_nn(tf32.get(), dX.data(), dZ.data(), W.data(), B, K, N, st);
        }, kPeakTf32);
      }
      const double wbytes = 4.0 * (double(B) * N + double(B) * K + double(N) * K + N);
      // With the engine's split-K workspace (when the shape splits): reduced by a second kernel
      // ("split-K", the rows before PipeTile v2) and in the GEMM's own launch with tickets ("1
      // launch", as the engine runs it now; tensor cores also with the 4-warp 64x64 tile forced);
      // and fp32 once without a split.
      DeviceBuffer<float> split_ws(std::max<std::size_t>(1, cuda::dense_workspace_floats(B, K, N)));
      float* ws = cuda::dense_workspace_floats(B, K, N) ? split_ws.data() : nullptr;
      DeviceBuffer<unsigned> tickets(std::max<std::size_t>(1, cuda::dense_ticket_count(B, K, N)));
      CUDA_CHECK(cudaMemset(tickets.data(), 0, tickets.bytes()));
      for (GemmPrecision p : precs)
        bench.run("gemm_weight", shape, cat("native ", to_string(p), " (+db)", ws ? " split-K" : ""), flops, wbytes,
                  [&](cudaStream_t st) {
                    cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, st, p, ws);
                  }, peak(p));
      if (ws)
        for (GemmPrecision p : precs) {
          bench.run("gemm_weight", shape, cat("native ", to_string(p), " (+db) split-K 1 launch"), flops, wbytes,
                    [&](cudaStream_t st) {
                      cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, st, p, ws,
                                                   tickets.data());
                    }, peak(p));
          if (p == GemmPrecision::FP32) continue;
          cuda::dense_force_tile({cuda::GemmTile::Pipe64, false});
          bench.run("gemm_weight", shape, cat("native ", to_string(p), " (+db) split-K 1 launch, 64x64 4-warp"), flops,
                    wbytes, [&](cudaStream_t st) {
                      cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, st, p, ws,
                                                   tickets.data());
                    }, peak(p));
          cuda::dense_force_tile({});
        }
      if (ws)
        bench.run("gemm_weight", shape, "native fp32 (+db) no split", flops, wbytes, [&](cudaStream_t st) {
          cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, st);
        });
      if (B >= 4096)
        for (const auto& [tile, name] : simt_tiles) {
          cuda::dense_force_simt_tile({tile, false});
          bench.run("gemm_weight", shape, cat("native fp32 (+db) ", name, ws ? " split-K" : ""), flops, wbytes,
                    [&](cudaStream_t st) {
                      cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, st,
                                                   GemmPrecision::FP32, ws);
                    });
          cuda::dense_force_simt_tile({});
        }
      bench.run("gemm_weight", shape, "cuBLAS sgemm fp32", flops, wbytes, [&](cudaStream_t st) {
        cublas::gemm_tn(blas, dW.data(), dZ.data(), X.data(), N, K, B, st);
      });
      bench.run("gemm_weight", shape, "cuBLAS sgemm tf32", flops, wbytes, [&](cudaStream_t st) {
        cublas::gemm_tn(tf32.get(), dW.data(), dZ.data(), X.data(), N, K, B, st);
      }, kPeakTf32);
    }
}

// The model's last layer (64 -> 10) in one training step: head_train against the separate launches
// (both as the engine calls them, scratch and workspace allocated once). FLOPs: the three GEMMs;
// bytes: A read, dA written (the previous layer's gradient), W, b, dW, db, labels.
void bench_head(Bench& bench, cuda::Metrics* metrics) {
  const cases::LayerShape last = cases::model_layers().back();
  const int K = last.in, N = last.out;
  for (int B : {128, 4096, 16384}) {
    auto A = random_device(std::size_t(B) * K, 51, 0.0f, 1.0f), W = random_device(std::size_t(N) * K, 52, -0.5f, 0.5f),
         b = random_device(N, 53);
    auto y = random_bytes(std::size_t(B), 54, N - 1);
    DeviceBuffer<float> logits(std::size_t(B) * N), dZ(std::size_t(B) * N), dA(std::size_t(B) * K),
        dW(std::size_t(N) * K), db(N);
    DeviceBuffer<float> ws(std::max<std::size_t>(1, cuda::dense_workspace_floats(B, K, N)));
    DeviceBuffer<cuda::Metrics> slots(std::size_t(std::max(cuda::softmax_xent_blocks(B), cuda::head_xent_slots(B))));
    DeviceBuffer<unsigned> done(1);
    CUDA_CHECK(cudaMemset(done.data(), 0, done.bytes()));
    DeviceBuffer<float> partial(std::max<std::size_t>(1, cuda::head_partial_floats(B, K, N)));
    const cuda::XentScratch xent{slots.data(), done.data(), int(slots.size())};
    const cuda::HeadScratch head{xent, partial.data(), partial.size()};
    const std::string shape = cat(B, "x", K, "->", N);
    const double flops = 6.0 * B * K * N;
    const double bytes = 4.0 * (2.0 * B * K + 2.0 * N * K + 2.0 * N) + B;
    for (GemmPrecision p : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
      const double peak = p == GemmPrecision::TF32 ? kPeakTf32 : p == GemmPrecision::BF16 ? kPeakBf16 : kPeakFlops;
      bench.run("head", shape, cat("head_train ", to_string(p), " (1 launch, ", cuda::head_blocks(B, true), " blocks)"),
                flops, bytes, [&](cudaStream_t st) {
                  cuda::head_train(dW.data(), db.data(), dA.data(), metrics, head, A.data(), W.data(), b.data(),
                                   y.data(), 1.25f, 1.0f / float(B), B, K, N, st, p);
                }, peak);
      float* w = cuda::dense_workspace_floats(B, K, N) ? ws.data() : nullptr;
      bench.run("head", shape, cat("separate ", to_string(p), " (fwd, xent, bwd", w ? " + split-K)" : ")"), flops, bytes,
                [&](cudaStream_t st) {
                  cuda::dense_forward(logits.data(), A.data(), W.data(), b.data(), B, K, N, false, st, p, w);
                  cuda::softmax_xent(dZ.data(), metrics, xent, logits.data(), y.data(), B, N, 1.0f / float(B), st);
                  cuda::dense_backward_fused(dW.data(), db.data(), dA.data(), dZ.data(), A.data(), W.data(), A.data(),
                                             1.25f, B, K, N, st, p, w);
                }, peak);
    }
  }
}

// The tail kernel timed from the inside (tail_force_clocks): `launch` enqueues one training launch
// of B rows and T tail layers; 2 warm-up launches, then 5 whose stamps are read back. Rows (op
// tail_clock, "µs" the median over every block of the 5 launches): each phase of chunks 0 and 1
// (cycles between the stamps around it, converted at the device's peak SM clock), and, from the
// global timer, a block's span (first instruction to its last chunk, median and slowest) and the
// launch's (the earliest block start to the latest block end) with the latest block start. The
// chunk-1 rows (16384 rows: 128 a block, two chunks of 64) run the same code as chunk 0 with the
// instruction cache warm and the weights staged.
// rows: the launch's blocks (TailRows::Half: "16-row" rows, two blocks an SM, whose phases may
// overlap: NOTES "Two tail blocks an SM").
template <class Launch>
void tail_clock_rows(Bench& bench, GemmPrecision p, int B, int T, const std::string& shape, Launch&& launch,
                     cuda::TailRows rows = cuda::TailRows::Wide) {
  const std::string tag = cat(to_string(p), rows == cuda::TailRows::Half ? " 16-row " : " ");
  if (!bench.wanted("tail_clock", shape, tag)) return;
  const double cycles_per_us = peak_cycles_per_us();
  const int blocks = cuda::tail_blocks(B, rows);
  DeviceBuffer<unsigned long long> stamps(std::size_t(blocks) * cuda::kTailClockSlots);
  Stream stream;
  std::vector<std::vector<unsigned long long>> runs;
  cuda::tail_force_clocks(stamps.data());
  for (int i = 0; i < 7; ++i) {
    CUDA_CHECK(cudaMemsetAsync(stamps.data(), 0, stamps.bytes(), stream.get()));
    launch(stream.get());
    stream.synchronize();
    if (i >= 2) runs.push_back(stamps.to_host());
  }
  cuda::tail_force_clocks(nullptr);
  const auto row = [&](const std::string& what, double us) {
    bench.add(Result{"tail_clock", shape, tag + what, us, 0.0, 0.0, kPeakFlops});
  };
  // Phase durations: the cycles from the stamp before (in the block's order) to the phase's own.
  const auto at = [&](const std::vector<unsigned long long>& v, int j, int slot) {
    return double(v[std::size_t(j) * cuda::kTailClockSlots + std::size_t(slot)]);
  };
  struct Phase {
    std::string name;
    int from, to;
  };
  std::vector<Phase> phases{{"start -> weights staged", cuda::kTailClockStart, cuda::kTailClockWeights}};
  int prev = cuda::kTailClockWeights;
  for (int c = 0; c < 2; ++c) {
    const auto add = [&](const std::string& name, int slot) {
      phases.push_back({cat("chunk ", c, ": ", name), prev, slot});
      prev = slot;
    };
    add(c == 0 ? "wait + A0 staged" : "A0 staged", cuda::tail_clock_slot(c, cuda::kTailPhaseStaged));
    for (int i = 1; i <= T; ++i)
      add(cat("layer ", i, " forward", i < T ? " + dropout" : ""), cuda::tail_clock_slot(c, cuda::kTailPhaseForward + i - 1));
    add("softmax + xent", cuda::tail_clock_slot(c, cuda::kTailPhaseSoftmax));
    for (int i = T; i >= 1; --i)
      add(cat("layer ", i, " backward", i == 1 ? " (dz0 out)" : ""), cuda::tail_clock_slot(c, cuda::kTailPhaseBackward + T - i));
  }
  for (const Phase& ph : phases) {
    std::vector<double> d;
    for (const auto& v : runs)
      for (int j = 0; j < blocks; ++j)
        if (at(v, j, ph.from) != 0 && at(v, j, ph.to) != 0) d.push_back((at(v, j, ph.to) - at(v, j, ph.from)) / cycles_per_us);
    if (!d.empty()) row(ph.name, median_of(std::move(d)));
  }
  std::vector<double> span, launch_span, last_start;
  for (const auto& v : runs) {
    double first = 1e300, latest_start = 0, latest_end = 0;
    for (int j = 0; j < blocks; ++j) {
      const double s0 = at(v, j, cuda::kTailClockStartNs), s1 = at(v, j, cuda::kTailClockEndNs);
      span.push_back((s1 - s0) * 1e-3);
      first = std::min(first, s0);
      latest_start = std::max(latest_start, s0);
      latest_end = std::max(latest_end, s1);
    }
    launch_span.push_back((latest_end - first) * 1e-3);
    last_start.push_back((latest_start - first) * 1e-3);
  }
  row("block span (median)", median_of(span));
  row("block span (slowest)", *std::max_element(span.begin(), span.end()));
  row("launch span, first start to last end", median_of(launch_span));
  row("latest block start after the first", median_of(last_start));
}

// Layers 1..L-1 (the tail, 128 -> 64 -> 10) of one training step: tail_train against the launches
// it replaces, all as the engine calls them (scratch, workspace and tickets allocated once).
// FLOPs: the five GEMMs (forwards, weight GEMMs with db, data GEMMs down to dz0); bytes: A0 read,
// dz0 written, weights, the tail's slices (or the replaced launches' dW/db), labels.
void bench_tail(Bench& bench, cuda::Metrics* metrics) {
  const std::vector<cases::LayerShape> layers = cases::model_layers();
  const int w0 = layers[1].in, w1 = layers[1].out, w2 = layers[2].out;
  const std::vector<int> widths{w0, w1, w2};
  if (!cuda::tail_unsupported(widths).empty()) return;
  cuda::tail_prepare();
  // Layer 0's operands for the layer-0-inside rows: the 60,000 images (47 MB), W0, b0, for every B.
  const int K0 = layers[0].in;
  const auto images = random_bytes(std::size_t(60000) * K0, 69, 255);
  const auto W0 = random_device(std::size_t(w0) * K0, 70, -0.05f, 0.05f), b0 = random_device(w0, 71);
  for (int B : {512, 4096, 16384}) {
    auto A0 = random_device(std::size_t(B) * w0, 61, 0.0f, 1.0f), W1 = random_device(std::size_t(w1) * w0, 62, -0.1f, 0.1f),
         b1 = random_device(w1, 63), W2 = random_device(std::size_t(w2) * w1, 64, -0.3f, 0.3f), b2 = random_device(w2, 65);
    auto y = random_bytes(std::size_t(B), 66, w2 - 1);
    DeviceBuffer<float> A1(std::size_t(B) * w1), dZ1(std::size_t(B) * w1), dz0(std::size_t(B) * w0),
        dW1(std::size_t(w1) * w0), db1(w1), dW2(std::size_t(w2) * w1), db2(w2);
    const std::size_t ws_floats = std::max(cuda::dense_workspace_floats(B, w0, w1), cuda::dense_workspace_floats(B, w1, w2));
    DeviceBuffer<float> ws(std::max<std::size_t>(1, ws_floats));
    DeviceBuffer<unsigned> tickets(std::max<std::size_t>(1, cuda::dense_ticket_count(B, w0, w1)));
    CUDA_CHECK(cudaMemset(tickets.data(), 0, tickets.bytes()));
    const int slots_n = std::max({cuda::softmax_xent_blocks(B), cuda::head_xent_slots(B), cuda::tail_xent_slots(B)});
    DeviceBuffer<cuda::Metrics> slots{static_cast<std::size_t>(slots_n)};
    DeviceBuffer<unsigned> done(1);
    CUDA_CHECK(cudaMemset(done.data(), 0, done.bytes()));
    DeviceBuffer<float> head_partial(std::max<std::size_t>(1, cuda::head_partial_floats(B, w1, w2)));
    DeviceBuffer<float> partial(std::size_t(cuda::tail_blocks(B, cuda::TailRows::Half)) * cuda::tail_slice_floats(widths));
    const cuda::XentScratch xent{slots.data(), done.data(), int(slots.size())};
    const cuda::HeadScratch head{xent, head_partial.data(), head_partial.size()};
    cuda::TailNet net;
    net.layers = 2;
    net.width[0] = w0;
    net.width[1] = w1;
    net.width[2] = w2;
    net.layer[0] = {W1.data(), b1.data()};
    net.layer[1] = {W2.data(), b2.data()};
    const cuda::DropoutSpec drop{0.2f, 42, 3, 1, nullptr};
    const float scale = cuda::dropout_scale(0.2f);
    const std::string shape = cat(B, "x", w0, "->", w1, "->", w2);
    const double flops = 2.0 * B * (3.0 * w0 * w1 + 3.0 * w1 * w2) + 2.0 * B * (w1 + w2);
    const double weights = 4.0 * (double(w1) * (w0 + 1) + double(w2) * (w1 + 1));
    const double bytes = 4.0 * 2.0 * B * w0 + weights + B;
    float* w = ws_floats ? ws.data() : nullptr;
    // The engine's form of the labels (kernels/labels.cuh): the 60,000-row array read through a
    // permutation at the batch the device counters name, two dependent loads a row in the kernel.
    const int n_rows = 60000;
    std::vector<int32_t> h_order(static_cast<std::size_t>(n_rows));
    std::iota(h_order.begin(), h_order.end(), 0);
    std::shuffle(h_order.begin(), h_order.end(), std::mt19937(67));
    DeviceBuffer<int32_t> order(h_order.size());
    order.upload(h_order);
    auto labels = random_bytes(std::size_t(n_rows), 68, w2 - 1);
    cuda::TrainCounters c;
    c.batch = 1;  // rows B .. 2B - 1 of the order (B <= 16384)
    DeviceBuffer<cuda::TrainCounters> counters(1);
    counters.upload(std::vector<cuda::TrainCounters>{c});
    const cuda::LabelInput by_index = cuda::LabelInput::by_index(labels.data(), order.data(), 0, counters.data(), B);
    // Layer 0 too (the images, W0 and b0 made once, above), for the rows of the tail kernel with
    // layer 0 inside (cuda::TailLayer0) against the separate forward launch before tail_train.
    const std::size_t ws0_floats = cuda::dense_workspace_floats(B, K0, w0);
    DeviceBuffer<float> ws0(std::max<std::size_t>(1, ws0_floats));
    DeviceBuffer<unsigned> tickets0(std::max<std::size_t>(1, cuda::dense_ticket_count(B, K0, w0)));
    CUDA_CHECK(cudaMemset(tickets0.data(), 0, tickets0.bytes()));
    const cuda::DenseInput x_by_index = cuda::DenseInput::images_by_index(images.data(), order.data(), 0, counters.data(), B);
    cuda::TailLayer0 l0;
    l0.images = images.data();
    l0.rows = x_by_index.rows;
    l0.W = W0.data();
    l0.b = b0.data();
    l0.K = K0;
    const cuda::DropoutSpec drop0{0.2f, 42, 3, 0, nullptr};
    const double l0_flops = 2.0 * B * K0 * w0, l0_bytes = double(B) * K0 + 4.0 * w0 * (K0 + 1);
    for (GemmPrecision p : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
      const double peak = p == GemmPrecision::TF32 ? kPeakTf32 : p == GemmPrecision::BF16 ? kPeakBf16 : kPeakFlops;
      bench.run("tail", shape, cat("tail_train ", to_string(p), " (1 launch, ", cuda::tail_blocks(B), " blocks of <= ",
                                   cuda::tail_rows_per_block(B), " rows)"),
                flops, bytes + weights * (cuda::tail_blocks(B) - 1), [&](cudaStream_t st) {
                  cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), y.data(), drop, scale,
                                   1.0f / float(B), B, st, p);
                }, peak);
      bench.run("tail", shape, cat("tail_train ", to_string(p), ", labels by index (the engine's form)"), flops,
                bytes + weights * (cuda::tail_blocks(B) - 1), [&](cudaStream_t st) {
                  cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), by_index, drop, scale,
                                   1.0f / float(B), B, st, p);
                }, peak);
      // The same in 16-row blocks, two an SM (--tail-rows 16; NOTES "Two tail blocks an SM").
      const int half_blocks = cuda::tail_blocks(B, cuda::TailRows::Half);
      bench.run("tail", shape, cat("tail_train ", to_string(p), ", labels by index, 16-row blocks (", half_blocks,
                                   " of <= ", cuda::tail_rows_per_block(B, cuda::TailRows::Half), " rows)"),
                flops, bytes + weights * (half_blocks - 1), [&](cudaStream_t st) {
                  cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), by_index, drop, scale,
                                   1.0f / float(B), B, st, p, nullptr, cuda::TailRows::Half);
                }, peak);
      // The phases of the engine's form, each row a prefix of the kernel's work (tail_force_stop):
      // what each row adds over the one before is that phase's time on a block's critical path.
      if (p != GemmPrecision::BF16 && B != 512)
        for (const auto& [stop, name] : {std::pair{cuda::TailStop::Staged, "staging"},
                                         std::pair{cuda::TailStop::Forward, "+ forward"},
                                         std::pair{cuda::TailStop::Softmax, "+ softmax"}}) {
          cuda::tail_force_stop(stop);
          bench.run("tail", shape, cat("tail_train ", to_string(p), ", labels by index, phases: ", name), flops,
                    bytes + weights * (cuda::tail_blocks(B) - 1), [&](cudaStream_t st) {
                      cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), by_index, drop, scale,
                                       1.0f / float(B), B, st, p);
                    }, peak);
          cuda::tail_force_stop(cuda::TailStop::Whole);
        }
      if (p != GemmPrecision::BF16 && B != 512)
        tail_clock_rows(bench, p, B, 2, shape, [&](cudaStream_t st) {
          cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), by_index, drop, scale, 1.0f / float(B),
                           B, st, p);
        });
      if (p == GemmPrecision::TF32 && B == 4096)  // (the same with two blocks an SM)
        tail_clock_rows(
            bench, p, B, 2, shape,
            [&](cudaStream_t st) {
              cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), by_index, drop, scale,
                               1.0f / float(B), B, st, p, nullptr, cuda::TailRows::Half);
            },
            cuda::TailRows::Half);
      // Layer 0's forward inside the tail kernel (NOTES "Layer 0 inside the tail kernel") against the
      // separate forward launch (the step's tile for these operands, images by index) + tail_train.
      if (p != GemmPrecision::FP32 && cuda::tail_layer0_unsupported(widths, K0, p).empty()) {
        bench.run("tail", shape, cat("layer 0 forward + tail_train ", to_string(p), ", images and labels by index (2 launches)"),
                  flops + l0_flops, bytes + l0_bytes + weights * (cuda::tail_blocks(B) - 1), [&](cudaStream_t st) {
                    cuda::dense_relu_dropout_forward(A0.data(), x_by_index, W0.data(), b0.data(), B, K0, w0, drop0, st, p,
                                                     ws0_floats ? ws0.data() : nullptr, tickets0.data());
                    cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, A0.data(), by_index, drop, scale,
                                     1.0f / float(B), B, st, p);
                  }, peak);
        bench.run("tail", shape, cat("tail_train ", to_string(p), ", layer 0 inside (1 launch, ", cuda::tail_blocks(B),
                                     " blocks; W0 streamed ", cuda::tail_blocks(B), "x)"),
                  flops + l0_flops, bytes - 4.0 * B * w0 + l0_bytes + (weights + 4.0 * w0 * K0) * (cuda::tail_blocks(B) - 1),
                  [&](cudaStream_t st) {
                    cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, nullptr, by_index, drop, scale,
                                     1.0f / float(B), B, st, p, nullptr, cuda::TailRows::Wide, &l0);
                  }, peak);
        // ... shared across clusters of C blocks (NOTES "Layer 0 shared across a cluster"): each block
        // streams W0/C and the X rows of C chunks; the same bits as the row above.
        const int C = cuda::tail_layer0_cluster(B, true, widths, 4, p);
        if (C > 1) {
          cuda::TailLayer0 l0c = l0;
          l0c.cluster = C;
          const int n = cuda::tail_blocks(B);
          bench.run("tail", shape, cat("tail_train ", to_string(p), ", layer 0 inside, clusters of ", C, " (1 launch, ", n,
                                       " blocks; W0 streamed ", n / C, "x)"),
                    flops + l0_flops,
                    bytes - 4.0 * B * w0 + l0_bytes * C + (weights * (n - 1) + 4.0 * w0 * K0 * (n / C - 1)),
                    [&](cudaStream_t st) {
                      cuda::tail_train(partial.data(), dz0.data(), metrics, xent, net, nullptr, by_index, drop, scale,
                                       1.0f / float(B), B, st, p, nullptr, cuda::TailRows::Wide, &l0c);
                    }, peak);
        }
      }
      bench.run("tail", shape, cat("replaced ", to_string(p), " (layer-2 fwd, head_train, layer-2 bwd + split-K)"), flops,
                bytes + 4.0 * 2.0 * B * w1, [&](cudaStream_t st) {
                  cuda::dense_relu_dropout_forward(A1.data(), A0.data(), W1.data(), b1.data(), B, w0, w1, drop, st, p, w,
                                                   tickets.data());
                  cuda::head_train(dW2.data(), db2.data(), dZ1.data(), metrics, head, A1.data(), W2.data(), b2.data(),
                                   y.data(), scale, 1.0f / float(B), B, w1, w2, st, p);
                  cuda::dense_backward_fused(dW1.data(), db1.data(), dz0.data(), dZ1.data(), A0.data(), W1.data(),
                                             A0.data(), scale, B, w0, w1, st, p, w, tickets.data());
                }, peak);
    }
  }
}

// n random images of K uint8 pixels on the device, read through a shuffled index (seeded), and the
// device counters a dropout epilogue reads (step 5): layer 0's input as the engine holds it.
struct DeviceImages {
  DeviceBuffer<uint8_t> images;
  DeviceBuffer<int32_t> idx;
  DeviceBuffer<cuda::TrainCounters> ctr;
  DeviceImages(int n, int K, uint32_t seed) : images(std::size_t(n) * K), idx(std::size_t(n)), ctr(1) {
    std::vector<uint8_t> pixels(images.size());
    std::mt19937 gen(seed);
    for (auto& u : pixels) u = uint8_t(gen() % 256);
    std::vector<int32_t> order(idx.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), gen);
    images.upload(pixels.data(), pixels.size());
    idx.upload(order.data(), order.size());
    cuda::TrainCounters c;
    c.step = 5;
    ctr.upload(&c, 1);
  }
};

// Layer 0's X from the images in place against gather + floats (see the header).
void bench_layer0_input(Bench& bench) {
  const int K = 784, N = 128, n_images = 60000;
  const DeviceImages dev_images(n_images, K, 81);
  const DeviceBuffer<uint8_t>& images = dev_images.images;
  const DeviceBuffer<int32_t>& idx = dev_images.idx;
  const DeviceBuffer<cuda::TrainCounters>& ctr = dev_images.ctr;
  auto W = random_device(std::size_t(N) * K, 82, -0.1f, 0.1f), b = random_device(N, 83);
  for (int B : {512, 4096, 16384}) {
    DeviceBuffer<float> X(std::size_t(B) * K), Y(std::size_t(B) * N);
    DeviceBuffer<uint8_t> y(static_cast<std::size_t>(B));
    auto dZ = random_device(std::size_t(B) * N, 84);
    DeviceBuffer<float> ws(std::max<std::size_t>(1, cuda::dense_workspace_floats(B, K, N)));
    DeviceBuffer<unsigned> tk(std::max<std::size_t>(1, cuda::dense_ticket_count(B, K, N)));
    CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
    DeviceBuffer<float> part(cuda::dense_weight_partial_floats(B, K, N));
    const auto in = cuda::DenseInput::images_by_index(images.data(), idx.data(), 0, ctr.data(), B);
    const std::string shape = cat(B, "x", K, "->", N);
    const double fflops = 2.0 * B * K * N, wflops = 2.0 * B * N * (K + 1);
    const double gather_bytes = double(B) * K * (1 + 4);
    bench.run("layer0_input", shape, "gather only (uint8 -> float X)", 0, gather_bytes, [&](cudaStream_t st) {
      cuda::gather_batch(X.data(), y.data(), images.data(), images.data(), idx.data(), ctr.data(), B, B, K, st);
    });
    for (GemmPrecision pr : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
      const double peak = pr == GemmPrecision::TF32 ? kPeakTf32 : pr == GemmPrecision::BF16 ? kPeakBf16 : kPeakFlops;
      cuda::DropoutSpec drop;
      drop.p = 0.2f;
      drop.seed = 9;
      drop.counters = ctr.data();
      const auto fwd = [&](const cuda::DenseInput& x, cudaStream_t st) {
        cuda::dense_relu_dropout_forward(Y.data(), x, W.data(), b.data(), B, K, N, drop, st, pr, ws.data(), tk.data());
      };
      bench.run("layer0_input", shape, cat("forward ", to_string(pr), ": gather + float X"), fflops,
                double(B) * K * 9 + 4.0 * B * N, [&](cudaStream_t st) {
                  cuda::gather_batch(X.data(), y.data(), images.data(), images.data(), idx.data(), ctr.data(), B, B,
                                     K, st);
                  fwd(X.data(), st);
                }, peak);
      bench.run("layer0_input", shape, cat("forward ", to_string(pr), ": images in place"), fflops,
                double(B) * K + 4.0 * B * N, [&](cudaStream_t st) { fwd(in, st); }, peak);
      // ... as the engine launches it since the seventeenth session: W read from the optimizer's
      // rounded copy (EngineConfig::rounded_weights), so the TF32 tiles skip their pass over W
      // (timing only: the time does not depend on the values, which are not rounded here).
      if (pr != GemmPrecision::FP32)
        bench.run("layer0_input", shape, cat("forward ", to_string(pr), ": images in place, W rounded"), fflops,
                  double(B) * K + 4.0 * B * N, [&](cudaStream_t st) {
                    cuda::dense_relu_dropout_forward(Y.data(), in, W.data(), b.data(), B, K, N, drop, st, pr, ws.data(),
                                                     tk.data(), true);
                  }, peak);
        // the same on the 128x128 tile with its split summed across a cluster (cluster_split)
        if (pr != GemmPrecision::FP32 && cuda::dense_clusters_available()) {
          cuda::dense_force_tile({cuda::GemmTile::Pipe128, false, true});
          bench.run("layer0_input", shape,
                    cat("forward ", to_string(pr), ": images in place, W rounded, 128x128 cluster split"), fflops,
                    double(B) * K + 4.0 * B * N, [&](cudaStream_t st) {
                      cuda::dense_relu_dropout_forward(Y.data(), in, W.data(), b.data(), B, K, N, drop, st, pr,
                                                       ws.data(), tk.data(), true);
                    }, peak);
          cuda::dense_force_tile({});
        }
      bench.run("layer0_input", shape, cat("weight pieces ", to_string(pr), ": float X (gathered)"), wflops,
                4.0 * B * (K + N), [&](cudaStream_t st) {
                  cuda::dense_weight_partials(part.data(), dZ.data(), X.data(), B, K, N, st, pr);
                }, peak);
      bench.run("layer0_input", shape, cat("weight pieces ", to_string(pr), ": images in place"), wflops,
                double(B) * K + 4.0 * B * N, [&](cudaStream_t st) {
                  cuda::dense_weight_partials(part.data(), dZ.data(), in, B, K, N, st, pr);
                }, peak);
    }
  }
}

// The tail path's optimizer end of a step for the default 784-128-64-10 model (--kernels tail):
// layer 0's weight GEMM leaving its split-K pieces (dense_weight_partials) against the graph path's
// dense_backward_weights (GEMM + reduction pass), and ONE adam_reduce_update over every layer's
// pieces (layer 0's, the tail kernel's per-block slices) that also advances the counters, against
// the graph path's adam_update over the whole flat span + advance_train_counters.
void bench_optimizer(Bench& bench) {
  const int in = 784, w0 = 128, w1 = 64, w2 = 10;
  const std::vector<int> widths{w0, w1, w2};
  if (!cuda::tail_unsupported(widths).empty()) return;
  const std::size_t n = std::size_t(w0) * (in + 1) + std::size_t(w1) * (w0 + 1) + std::size_t(w2) * (w1 + 1);
  auto p = random_device(n, 71), m = random_device(n, 72, -0.1f, 0.1f), v = random_device(n, 73, 0, 0.01f),
       g = random_device(n, 74);
  cuda::TrainCounters c;
  c.step = 10;
  c.lr = 1e-4f;
  DeviceBuffer<cuda::TrainCounters> ctr(1);
  ctr.upload(&c, 1);
  DeviceBuffer<unsigned> advance(1);
  CUDA_CHECK(cudaMemset(advance.data(), 0, advance.bytes()));
  for (int B : {512, 4096, 16384}) {
    const int s0 = cuda::dense_weight_slices(B, in, w0), blocks = cuda::tail_blocks(B);
    const std::size_t slice = cuda::tail_slice_floats(widths);
    auto part0 = random_device(cuda::dense_weight_partial_floats(B, in, w0), 75),
         tail = random_device(std::size_t(blocks) * slice, 76);
    auto X = random_device(std::size_t(B) * in, 77, 0.0f, 1.0f), dZ = random_device(std::size_t(B) * w0, 78);
    DeviceBuffer<float> dW(std::size_t(w0) * in), db(w0), ws(std::max<std::size_t>(1, cuda::dense_workspace_floats(B, in, w0)));
    const std::string wshape = cat(B, "x", in, "->", w0);
    const double wflops = 2.0 * B * w0 * (in + 1), wbytes = 4.0 * (double(B) * (in + w0) + double(s0) * w0 * (in + 1));
    for (GemmPrecision pr : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
      const double peak = pr == GemmPrecision::TF32 ? kPeakTf32 : pr == GemmPrecision::BF16 ? kPeakBf16 : kPeakFlops;
      bench.run("gemm_weight", wshape, cat("native ", to_string(pr), " (+db) pieces only (", s0, ", tail path)"), wflops,
                wbytes, [&](cudaStream_t st) {
                  cuda::dense_weight_partials(part0.data(), dZ.data(), X.data(), B, in, w0, st, pr);
                }, peak);
      // The same pieces on each pipelined tile (the untuned pick takes 128x128 where its blocks
      // fill 7/8 of the GPU, kSplitBigTileBlocks; the autotuner times both): what the 64x64
      // tile's twice as many operand bytes cost (NOTES "Layer 0's weight GEMM in pieces for the
      // 128x128 tile").
      if (pr != GemmPrecision::FP32)
        for (const auto& [tile, name] : {std::pair{cuda::GemmTile::Pipe128, "128x128"},
                                         std::pair{cuda::GemmTile::Pipe64x8, "64x64 8-warp"}}) {
          cuda::dense_force_tile({tile, false});
          bench.run("gemm_weight", wshape, cat("native ", to_string(pr), " (+db) pieces only (", s0, ") ", name), wflops,
                    wbytes, [&](cudaStream_t st) {
                      cuda::dense_weight_partials(part0.data(), dZ.data(), X.data(), B, in, w0, st, pr);
                    }, peak);
          cuda::dense_force_tile({});
        }
      // ... as the tail path launches it since the sixteenth session: dz0 and X written rounded by
      // their producers (the tail kernel, gather_batch_overlapped), so the TF32 tiles skip their
      // rounding pass (dense_weight_partials' dz_rounded / x_rounded; timing only: the time does not
      // depend on the values, which are not rounded here).
      if (pr != GemmPrecision::FP32)
        bench.run("gemm_weight", wshape, cat("native ", to_string(pr), " (+db) pieces only (", s0, ", tail path), inputs rounded"),
                  wflops, wbytes, [&](cudaStream_t st) {
                    cuda::dense_weight_partials(part0.data(), dZ.data(), X.data(), B, in, w0, st, pr, true, true);
                  }, peak);
      // The wgmma weight tile (issue 12; dense_force_tile only): the same pieces by 128x64 and
      // 128x128 tiles of two warpgroups (kernels/dense.cu WgmmaWeightTile). Labelled as the
      // fallback where this build or device has no sm_90a.
      if (pr == GemmPrecision::FP32) continue;
      const bool ok = cuda::dense_wgmma_available();
      for (const auto& [tile, name] : {std::pair{cuda::GemmTile::Wgmma, "wgmma 128x64"},
                                       std::pair{cuda::GemmTile::Wgmma128, "wgmma 128x128"}}) {
        const std::string w = ok ? std::string(name) : std::string(name) + " unavailable (Pipe64x8)";
        cuda::dense_force_tile({tile, false});
        bench.run("gemm_weight", wshape, cat("native ", to_string(pr), " (+db) pieces only (", s0, ") ", w), wflops,
                  wbytes, [&](cudaStream_t st) {
                    cuda::dense_weight_partials(part0.data(), dZ.data(), X.data(), B, in, w0, st, pr);
                  }, peak);
        cuda::dense_force_tile({});
      }
    }
    cuda::GradSlicesSet set;
    set.seg[set.count++] = {part0.data(), s0, std::size_t(w0) * (in + 1), w0, in, 0, std::size_t(w0) * in};
    const std::size_t off1 = std::size_t(w0) * (in + 1), off2 = off1 + std::size_t(w1) * (w0 + 1);
    set.seg[set.count++] = {tail.data() + cuda::tail_layer_offset(widths, 1), blocks, slice, w1, w0, off1,
                            off1 + std::size_t(w1) * w0};
    set.seg[set.count++] = {tail.data() + cuda::tail_layer_offset(widths, 2), blocks, slice, w2, w1, off2,
                            off2 + std::size_t(w2) * w1};
    const double rbytes = 4.0 * (double(s0) * w0 * (in + 1) + double(blocks) * slice + 6.0 * n);
    bench.run("optimizer", cat(B, " rows, ", n, " params"),
              cat("adam_reduce_update (1 launch: ", s0, " + ", blocks, " slices, counters advanced)"), 10.0 * n, rbytes,
              [&](cudaStream_t st) {
                cuda::adam_reduce_update(p.data(), m.data(), v.data(), nullptr, set, ctr.data(), 0.9f, 0.999f, 1e-7f, st,
                                         advance.data());
              });
    // The tail's slices alone, as many as its 32-row and its 16-row blocks write (--tail-rows 16: the
    // optimizer's side of NOTES "Two tail blocks an SM": twice the slices to add at 512-4096 rows).
    {
      const int hb = cuda::tail_blocks(B, cuda::TailRows::Half);
      auto htail = random_device(std::size_t(hb) * slice, 79);
      const std::size_t nt = std::size_t(w1) * (w0 + 1) + std::size_t(w2) * (w1 + 1);
      for (const int nb : {blocks, hb}) {
        cuda::GradSlicesSet ts;
        ts.seg[ts.count++] = {htail.data() + cuda::tail_layer_offset(widths, 1), nb, slice, w1, w0, off1,
                              off1 + std::size_t(w1) * w0};
        ts.seg[ts.count++] = {htail.data() + cuda::tail_layer_offset(widths, 2), nb, slice, w2, w1, off2,
                              off2 + std::size_t(w2) * w1};
        bench.run("optimizer", cat(B, " rows, ", nt, " params"),
                  cat("adam_reduce_update (tail slices only: ", nb, nb == blocks ? ", 32-row blocks)" : ", 16-row blocks)"),
                  10.0 * double(nt), 4.0 * (double(nb) * slice + 6.0 * double(nt)), [&](cudaStream_t st) {
                    cuda::adam_reduce_update(p.data(), m.data(), v.data(), nullptr, ts, ctr.data(), 0.9f, 0.999f, 1e-7f,
                                             st, advance.data());
                  });
        if (hb == blocks) break;
      }
    }
    // Layer 0's weight GEMM with its Adam in one clustered launch (cuda::dense_weight_adam, the tail
    // path's default where the device holds the clusters; NOTES "Layer 0's Adam in its weight GEMM's
    // cluster"): the step's end in both forms, each a pair of launches as the engine runs them
    // (inputs rounded, the counters advanced by the optimizer launch): the pieces + adam_reduce_update
    // over every segment, against dense_weight_adam + adam_reduce_update over the tail's slices only;
    // and dense_weight_adam alone on each tile.
    {
      cuda::GradSlicesSet tail_only;
      for (int i = 1; i < set.count; ++i) tail_only.seg[tail_only.count++] = set.seg[i];
      cuda::WeightAdam wa;
      wa.p = p.data(), wa.m = m.data(), wa.v = v.data();
      wa.w_offset = 0, wa.b_offset = std::size_t(w0) * in, wa.counters = ctr.data();
      const std::string shape = cat(B, " rows, ", n, " params");
      for (GemmPrecision pr : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}) {
        const bool rounded_in = pr != GemmPrecision::FP32;
        bench.run("weight_adam", shape,
                  cat(to_string(pr), " step end apart: pieces (", s0, ") + adam_reduce_update (2 launches)"), wflops,
                  wbytes + rbytes, [&](cudaStream_t st) {
                    cuda::dense_weight_partials(part0.data(), dZ.data(), X.data(), B, in, w0, st, pr, rounded_in,
                                                rounded_in);
                    cuda::adam_reduce_update(p.data(), m.data(), v.data(), nullptr, set, ctr.data(), 0.9f, 0.999f,
                                             1e-7f, st, advance.data());
                  });
        for (const auto& tn : {std::pair{cuda::WeightAdamTile::Large, "128x128"},
                               std::pair{cuda::WeightAdamTile::Small, "64x64"}}) {
          const cuda::WeightAdamTile tile = tn.first;  // (not a structured binding: the lambdas below capture it)
          const char* const name = tn.second;
          std::printf("  weight_adam %s %s at %d rows: clusters of %d blocks held at once: %d (%d tiles)\n", to_string(pr),
                      name, B, s0, cuda::dense_weight_adam_clusters(B, in, w0, pr, false, tile),
                      tile == cuda::WeightAdamTile::Large ? ((w0 + 127) / 128) * ((in + 128) / 128)
                                                          : ((w0 + 63) / 64) * ((in + 64) / 64));
          if (cuda::dense_weight_adam_tile(B, in, w0, pr, false, tile) != tile) {
            std::printf("  weight_adam %s %s at %d rows (%d pieces): no such cluster on this device\n", to_string(pr),
                        name, B, s0);
            continue;
          }
          const double fbytes = 4.0 * (double(B) * (in + w0) + 6.0 * double(w0) * (in + 1));
          bench.run("weight_adam", shape, cat(to_string(pr), " dense_weight_adam ", name, " (", s0, " pieces a cluster)"),
                    wflops, fbytes, [&](cudaStream_t st) {
                      cuda::dense_weight_adam(wa, dZ.data(), X.data(), B, in, w0, st, pr, rounded_in, rounded_in, tile);
                    });
          bench.run("weight_adam", shape,
                    cat(to_string(pr), " step end in one: dense_weight_adam ", name, " + adam_reduce_update (tail slices)"),
                    wflops, fbytes + 4.0 * (double(blocks) * slice), [&](cudaStream_t st) {
                      cuda::dense_weight_adam(wa, dZ.data(), X.data(), B, in, w0, st, pr, rounded_in, rounded_in, tile);
                      cuda::adam_reduce_update(p.data(), m.data(), v.data(), nullptr, tail_only, ctr.data(), 0.9f,
                                               0.999f, 1e-7f, st, advance.data());
                    });
        }
      }
    }
    bench.run("optimizer", cat(B, " rows, ", n, " params"), "replaced: adam_update + advance_train_counters (2 launches)",
              10.0 * n, 28.0 * n, [&](cudaStream_t st) {
                cuda::adam_update(p.data(), m.data(), v.data(), g.data(), n, ctr.data(), 0.9f, 0.999f, 1e-7f, st);
                cuda::advance_train_counters(ctr.data(), st);
              });
    bench.run("optimizer", cat(B, " rows, ", n, " params"),
              "adam_update_and_advance (the graph path's step end: 1 launch)", 10.0 * n, 28.0 * n,
              [&](cudaStream_t st) {
                cuda::adam_update_and_advance(p.data(), m.data(), v.data(), g.data(), n, ctr.data(), 0.9f, 0.999f,
                                              1e-7f, st, advance.data());
              });
    // Pieces sweep at 4096 rows: layer 0's weight pieces and the adam_reduce_update that sums them
    // at other piece counts than the model's s0 (dense_force_weight_pieces). More pieces: more
    // blocks and fewer 32-row slices a block in the GEMM (a018989: every tile ran ≈ 1-1.5 µs a
    // slice, 22 slices a block at s0 = 6), more slices to sum in the optimizer. The count whose two
    // rows add up least is the one weight_split_rows' model should give (profiling/NOTES.md).
    if (B != 4096) continue;
    for (int pieces : {6, 12, 24}) {  // (the model's count, 16, is the rows above; 6 was the model's before)
      cuda::dense_force_weight_pieces(pieces);
      const int sp = cuda::dense_weight_slices(B, in, w0);
      auto partp = random_device(cuda::dense_weight_partial_floats(B, in, w0), 79);
      const double pbytes = 4.0 * (double(B) * (in + w0) + double(sp) * w0 * (in + 1));
      for (GemmPrecision pr : {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16})
        bench.run("gemm_weight", wshape, cat("pieces sweep: native ", to_string(pr), " (+db) pieces only (", sp, ")"),
                  wflops, pbytes, [&](cudaStream_t st) {
                    cuda::dense_weight_partials(partp.data(), dZ.data(), X.data(), B, in, w0, st, pr);
                  }, pr == GemmPrecision::TF32 ? kPeakTf32 : pr == GemmPrecision::BF16 ? kPeakBf16 : kPeakFlops);
      cuda::GradSlicesSet setp = set;
      setp.seg[0].partial = partp.data();
      setp.seg[0].slices = sp;
      const double pr_bytes = 4.0 * (double(sp) * w0 * (in + 1) + double(blocks) * slice + 6.0 * n);
      bench.run("optimizer", cat(B, " rows, ", n, " params"),
                cat("pieces sweep: adam_reduce_update (", sp, " + ", blocks, " slices)"), 10.0 * n, pr_bytes,
                [&](cudaStream_t st) {
                  cuda::adam_reduce_update(p.data(), m.data(), v.data(), nullptr, setp, ctr.data(), 0.9f, 0.999f, 1e-7f,
                                           st, advance.data());
                });
      cuda::dense_force_weight_pieces(0);
    }
  }
}

// See the header: layer 0's TF32 GEMMs whole and with parts of their loop removed.
void bench_ablation(Bench& bench) {
  if (!cuda::dense_wgmma_available()) {  // (the ablation kernels are built as sm_90a machine code only)
    std::printf("ablation: skipped, its kernels are sm_90a code and this GPU does not run it\n");
    return;
  }
  const int K = 784, N = 128, n_images = 60000;
  const DeviceImages dev_images(n_images, K, 91);
  const DeviceBuffer<cuda::TrainCounters>& ctr = dev_images.ctr;
  auto W = random_device(std::size_t(N) * K, 92, -0.1f, 0.1f), b = random_device(N, 93);
  const GemmPrecision pr = GemmPrecision::TF32;
  const std::pair<unsigned, const char*> parts[] = {{0u, "whole"},
                                                    {cuda::kAblatePrepare, "no prepare pass"},
                                                    {cuda::kAblateMath, "no mma"},
                                                    {cuda::kAblateCopies, "no copies"},
                                                    {cuda::kAblateCopies | cuda::kAblatePrepare | cuda::kAblateMath,
                                                     "skeleton"}};
  for (int B : {4096, 16384}) {
    auto X = random_device(std::size_t(B) * K, 94, 0.0f, 1.0f), dZ = random_device(std::size_t(B) * N, 95);
    DeviceBuffer<float> Y(std::size_t(B) * N);
    DeviceBuffer<float> ws(std::max<std::size_t>(1, cuda::dense_workspace_floats(B, K, N)));
    DeviceBuffer<unsigned> tk(std::max<std::size_t>(1, cuda::dense_ticket_count(B, K, N)));
    CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
    DeviceBuffer<float> part(cuda::dense_weight_partial_floats(B, K, N));
    const auto in =
        cuda::DenseInput::images_by_index(dev_images.images.data(), dev_images.idx.data(), 0, ctr.data(), B);
    const std::string shape = cat(B, "x", K, "->", N);
    const double fflops = 2.0 * B * K * N, wflops = 2.0 * B * N * (K + 1);
    cuda::DropoutSpec drop;
    drop.p = 0.2f;
    drop.seed = 9;
    drop.counters = ctr.data();
    std::vector<std::pair<cuda::GemmTileChoice, const char*>> tiles{
        {{cuda::GemmTile::Pipe128, false}, "forward images, 128x128 cross-split 1 launch"},
        {{cuda::GemmTile::Pipe64x8, true}, "forward images, 64x64 8-warp fold"}};
    if (cuda::dense_wgmma_available())  // (else the forced tile would fall back to Pipe64x8)
      tiles.push_back({{cuda::GemmTile::WgmmaWide, true}, "forward images, wgmma 128x128 2wg fold"});
    for (const auto& [tile, name] : tiles)
      for (const auto& [bits, part_name] : parts) {
        cuda::dense_force_tile(tile);
        cuda::dense_force_ablation(bits);
        bench.run("ablation", shape, cat("tf32 ", name, ": ", part_name), fflops, double(B) * K + 4.0 * B * N,
                  [&](cudaStream_t st) {
                    cuda::dense_relu_dropout_forward(Y.data(), in, W.data(), b.data(), B, K, N, drop, st, pr, ws.data(),
                                                     tk.data());
                  }, kPeakTf32);
        cuda::dense_force_ablation(0);
        cuda::dense_force_tile({});
      }
    const int s0 = cuda::dense_weight_slices(B, K, N);
    for (const auto& [tile, name] : {std::pair{cuda::GemmTile::Pipe64x8, "64x64 8-warp"},
                                     std::pair{cuda::GemmTile::Pipe128, "128x128"}})
      for (const auto& [bits, part_name] : parts) {
        cuda::dense_force_tile({tile, false});
        cuda::dense_force_ablation(bits);
        bench.run("ablation", shape, cat("tf32 weight pieces (", s0, "), X gathered, ", name, ": ", part_name), wflops,
                  4.0 * B * (K + N), [&](cudaStream_t st) {
                    cuda::dense_weight_partials(part.data(), dZ.data(), X.data(), B, K, N, st, pr);
                  }, kPeakTf32);
        cuda::dense_force_ablation(0);
        cuda::dense_force_tile({});
      }
  }
}

int run(const Options& opt) {
  const DeviceInfo dev = query_device();
  if (!dev.available) {
    std::printf("bench_kernels: skipped, needs a CUDA device (%s)\n", dev.reason.c_str());
    return 77;
  }
  CUDA_CHECK(cudaSetDevice(0));
  std::printf("device: %s\nassumed peaks: %.0f TFLOP/s FP32 (non-tensor), %.2f TB/s (H100 SXM5)\n",
              describe(dev).c_str(), kPeakFlops * 1e-12, kPeakBytes * 1e-12);
  std::printf("%-16s %-26s %-28s %9s %10s %9s %9s\n", "op", "shape", "impl", "us", "GFLOP/s", "GB/s", "floor_us");

  Bench bench(opt);
  CublasHandle blas;
  CublasLtHandle lt;
  DeviceBuffer<unsigned char> ws(cublas::kWorkspaceBytes);
  CUBLAS_CHECK(cublasSetWorkspace(blas.get(), ws.data(), ws.bytes()));
#if defined(MNIST_HAVE_CUDNN)
  CudnnHandle dnn;
#endif
  DeviceBuffer<cuda::Metrics> metrics(1);
  CUDA_CHECK(cudaMemset(metrics.data(), 0, metrics.bytes()));

  const std::size_t storage = make_layout(ModelSpec{}).storage;
  for (const cases::OpCase& c : cases::op_cases(cases::bench_rows(), false, {storage})) {
    const int B = c.rows, K = c.in, N = c.out;
    const std::string shape = c.op == cases::Op::Adam ? cat("n=", c.count)
                              : K ? cat(B, "x", K, N ? cat("->", N) : std::string()) : cat(B, "x", N);
    const std::string op = cases::op_name(c.op);
    switch (c.op) {
      case cases::Op::DenseForward: {
        auto X = random_device(std::size_t(B) * K, 1), W = random_device(std::size_t(N) * K, 2), b = random_device(N, 3);
        DeviceBuffer<float> Y(std::size_t(B) * N);
        const double flops = 2.0 * B * K * N, bytes = 4.0 * (double(B) * K + double(N) * K + N + double(B) * N);
        const std::string s = shape + (c.relu ? " relu" : "");
        bench.run(op, s, "native (tiled, fused epilogue)", flops, bytes, [&](cudaStream_t st) {
          cuda::dense_forward(Y.data(), X.data(), W.data(), b.data(), B, K, N, c.relu, st);
        });
        cublas::LtDense plan(lt.get(), B, K, N, c.relu, cublas::kWorkspaceBytes);
        bench.run(op, s, "cuBLASLt bias(+relu) epilogue", flops, bytes,
                  [&](cudaStream_t st) { plan.run(Y.data(), X.data(), W.data(), b.data(), ws.data(), st); });
        bench.run(op, s, "cuBLAS sgemm (no epilogue)", flops, bytes, [&](cudaStream_t st) {
          cublas::gemm_nt(blas.get(), Y.data(), X.data(), W.data(), B, N, K, false, st);
        });
        break;
      }
      case cases::Op::DenseBackward: {
        auto X = random_device(std::size_t(B) * K, 4), W = random_device(std::size_t(N) * K, 5),
             dZ = random_device(std::size_t(B) * N, 6), D = random_device(std::size_t(B) * K, 7);
        DeviceBuffer<float> ones{std::size_t(B)};
        ones.upload(std::vector<float>(std::size_t(B), 1.0f).data(), std::size_t(B));
        DeviceBuffer<float> dW(std::size_t(N) * K), db(N), dX(std::size_t(B) * K);
        // dW, db and a masked dX (the engine's backward of a layer fed by a ReLU+dropout layer).
        const double flops = 4.0 * B * K * N + double(B) * N;
        const double bytes = 4.0 * (2.0 * B * N + 2.0 * B * K + N * double(K) + N * double(K) + N + double(B) * K);
        const float scale = 1.25f;
        bench.run(op, shape, "native fused (1 launch: dW+db, dX)", flops, bytes, [&](cudaStream_t st) {
          cuda::dense_backward_fused(dW.data(), db.data(), dX.data(), dZ.data(), X.data(), W.data(), D.data(), scale, B,
                                     K, N, st);
        });
        if (const std::size_t wsn = cuda::dense_workspace_floats(B, K, N)) {  // as the engine runs it
          DeviceBuffer<float> ws(wsn);
          DeviceBuffer<unsigned> tk(std::max<std::size_t>(1, cuda::dense_ticket_count(B, K, N)));
          CUDA_CHECK(cudaMemset(tk.data(), 0, tk.bytes()));
          bench.run(op, shape, "native fused + split-K (engine)", flops, bytes, [&](cudaStream_t st) {
            cuda::dense_backward_fused(dW.data(), db.data(), dX.data(), dZ.data(), X.data(), W.data(), D.data(), scale,
                                       B, K, N, st, GemmPrecision::FP32, ws.data(), tk.data());
          });
          bench.run(op, shape, "native fused + split-K, 2 launches", flops, bytes, [&](cudaStream_t st) {
            cuda::dense_backward_fused(dW.data(), db.data(), dX.data(), dZ.data(), X.data(), W.data(), D.data(), scale,
                                       B, K, N, st, GemmPrecision::FP32, ws.data());
          });
        }
        bench.run(op, shape, "native (dW+db GEMM, dX GEMM)", flops, bytes, [&](cudaStream_t st) {
          cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), X.data(), B, K, N, st);
          cuda::dense_backward_data(dX.data(), dZ.data(), W.data(), D.data(), scale, B, K, N, st);
        });
        bench.run(op, shape, "cuBLAS 2 sgemm + sgemv + mask", flops, bytes, [&](cudaStream_t st) {
          cublas::gemm_tn(blas.get(), dW.data(), dZ.data(), X.data(), N, K, B, st);
          cublas::column_sum(blas.get(), db.data(), dZ.data(), ones.data(), B, N, st);
          cublas::gemm_nn(blas.get(), dX.data(), dZ.data(), W.data(), B, K, N, st);
          cuda::relu_dropout_backward(dX.data(), dX.data(), D.data(), std::size_t(B) * K, scale, st);
        });
        break;
      }
      case cases::Op::Dropout: {
        const std::size_t n = std::size_t(B) * N;
        auto in = random_device(n, 9);
        DeviceBuffer<float> out(n);
        bench.run(op, shape, "native (cuRAND Philox)", 0, 8.0 * n, [&](cudaStream_t st) {
          cuda::dropout_forward(out.data(), in.data(), n, 0.2f, 42, 1, 0, st);
        });
        break;
      }
      case cases::Op::SoftmaxXent: {
        auto z = random_device(std::size_t(B) * N, 10, -5, 5);
        auto y = random_bytes(std::size_t(B), 11, N - 1);
        DeviceBuffer<float> d(std::size_t(B) * N);
        const double bytes = 4.0 * 2 * B * N + B;
        // As the engine runs it: its own scratch, zeroed once (each launch leaves the counter 0).
        DeviceBuffer<cuda::Metrics> xent_blocks(std::size_t(cuda::softmax_xent_blocks(B)));
        DeviceBuffer<unsigned> xent_done(1);
        CUDA_CHECK(cudaMemset(xent_done.data(), 0, xent_done.bytes()));
        const cuda::XentScratch scratch{xent_blocks.data(), xent_done.data(), int(xent_blocks.size())};
        const std::string impl = cat("native (fused, ", cuda::kXentRowsPerBlock, " rows a block)");
        bench.run(op, shape, impl, 0, bytes, [&](cudaStream_t st) {
          cuda::softmax_xent(d.data(), metrics.data(), scratch, z.data(), y.data(), B, N, 1.0f / B, st);
        });
#if defined(MNIST_HAVE_CUDNN)
        bench.run(op, shape, "cuDNN softmax only (unfused)", 0, 4.0 * 2 * B * N, [&](cudaStream_t st) {
          cudnn::softmax(dnn.get(), d.data(), z.data(), B, N, st);
        });
#endif
        break;
      }
      case cases::Op::Softmax: {
        auto z = random_device(std::size_t(B) * N, 12, -5, 5);
        DeviceBuffer<float> p(std::size_t(B) * N);
        bench.run(op, shape, "native", 0, 8.0 * B * N,
                  [&](cudaStream_t st) { cuda::softmax(p.data(), z.data(), B, N, st); });
#if defined(MNIST_HAVE_CUDNN)
        bench.run(op, shape, "cuDNN softmax forward", 0, 8.0 * B * N,
                  [&](cudaStream_t st) { cudnn::softmax(dnn.get(), p.data(), z.data(), B, N, st); });
#endif
        break;
      }
      case cases::Op::Adam: {
        const std::size_t n = c.count;
        auto p = random_device(n, 13), m = random_device(n, 14, -0.1f, 0.1f), v = random_device(n, 15, 0, 0.01f),
             g = random_device(n, 16);
        bench.run(op, shape, "native (one launch, flat span)", 10.0 * n, 28.0 * n, [&](cudaStream_t st) {
          cuda::adam_update(p.data(), m.data(), v.data(), g.data(), n, 1e-4f, 0.9f, 0.999f, 1e-7f, 10, st);
        });
        break;
      }
      case cases::Op::Gather: {
        const int n = 48000;
        auto images = random_bytes(std::size_t(n) * K, 17, 255), labels = random_bytes(std::size_t(n), 18, 9);
        DeviceBuffer<int32_t> order{std::size_t(n)};
        cuda::identity_order(order.data(), n, nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
        DeviceBuffer<float> X(std::size_t(B) * K);
        DeviceBuffer<uint8_t> y{std::size_t(B)};
        bench.run(op, shape, "native (uint8 -> float)", 0, double(B) * K * 5 + B * 5.0, [&](cudaStream_t st) {
          cuda::gather_batch(X.data(), y.data(), images.data(), labels.data(), order.data(), B, K, st);
        });
        break;
      }
    }
  }
  {  // the per-epoch shuffle of the 48,000-example training split
    const int n = 48000;
    DeviceBuffer<int32_t> order{std::size_t(n)};
    DeviceBuffer<unsigned char> temp(cuda::shuffle_temp_bytes(n));
    CUDA_CHECK(cudaMemset(temp.data(), 0, temp.size()));  // the bucket counts start at 0
    // Bytes: the bucket shuffle writes keys and slots and reads them back about twice, plus the order.
    bench.run("shuffle_order", "n=48000", "native (Philox keys, 3-launch bucket shuffle)", 0, 4.0 * n * 6,
              [&](cudaStream_t st) { cuda::shuffle_order(order.data(), temp.data(), temp.size(), n, 42, 1, st); });
    cuda::shuffle_set_test_hooks({true, 0xffffffffu});  // the same permutation by CUB's radix sort
    bench.run("shuffle_order", "n=48000", "CUB (Philox keys + DeviceRadixSort pairs)", 0, 4.0 * n * 6,
              [&](cudaStream_t st) { cuda::shuffle_order(order.data(), temp.data(), temp.size(), n, 42, 1, st); });
    cuda::shuffle_set_test_hooks({});
  }
  bench_head(bench, metrics.data());
  bench_tail(bench, metrics.data());
  bench_optimizer(bench);
  bench_layer0_input(bench);
  bench_ablation(bench);
  bench_gemm_shapes(bench, blas.get());
  bench_icache(bench);
  bench_ingress(bench);
  if (!opt.json.empty()) {
    write_json(opt.json, dev, opt, bench.results());
    std::printf("wrote %s\n", opt.json.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace mnist

int main(int argc, char** argv) {
  mnist::Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_kernels: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json") {
      opt.json = value();
    } else if (a == "--repeats") {
      opt.repeats = std::max(1, std::atoi(value().c_str()));
    } else if (a == "--inner") {
      opt.inner = std::max(1, std::atoi(value().c_str()));
    } else if (a == "--only") {
      opt.only.push_back(value());
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: bench_kernels [--json FILE] [--repeats N] [--inner N] [--only TEXT]...\n"
                  "  --only TEXT: time only the rows whose \"op shape impl\" contains TEXT (repeatable),\n"
                  "               e.g. --only 'gemm_forward 4096x784->128'\n");
      return 0;
    } else {
      std::fprintf(stderr, "bench_kernels: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  try {
    return mnist::run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
}
