// The CUDA engine: the Sequential model of layers/model.hpp trained on the GPU with the kernels of
// kernels/, step for step the same computation as the CPU reference (layers/cpu_engine.cpp): the
// same op order, dropout masks (same Philox draws), shuffle, Adam formula and step counter.
//
// Memory: parameters, gradients and Adam moments are one device allocation each (flat padded
// layout); every activation buffer is allocated once in the constructor; datasets are uploaded
// once as uint8. A training step allocates nothing and never waits on the host.
//
// One training step, for L Dense layers (hidden ones ReLU + dropout), is this fixed sequence of
// launches on one stream:
//   dense_relu_dropout_forward  x L-1  A_l = dropout(ReLU(A_{l-1}·W_lᵀ + b_l))   (mask in the epilogue);
//                                    layer 0 reads X0 = images[order[batch*B + r]] / 255 in place
//                                    (DenseInput::images_by_index, kernels/dense.cuh): no float batch,
//                                    no gather launch; the loss kernel below reads each row's label
//                                    the same way, labels[order[batch*B + r]] (LabelInput::by_index)
//   head_train                       the last layer in ONE launch (kernels/head.cuh): logits =
//                                    A_{L-2}·W_{L-1}ᵀ + b_{L-1}; loss and hits into Metrics;
//                                    dZ_{L-1} = (softmax - onehot)/B; dW_{L-1}, db_{L-1}; dZ_{L-2}
//   dense_backward_fused      x L-1  dW_l, db_l = dZ_lᵀ·A_{l-1}, Σ dZ_l        (db as a ones column)
//                                    and, for l > 0, in the same launch:
//                                    dZ_{l-1} = (dZ_l·W_l) ⊙ [A_{l-1} > 0] / (1-p)
//   adam_update_and_advance          every parameter in one launch; its last block to finish also
//                                    advances the counters (step += 1, batch += 1 on the device)
// Because the hidden activations are stored after dropout, the gradient through dropout and ReLU
// needs no stored mask: D > 0 exactly where the unit was kept and active (kernels/dense.cuh).
// Layer 0's weight GEMM reads X0 from the images as its forward does; evaluation and prediction
// read their consecutive rows in place too (evaluation's labels are the dataset's own array). The
// GEMMs see the floats gather_batch would have written, bit for bit (pixel_value), and the loss the
// same labels, so the results are those of the gathered batch; cfg.x_in_place = false gathers X
// and the labels (gather_batch, gather_rows: one launch more a step) as before, for the tests that
// compare the two. --gemm cublas always gathers; a
// one-layer model whose head kernel reads X0 too keeps the gather.
// The head (head_, chosen once in the constructor) runs where the last layer qualifies
// (cuda::head_supported: <= 32 classes, a narrow enough input; the default model's 64 -> 10 does),
// with native GEMMs, cfg.head_kernel on and a batch of at least cfg.head_min_batch; otherwise the
// last layer is the old four launches: dense_forward, softmax_xent, and dense_backward_fused (its
// weight GEMM, split-K reduction and data GEMM). At fp32 the head gives the old launches' loss, hits and dZ_{L-2} bit for bit, dW and
// db up to the order of their float32 sums; evaluation runs head_evaluate (forward + metrics) the
// same way. Engine::head_kernel() reports the choice.
//
// Graphs: K = cfg.graph_steps consecutive full-batch steps are captured ONCE as one CUDA graph
// (and a single step as another, for the < K full batches left at an epoch's end or after a
// mid-epoch resume), and replayed for every epoch. Everything that changes between steps lives
// in device memory (TrainCounters: step, batch index, learning rate; the epoch's order array), so
// the K copies of the step in the graph are identical and the graphs never change: no
// re-capture, no re-instantiation, not even when the learning rate changes. The counters are
// written once per epoch (one async copy) and advanced on the device by the step's last launch
// (the optimizer's last block). K trades the host's launch work and the gaps between graph launches
// (375 replays an epoch at K = 1, 15 at K = 25) against the latency of an interrupt, which is
// honoured between replays; K is capped at the epoch's full batches (11 at batch 4096: one replay).
// A shorter last batch runs the same launches uncaptured.
// Loss and correct count accumulate on the device and are read once per epoch, with the one
// synchronisation of the epoch; after queue_evaluation the validation pass is enqueued behind the
// last step and read with it.
//
// Tail (cfg.kernels == Kernels::Tail, the large-batch graph path; Auto takes it only where autotuning
// times it faster than the graph path, race_paths): the step above in four launches, each as large
// as the layer's work gets:
//   layer 0's dense_relu_dropout_forward    as above (X0 read from the images); not with
//                                    cfg.tail_layer0, where tail_train computes it (cuda::TailLayer0)
//   tail_train                       every later layer in ONE launch (kernels/tail.cuh): per block of
//                                    rows their forward, dropout, softmax/xent (metrics; labels by
//                                    index, as above) and backward,
//                                    down to dZ_0; each block's partial [dW | db] of those layers
//   gather_batch_overlapped          (cfg.x_weight_gathered, X in place) X0 gathered into floats for
//                                    the weight GEMM, all of it before its pdl_wait: beside the tail
//                                    kernel, which touches neither
//   dense_weight_adam                layer 0's weight GEMM (X0 gathered, or from the images) with its
//                                    Adam: each output tile's split-K pieces the blocks of one thread
//                                    block cluster, summed from their shared memory and applied to W0,
//                                    b0, their moments and rounded copy in the same launch
//                                    (cfg.weight_adam, where the device holds such clusters; else
//                                    dense_weight_partials: the pieces left unsummed for the next launch)
//   adam_reduce_update               every later layer's pieces (and layer 0's, without
//                                    dense_weight_adam) summed in a fixed order and Adam applied in
//                                    the same pass (kernels/adam.cuh): no gradient array, no
//                                    reduction launch, no separate optimizer launch; its last block
//                                    also does advance_train_counters and adds the loss and hits
//                                    the tail kernel left in its group slots (GroupMetrics)
// With cfg.pdl (where the device passes the probe) they are programmatic launches (kernels/pdl.cuh):
// each starts while the one before runs and waits on the device before it reads that one's output.
// Evaluation: layer 0's forward (its rows in place), tail_evaluate (with cfg.tail_layer0: tail_evaluate
// alone, computing layer 0 too). Same counters, graphs and metrics as
// the graph path; the arithmetic of the same GEMMs (inputs rounded to the precision, float32 sums)
// in other summation orders for layers >= 1 (checked against the CPU engine in the tests).
//
// Autotuning (cfg.autotune, the app's --autotune on): every native GEMM launch of the engine runs
// inside a cuda::DenseAutotune scope, so each GEMM shape's tile is timed on this device at its first
// launch and the fastest that agrees with the size model's pick is kept (kernels/dense.cuh). The
// graphs capture the kept tiles: before the first capture, tune_step runs one step's launches
// uncaptured (no optimizer) so that every GEMM in them has been tuned. autotune_report() lists them.
// With Kernels::Auto above kFusedAutoMaxBatch it also races the two large-batch paths, graph and
// tail, each with X in place and gathered (and the tail step in its other forms: layer 0's Adam
// apart, ordinary launches where they would be programmatic, the driver's shared-memory carveout
// where they would ask for the largest), one captured step each from the same restored state, and
// keeps the fastest (race_paths).
//
// Fused (cfg.kernels == Kernels::Fused; Kernels::Auto, the default, picks it up to batch
// kFusedAutoMaxBatch in fp32, kFusedAutoMaxBatchRounded in tf32/bf16, with native GEMMs): the
// training steps run instead as ONE
// persistent cooperative kernel per chunk of up to K = cfg.graph_steps steps
// (kernels/fused_step.cuh: one grid-wide barrier per step and counter waits, weights updated in
// place), with the same
// counters, order and metrics, and the graph path's arithmetic (bitwise equal parameters in the
// emulation), except for layer 0's split-K forward when the input is wider than 392 (equal to
// rounding). With tf32/bf16 it rounds every GEMM input as the graph path does and sums the products
// in its float32 chains (the CPU reference's arithmetic; not the tensor-core paths' bits). A model it
// cannot hold, --gemm cublas or a device without cooperative launch fall back to the graph path, and
// notice() says so in one line. Evaluation then runs as one
// launch too (cuda::fused_evaluate); prediction uses the separate kernels.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/adam.cuh"
#include "kernels/cublas_ref.cuh"
#include "kernels/dense.cuh"
#include "kernels/dropout.cuh"
#include "kernels/fused_step.cuh"
#include "kernels/gather.cuh"
#include "kernels/head.cuh"
#include "kernels/pdl.cuh"
#include "kernels/metrics.cuh"
#include "kernels/softmax_xent.cuh"
#include "kernels/tail.cuh"
#include "kernels/train_counters.cuh"
#include "layers/engine.hpp"
#include "runtime/device.hpp"
#include "runtime/device_buffer.cuh"
#include "runtime/error.hpp"
#include "runtime/graph.cuh"
#include "runtime/handles.cuh"
#include "runtime/nvtx.hpp"
#include "runtime/pinned_buffer.cuh"
#include "runtime/stream.cuh"

namespace mnist {
namespace {

enum MetricSlot { kTrainMetrics = 0, kEvalMetrics = 1 };

// Whether the GEMMs get tickets (EngineConfig::split_in_launch): always in the launch, or, with
// autotune On, where a GEMM's tuning finds it faster than the second pass (its " 2-pass" candidates).
bool split_in_launch(const EngineConfig& cfg) { return cfg.split_in_launch || cfg.autotune == Autotune::On; }

// Live progress (EpochProgress::on_steps) at no cost to the GPU: after each launch an async copy
// of the running metrics into pinned memory and an event; once the epoch is enqueued, the host
// waits on those events in launch order (the GPU keeps running what is queued) and reports each.
class StepSnapshots {
 public:
  void begin(std::size_t launches) {  // every earlier copy has completed: train_steps ended synchronised
    if (host_.size() < launches) host_ = PinnedBuffer<cuda::Metrics>(launches);
    while (events_.size() < launches) events_.emplace_back();
    done_.clear();
  }
  void record(const cuda::Metrics* running, int batches_done, int64_t examples, cudaStream_t s) {
    const std::size_t i = done_.size();
    CUDA_CHECK(cudaMemcpyAsync(&host_[i], running, sizeof(cuda::Metrics), cudaMemcpyDeviceToHost, s));
    events_[i].record(s);
    done_.push_back({batches_done, examples});
  }
  void report(const EpochProgress& p, int batches) {
    for (std::size_t i = 0; i < done_.size(); ++i) {
      events_[i].synchronize();
      const int64_t n = p.examples + done_[i].second;
      p.on_steps(done_[i].first, batches, {n ? (p.loss_sum + host_[i].loss_sum) / double(n) : 0.0,
                                           n ? double(p.correct + int64_t(host_[i].correct)) / double(n) : 0.0, n});
    }
  }

 private:
  PinnedBuffer<cuda::Metrics> host_;
  std::vector<Event> events_;
  std::vector<std::pair<int, int64_t>> done_;  // batches done and examples, per snapshot
};

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(const EngineConfig& cfg) : cfg_(cfg) {
    MNIST_CHECK(cfg.batch_size > 0, "batch size must be > 0");
    MNIST_CHECK(cfg.graph_steps >= 1, "graph_steps must be >= 1, got ", cfg.graph_steps);
    MNIST_CHECK(cfg.eval_rows >= 1 && cfg.eval_rows <= cuda::kTailMaxRows, "eval_rows must be in [1, ",
                cuda::kTailMaxRows, "], got ", cfg.eval_rows);
    layout_ = make_layout(cfg.spec);
    if (cfg.precision != Precision::FP32 && cfg.gemm == Gemm::Native) cuda::dense_prepare();
    for (std::size_t l = 0; l < layout_.dense.size(); ++l)
      MNIST_CHECK(layout_.dense[l].relu == (l + 1 < layout_.dense.size()),
                  "the CUDA engine expects ReLU on every hidden layer and none on the output");

    std::vector<float> init;
    init_params(init, layout_, cfg.init, cfg.seed);
    params_.upload(init);
    for (DeviceBuffer<float>* b : {&grads_, &m_, &v_}) {
      b->resize(layout_.storage);
      CUDA_CHECK(cudaMemset(b->data(), 0, b->bytes()));  // padding of grads stays 0 forever
    }

    const std::size_t B = std::size_t(cfg.batch_size);
    // (Evaluation needs no gradients: its chunks are larger than the training batch, fewer launches.)
    cap_ = std::max(cfg.batch_size, cfg.eval_rows);
    y_.resize(std::size_t(cap_));
    std::size_t ws_floats = 0, tickets = 0;  // grow with the rows: cap_ covers every call
    for (const DenseSlot& s : layout_.dense) {
      act_.emplace_back(std::size_t(cap_) * std::size_t(s.out));
      dz_.emplace_back(B * std::size_t(s.out));
      ws_floats = std::max(ws_floats, cuda::dense_workspace_floats(cap_, s.in, s.out));
      if (split_in_launch(cfg)) tickets = std::max(tickets, cuda::dense_ticket_count(cap_, s.in, s.out));
    }
    gemm_ws_.resize(ws_floats);  // split-K of the GEMMs (empty: none is split)
    gemm_tickets_.resize(tickets);  // and its per-tile counters where a split may be summed in its launch
    if (tickets) CUDA_CHECK(cudaMemset(gemm_tickets_.data(), 0, gemm_tickets_.bytes()));  // each launch leaves 0
    counters_.resize(1);
    counters_host_ = PinnedBuffer<cuda::TrainCounters>(1);
    metrics_.resize(2);
    metrics_host_ = PinnedBuffer<cuda::Metrics>(2);
    // softmax_xent's per-block sums and completion counter (every call passes <= cap_ rows; the
    // counter starts at 0 and each launch leaves it 0); the head's per-32-row slots share them.
    const DenseSlot& last = layout_.dense.back();
    head_ = cfg.head_kernel && cfg.batch_size >= cfg.head_min_batch && cfg.gemm == Gemm::Native &&
            cap_ <= cuda::kHeadMaxRows && cuda::head_supported(last.in, last.out);
    xent_blocks_.resize(std::size_t(std::max(cuda::softmax_xent_blocks(cap_), head_ ? cuda::head_xent_slots(cap_) : 0)));
    if (head_) head_partial_.resize(cuda::head_partial_floats(cfg.batch_size, last.in, last.out));
    xent_done_.resize(1);
    CUDA_CHECK(cudaMemset(xent_done_.data(), 0, xent_done_.bytes()));
    advance_done_.resize(1);  // the step's last launch's count of blocks past their counter read
    CUDA_CHECK(cudaMemset(advance_done_.data(), 0, advance_done_.bytes()));  // each launch leaves it 0

    if (cfg.gemm == Gemm::Cublas) {
      // The cuBLAS path is the float32 yardstick; TF32/BF16 are the native kernels' (their inputs
      // rounded exactly as the CPU reference rounds them, which cuBLAS does not promise).
      MNIST_CHECK(cfg.precision == Precision::FP32, "--gemm cublas runs float32 GEMMs only; use --gemm native with --precision ",
                  to_string(cfg.precision));
      blas_ = std::make_unique<Blas>();
      blas_->workspace.resize(cublas::kWorkspaceBytes);
      CUBLAS_CHECK(cublasSetWorkspace(blas_->handle.get(), blas_->workspace.data(), blas_->workspace.bytes()));
      blas_->ones.upload(std::vector<float>(B, 1.0f));
      for (std::size_t l = 0; l < layout_.dense.size(); ++l) lt_plan(l, cfg.batch_size);  // before any capture
    }
    choose_kernels();
    if (tail_ || race_paths_) {  // the tail path's pieces (choose_tail)
      if (tail_) {
        head_ = false;
        head_partial_ = DeviceBuffer<float>();
      }
      // (Half's blocks: as many as Wide's or more, for any batch up to this one)
      tail_partial_.resize(std::size_t(cuda::tail_blocks(cfg.batch_size, cuda::TailRows::Half)) *
                           cuda::tail_slice_floats(tail_w_));
      const DenseSlot& first = layout_.dense.front();
      w0_partial_.resize(cuda::dense_weight_partial_floats(cfg.batch_size, first.in, first.out));
      if (xent_blocks_.size() < std::size_t(cuda::tail_xent_slots(cap_)))
        xent_blocks_.resize(std::size_t(cuda::tail_xent_slots(cap_)));
      cuda::tail_prepare();  // before any capture
      // (a probe that synchronises: before any capture too)
      pdl_ok_ = pdl_ = cfg.pdl == Pdl::On && cuda::programmatic_launch_works(stream_.get());
      carveout_ok_ = max_carveout_ =
          pdl_ && cfg.carveout == Carveout::Max && cuda::programmatic_launch_works(stream_.get(), true);
    }
    // Layer 0's X from the images in place (its GEMMs are native); the head kernel reads its input
    // as floats, so a one-layer model with the head keeps the gathered batch.
    x_race_ok_ = !blas_ && !(head_ && layout_.dense.size() == 1);
    x_in_place_ = cfg.x_in_place && x_race_ok_;
    tune_ = cfg.autotune != Autotune::Off && !blas_;
    race_x_ = race_paths_ && x_in_place_;  // the race tries the gathered X too (keep_path frees it)
    // (the tail path's weight GEMM on gathered X: where the tail may run with X in place)
    x_split_ = cfg.x_weight_gathered && x_in_place_ && (tail_ || race_paths_);
    weight_adam_ = cfg.weight_adam;
    tail_rows_ = cfg.tail_rows == TailRows::Rows16 ? cuda::TailRows::Half : cuda::TailRows::Wide;
    tail_l0_ = cfg.tail_layer0 && (tail_ || race_paths_) && tail_layer0_ok(x_in_place_);
    l0_cluster_ = cluster_blocks(cfg.tail_layer0_cluster);
    if (l0_cluster_ > 1 && (tail_ || race_paths_) && tail_layer0_ok(x_in_place_)) {  // (the device asked now, before any capture)
      for (const cuda::TailRows r : {cuda::TailRows::Wide, cuda::TailRows::Half})
        (void)cuda::tail_layer0_cluster(cfg.batch_size, true, tail_w_, l0_cluster_, cfg.precision, r);
      (void)cuda::tail_layer0_cluster(4 * cuda::kTailGroupRows, false, tail_w_, l0_cluster_, cfg.precision);  // (evaluation)
      // Layer 0 inside asked for (not the race's option) and its training launch takes smaller clusters
      // than asked, or none: said (the size changes no result; the log's path shows it too).
      const int taken = cuda::tail_layer0_cluster(cfg.batch_size, true, tail_w_, l0_cluster_, cfg.precision, tail_rows_);
      if (tail_ && tail_l0_ && taken < l0_cluster_)
        notice_ += cat(notice_.empty() ? "" : "\n", "note: --layer0-cluster ", l0_cluster_, ": layer 0 in clusters of ",
                       taken, " here (the most that divide the batch's ", cuda::tail_blocks(cfg.batch_size, tail_rows_),
                       " tail blocks, leave each units of layer 0 and that the device holds in one wave)");
    }
    if (cfg.tail_layer0 && !tail_l0_) {  // (asked for and not taken: said, never silently ignored)
      const std::string why = !tail_ && !race_paths_ ? std::string("the tail path does not run here")
                              : !x_in_place_         ? std::string("layer 0 reads a gathered batch here")
                                                     : cuda::tail_layer0_unsupported(tail_w_, layout_.dense.front().in,
                                                                                     cfg.precision);
      notice_ += cat(notice_.empty() ? "" : "\n", "note: --layer0 inside: ", why,
                     "; layer 0's forward runs as its own launch");
    }
    if (weight_adam_ && (tail_ || race_paths_))  // (the device asked for its clusters now, before any capture)
      for (const bool images : {false, true})
        (void)cuda::dense_weight_adam_tile(cfg.batch_size, layout_.dense.front().in, layout_.dense.front().out,
                                           cfg.precision, images);
    // (rows: evaluation's chunks where it gathers X, or may after the race; else the training batch's)
    if (!x_in_place_ || race_x_ || x_split_)
      x_.resize(std::size_t(!x_in_place_ || race_x_ ? cap_ : cfg.batch_size) * std::size_t(cfg.spec.input));
    // The GEMMs' rounded copy of the weights (EngineConfig::rounded_weights): on the paths whose
    // optimizer writes it (graph and tail; the fused kernel rounds its own loads).
    if (cfg.rounded_weights && cfg.precision != Precision::FP32 && !blas_ && !fused_) {
      wq_.resize(layout_.storage);
      refresh_rounded();
    }
    CUDA_CHECK(cudaDeviceSynchronize());
  }

  ~CudaEngine() override {
    if (stream_.get()) cudaStreamSynchronize(stream_.get());  // nothing may still use the buffers
    if (side_.get()) cudaStreamSynchronize(side_.get());
  }

  std::string name() const override { return "cuda"; }
  std::string notice() const override { return notice_; }
  bool fused_step() const override { return fused_; }
  bool head_kernel() const override { return head_; }
  bool tail_kernel() const override { return tail_; }
  bool programmatic_launch() const override { return tail_ && pdl_; }
  bool max_carveout() const override { return tail_ && max_carveout_; }
  bool tail_rows16() const override { return tail_ && tail_rows_ == cuda::TailRows::Half; }
  bool tail_layer0() const override { return tail_ && tail_l0_; }
  int tail_layer0_cluster() const override {
    return tail_layer0() ? cuda::tail_layer0_cluster(cfg_.batch_size, true, tail_w_, l0_cluster_, cfg_.precision, tail_rows_) : 1;
  }
  bool rounded_weights() const override { return wq_.size() != 0; }
  std::map<std::string, std::string> autotune_choices() const override {
    std::map<std::string, std::string> c;
    if (!tune_) return c;
    c = cuda::dense_autotune_choices();
    if (!path_choice_.empty()) c[path_key()] = path_choice_;
    return c;
  }
  void set_autotune_choices(const std::map<std::string, std::string>& choices) override {
    if (!tune_) return;
    std::map<std::string, std::string> tiles = choices;
    const auto path = tiles.find(path_key());
    if (path != tiles.end()) {
      const std::vector<PathOption> options = path_options();
      const auto o = std::find_if(options.begin(), options.end(), [&](const PathOption& p) { return p.label == path->second; });
      const bool known = path->second == "graph step" || path->second == "tail step" ||
                         path->second == "tail step, X in place only" || path->second == "graph step, X gathered" ||
                         path->second == "tail step, X gathered" || path->second == "tail step, Adam apart" ||
                         path->second == "tail step, ordinary launches" || path->second == "tail step, driver carveout" ||
                         path->second == "tail step, two blocks an SM" ||
                         path->second == "tail step, two blocks an SM, X in place only" ||
                         path->second == "tail step, layer 0 inside";
      if (!known)
        throw InputError(cat("autotune choice '", path->second, "' for '", path->first, "' names no training path"));
      if (race_paths_ && o != options.end()) {  // (else no race to skip here: the tail or that X cannot run)
        keep_path(*o);
        path_choice_ = path->second;
        path_report_.push_back(cat(path->first, ": ", path->second, " (preset)"));
      }
      tiles.erase(path);
    }
    for (auto it = tiles.begin(); it != tiles.end();)  // another batch's or precision's path: not this engine's
      it = it->first.rfind("training step ", 0) == 0 ? tiles.erase(it) : std::next(it);
    cuda::dense_autotune_preset(tiles);
  }
  std::vector<std::string> autotune_report() const override {
    std::vector<std::string> lines = path_report_;
    if (tune_)
      for (const cuda::autotune::Record& r : cuda::dense_autotune_records()) lines.push_back(r.line());
    return lines;
  }
  const ParamLayout& layout() const override { return layout_; }

  int add_dataset(const DataView& d) override {
    MNIST_CHECK(d.dim == cfg_.spec.input, "dataset has ", d.dim, " pixels per image, the model expects ",
                cfg_.spec.input);
    MNIST_CHECK(d.n >= 0 && (d.n == 0 || (d.images && d.labels)), "invalid dataset view");
    Dataset s;
    s.images.resize(std::size_t(d.n) * std::size_t(d.dim));
    s.images.upload(d.images, s.images.size());
    s.labels.resize(std::size_t(d.n));
    s.labels.upload(d.labels, s.labels.size());
    s.n = d.n;
    data_.push_back(std::move(s));
    return int(data_.size()) - 1;
  }

  // Batches progress.next_batch .. end_batch of the epoch: full batches replay the captured K-step
  // graph while K of them are left, then the one-step graph; a shorter last batch runs uncaptured. The
  // interrupt flag is polled on the host between replays (no synchronisation); the metrics are
  // read once, at the end.
  bool train_steps(int train, int64_t epoch, float lr, EpochProgress& progress,
                   const std::atomic<bool>* interrupt) override {
    NvtxRange range("epoch");
    ready_eval_ = -1;  // (the last epoch's evaluation, if unread, is of other parameters now)
    const int queued = std::exchange(queued_eval_, -1);  // queue_evaluation: this call's only
    const cuda::DenseAutotune autotune(tune_, cfg_.autotune == Autotune::On);
    const Dataset& d = dataset(train);
    const cudaStream_t s = stream_.get();
    const int B = cfg_.batch_size;
    const int batches = (d.n + B - 1) / B, full = d.n / B;
    MNIST_CHECK(progress.next_batch >= 0 && progress.next_batch <= batches, "epoch progress at batch ",
                progress.next_batch, " of ", batches);
    prepare_order(d.n);
    // Capture (first use only) before this epoch enqueues anything: the stream is idle here, every
    // earlier call ended with a synchronisation.
    // K steps a replay, but never more than the epoch's full batches: at 48,000 examples in batches of
    // 4096 (11 full) one 11-step replay instead of 11 one-step replays, each boundary between two
    // graph launches a gap on the GPU. Changes no result (steps per replay never do).
    const int K = std::min(cfg_.graph_steps, std::max(full, 1));
    const int end = progress.end_batch < 0 ? batches : std::min(progress.end_batch, batches);
    const int full_end = std::min(full, end);  // full batches to run end before this one
    if (tune_ && !fused_ && !step_tuned_ && progress.next_batch < full_end) {
      if (race_paths_)
        race_paths(d);  // (tunes both paths' GEMMs first)
      else
        tune_step(d);
    }
    const GraphExec* multi =
        !fused_ && K > 1 && full_end - progress.next_batch >= K ? &step_graph(train, K) : nullptr;
    const GraphExec* single = !fused_ && progress.next_batch < full_end ? &step_graph(train, 1) : nullptr;
    // (side_'s last shuffle: its order, or its use of the scratch, before this stream's)
    if (cfg_.shuffle) CUDA_CHECK(cudaStreamWaitEvent(s, next_order_done_.get(), 0));
    if (cfg_.shuffle && next_order_.train == train && next_order_.epoch == epoch && next_order_.n == d.n) {
      // Shuffled by the epoch before, on side_ beside its evaluation (queue_next_order): a copy.
      CUDA_CHECK(cudaMemcpyAsync(order_.data(), order_next_.data(), std::size_t(d.n) * sizeof(int32_t),
                                 cudaMemcpyDeviceToDevice, s));
    } else if (cfg_.shuffle) {
      cuda::shuffle_order(order_.data(), shuffle_temp_.data(), shuffle_temp_.size(), d.n, cfg_.seed,
                          uint64_t(epoch), s);
    } else {
      cuda::identity_order(order_.data(), d.n, s);
    }
    next_order_ = NextOrder{};
    order_ready_.record(s);  // (side_ may reuse order_next_ and the scratch from here on)

    cuda::TrainCounters& c = counters_host_[0];
    c = cuda::TrainCounters{};
    c.step = step_ + 1;
    c.batch = progress.next_batch;
    c.lr = lr;
    CUDA_CHECK(cudaMemcpyAsync(counters_.data(), &c, sizeof c, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemsetAsync(metrics_.data() + kTrainMetrics, 0, sizeof(cuda::Metrics), s));

    int batch = progress.next_batch;
    int64_t examples = 0;
    if (progress.on_steps) snapshots_.begin(std::size_t(end - batch));
    while (batch < end) {
      if (interrupt && interrupt->load(std::memory_order_relaxed)) break;
      if (fused_) {  // up to K full batches, or the last, partial one, in one launch
        NvtxRange range("steps");
        const int steps = batch < full_end ? std::min(K, full_end - batch) : 1;
        const int rows = batch < full_end ? B : d.n - batch * B;
        cuda::fused_train_steps(fused_args(d), steps, rows, fused_blocks_, s);
        batch += steps;
        examples += int64_t(steps) * rows;
      } else if (multi && full_end - batch >= K) {
        NvtxRange range("steps");
        multi->launch(s);
        batch += K;
        examples += int64_t(K) * B;
      } else if (batch < full_end) {
        NvtxRange range("step");
        single->launch(s);
        ++batch;
        examples += B;
      } else {
        NvtxRange range("step");
        record_step(d, d.n - batch * B);
        examples += d.n - batch * B;
        ++batch;
      }
      if (progress.on_steps) snapshots_.record(metrics_.data() + kTrainMetrics, batch, examples, s);
    }
    if (progress.on_steps) snapshots_.report(progress, batches);
    if (batch == batches) queue_next_order(train, epoch + 1, d.n);
    cuda::Metrics m;
    if (batch == batches && queued >= 0) {  // (queue_evaluation) behind the last step, one sync for both
      enqueue_evaluation(queued);
      read_metrics(kTrainMetrics, 2);
      m = metrics_host_[kTrainMetrics];
      ready_stats_ = eval_stats(queued, metrics_host_[kEvalMetrics]);
      ready_eval_ = queued;
    } else {
      m = read_metrics(kTrainMetrics);
    }
    step_ += batch - progress.next_batch;
    progress.next_batch = batch;
    progress.loss_sum += m.loss_sum;
    progress.correct += int64_t(m.correct);
    progress.examples += examples;
    return batch == batches;
  }

  void queue_evaluation(int id) override {
    dataset(id);  // (an unknown id is an error here, not after the epoch)
    queued_eval_ = id;
  }

  EpochStats evaluate(int id) override {
    if (std::exchange(ready_eval_, -1) == id) return ready_stats_;  // enqueued by train_steps
    enqueue_evaluation(id);
    return eval_stats(id, read_metrics(kEvalMetrics));
  }

  // The evaluation's launches over dataset `id` into the eval metrics slot (no synchronisation).
  void enqueue_evaluation(int id) {
    NvtxRange range("evaluate");
    const cuda::DenseAutotune autotune(tune_, cfg_.autotune == Autotune::On);  // (GEMMs met here first are tuned here, uncaptured)
    const Dataset& d = dataset(id);
    const cudaStream_t s = stream_.get();
    CUDA_CHECK(cudaMemsetAsync(metrics_.data() + kEvalMetrics, 0, sizeof(cuda::Metrics), s));
    if (eval_fused_) {  // one launch over the whole set
      const std::size_t blocks = std::size_t(cuda::fused_eval_blocks(d.n));
      if (eval_loss_.size() < blocks) {
        eval_loss_.resize(blocks);
        eval_hit_.resize(blocks);
      }
      const cuda::FusedEval e{eval_loss_.data(), eval_hit_.data(), eval_done_.data(), metrics_.data() + kEvalMetrics};
      cuda::fused_evaluate(fused_args(d), e, 0, d.n, s);
    }
    for (int off = 0; !eval_fused_ && off < d.n; off += cap_) {
      const int rows = std::min(cap_, d.n - off);
      // Consecutive rows: in place, X0 from the images and the labels from the dataset's array.
      cuda::DenseInput x0 = cuda::DenseInput::images_by_index(d.images.data(), nullptr, off);
      const uint8_t* y = d.labels.data() + off;
      if (!x_in_place_) {
        cuda::gather_rows(x_.data(), y_.data(), d.images.data(), d.labels.data(), off, rows, cfg_.spec.input, s);
        x0 = x_.data();
        y = y_.data();
      }
      const cuda::ProgrammaticLaunches pdl(tail_ && pdl_, max_carveout_);
      // (with layer 0 inside the tail kernel, its evaluation launch computes layer 0 too)
      const cuda::TailLayer0 l0 = tail_ && tail_l0_ && x0.images ? layer0_inside(x0) : cuda::TailLayer0{};
      if (!l0.images) forward(x0, rows, false, tail_ ? 1 : head_ ? layout_.dense.size() - 1 : layout_.dense.size());
      if (tail_) {
        cuda::tail_evaluate(metrics_.data() + kEvalMetrics, xent_scratch(), tail_net(), l0.images ? nullptr : act_[0].data(),
                            y, rows, s, cfg_.precision, nullptr, l0.images ? &l0 : nullptr);
      } else if (head_) {
        const DenseSlot& sl = layout_.dense.back();
        cuda::head_evaluate(metrics_.data() + kEvalMetrics, xent_scratch(), head_input(), param(sl.w_offset),
                            param(sl.b_offset), y, rows, sl.in, sl.out, s, cfg_.precision);
      } else {
        cuda::softmax_xent(nullptr, metrics_.data() + kEvalMetrics, xent_scratch(), logits(), y, rows,
                           cfg_.spec.classes, 0.0f, s);
      }
    }
  }

  EpochStats eval_stats(int id, const cuda::Metrics& m) {
    const Dataset& d = dataset(id);
    const int n = std::max(d.n, 1);
    return {m.loss_sum / n, double(m.correct) / n, d.n};
  }

  void predict(float* probs, const uint8_t* images, int n) override {
    NvtxRange range("predict");
    if (n <= 0) return;
    const cuda::DenseAutotune autotune(tune_, cfg_.autotune == Autotune::On);
    MNIST_CHECK(probs && images, "predict: null pointer");
    const cudaStream_t s = stream_.get();
    const std::size_t D = std::size_t(cfg_.spec.input), C = std::size_t(cfg_.spec.classes);
    const std::size_t chunk = std::size_t(std::min(cap_, n));  // (grown as needed: a few samples need no 16384-row buffer)
    if (staging_.size() < chunk * D) staging_.resize(chunk * D);
    if (probs_.size() < chunk * C) probs_.resize(chunk * C);
    for (int off = 0; off < n; off += cap_) {
      const int rows = std::min(cap_, n - off);
      CUDA_CHECK(cudaMemcpyAsync(staging_.data(), images + std::size_t(off) * D, std::size_t(rows) * D,
                                 cudaMemcpyHostToDevice, s));
      cuda::DenseInput x0 = cuda::DenseInput::images_by_index(staging_.data(), nullptr, 0);
      if (!x_in_place_) {
        cuda::gather_rows(x_.data(), nullptr, staging_.data(), nullptr, 0, rows, int(D), s);
        x0 = x_.data();
      }
      forward(x0, rows, false, layout_.dense.size());
      cuda::softmax(probs_.data(), logits(), rows, int(C), s);
      CUDA_CHECK(cudaMemcpyAsync(probs + std::size_t(off) * C, probs_.data(), std::size_t(rows) * C * sizeof(float),
                                 cudaMemcpyDeviceToHost, s));
      stream_.synchronize();  // the staging buffer is reused by the next chunk
    }
  }

  void get_params(std::vector<float>& flat) override {
    stream_.synchronize();
    flat.resize(layout_.storage);
    params_.download(flat.data(), flat.size());
  }
  void set_params(const std::vector<float>& flat) override {
    MNIST_CHECK(flat.size() == layout_.storage, "parameter array of ", flat.size(), " floats, model has ",
                layout_.storage);
    ready_eval_ = -1;  // (an evaluation train_steps enqueued was of the parameters before)
    stream_.synchronize();
    params_.upload(flat.data(), flat.size());
    refresh_rounded();
  }
  void get_state(TrainState& st) override {
    get_params(st.params);
    st.m.resize(layout_.storage);
    st.v.resize(layout_.storage);
    m_.download(st.m.data(), st.m.size());
    v_.download(st.v.data(), st.v.size());
    st.step = step_;
  }
  void set_state(const TrainState& st) override {
    MNIST_CHECK(st.params.size() == layout_.storage && st.m.size() == layout_.storage &&
                    st.v.size() == layout_.storage,
                "optimizer state does not match the model's layout");
    set_params(st.params);
    m_.upload(st.m.data(), st.m.size());
    v_.upload(st.v.data(), st.v.size());
    step_ = st.step;
  }

 private:
  struct Dataset {
    DeviceBuffer<uint8_t> images, labels;
    int n = 0;
  };
  // The "--gemm cublas" comparison path: cuBLASLt (bias + ReLU epilogue) forward, cuBLAS backward.
  struct Blas {
    CublasHandle handle;
    CublasLtHandle lt;
    DeviceBuffer<unsigned char> workspace;
    DeviceBuffer<float> ones;  // [batch_size] for the bias gradient (column sums)
    std::map<std::pair<std::size_t, int>, std::unique_ptr<cublas::LtDense>> plans;  // (layer, rows)
  };

  // Kernels::Fused unless the fused kernel cannot run this configuration (then notice_ says why);
  // Kernels::Auto: fused where it is the faster path and can run; otherwise the tail path where it
  // can run (faster than the graph path at every batch measured: 512 at tf32/bf16, 1024, 4096 and
  // 16384 at every precision, H200 a018989), the graph path where it cannot; quietly. Autotuned, the
  // first epoch races the two (race_paths), the tail as the reference.
  void choose_kernels() {
    if (cfg_.kernels == Kernels::Tail) return choose_tail();
    if (cfg_.kernels == Kernels::Graph) return;
    std::vector<int> widths{cfg_.spec.input};
    for (const DenseSlot& sl : layout_.dense) widths.push_back(sl.out);
    const int auto_max = cfg_.precision == Precision::FP32 ? kFusedAutoMaxBatch : kFusedAutoMaxBatchRounded;
    if (cfg_.kernels == Kernels::Auto &&
        (cfg_.batch_size > auto_max || cfg_.gemm != Gemm::Native ||
         !cuda::fused_step_unsupported(widths, cfg_.batch_size).empty() ||
         cuda::fused_step_grid(widths, cfg_.batch_size, cfg_.fused_blocks, cfg_.precision) <= 0)) {
      // Auto where the fused kernel does not run: the tail path where it can run. Autotuned, the
      // graph and the tail paths are both made ready and the first epoch times them (race_paths).
      if (cfg_.gemm == Gemm::Native) {
        choose_tail();
        notice_.clear();
        if (cfg_.autotune != Autotune::Off) {
          race_paths_ = tail_;
          tail_ = false;
        }
      }
      return;
    }
    std::string why;
    if (cfg_.gemm != Gemm::Native)
      why = cat("--gemm ", to_string(cfg_.gemm), " is a graph-path option");
    else
      why = cuda::fused_step_unsupported(widths, cfg_.batch_size);
    if (why.empty()) {
      fused_blocks_ = cuda::fused_step_grid(widths, cfg_.batch_size, cfg_.fused_blocks, cfg_.precision);
      if (fused_blocks_ <= 0) why = "the device has no cooperative launch";
    }
    if (!why.empty()) {
      notice_ = cat("note: --kernels fused: ", why, "; training with --kernels graph (separate kernels per step)");
      return;
    }
    fused_ = true;
    eval_fused_ = cuda::fused_eval_supported(widths);
    eval_done_.resize(1);
    CUDA_CHECK(cudaMemset(eval_done_.data(), 0, eval_done_.bytes()));
    partial_.resize(std::max<std::size_t>(1, cuda::fused_step_partial_floats(widths, cfg_.batch_size)));
    row_loss_.resize(std::size_t(cfg_.batch_size));
    row_hit_.resize(std::size_t(cfg_.batch_size));
    ready_.resize(std::size_t(cuda::fused_step_ready_counters(widths, cfg_.batch_size)));
    CUDA_CHECK(cudaMemset(ready_.data(), 0, ready_.bytes()));  // each launch leaves them 0
  }

  // Kernels::Tail: the tail path where it can run, else the graph path with a one-line notice.
  void choose_tail() {
    for (const DenseSlot& sl : layout_.dense) tail_w_.push_back(sl.out);  // layer 0's output, then every later layer's
    std::string why;
    if (cfg_.gemm != Gemm::Native)
      why = cat("--gemm ", to_string(cfg_.gemm), " is a graph-path option");
    else if (cap_ > cuda::kTailMaxRows)
      why = cat("a batch of ", cfg_.batch_size, " rows is more than its ", cuda::kTailMaxRows);
    else if (layout_.dense.size() > std::size_t(cuda::kAdamMaxSegments))
      why = cat(layout_.dense.size(), " Dense layers, the fused Adam pass takes at most ", cuda::kAdamMaxSegments);
    else
      why = cuda::tail_unsupported(tail_w_);
    if (!why.empty()) {
      notice_ = cat("note: --kernels tail: ", why, "; training with --kernels graph (separate kernels per step)");
      return;
    }
    tail_ = true;
  }

  // Layer 0 as the tail kernel computes it itself (EngineConfig::tail_layer0) from x0's images.
  cuda::TailLayer0 layer0_inside(const cuda::DenseInput& x0) {
    const DenseSlot& first = layout_.dense.front();
    cuda::TailLayer0 l0;
    l0.images = x0.images;
    l0.rows = x0.rows;
    l0.W = gemm_w(first);
    l0.b = param(first.b_offset);
    l0.K = first.in;
    l0.w_rounded = wq_.size() != 0;
    l0.cluster = l0_cluster_;
    return l0;
  }

  cuda::TailNet tail_net() {
    cuda::TailNet n;
    n.layers = int(layout_.dense.size()) - 1;
    n.width[0] = layout_.dense.front().out;
    for (std::size_t l = 1; l < layout_.dense.size(); ++l) {
      const DenseSlot& sl = layout_.dense[l];
      n.width[l] = sl.out;
      n.layer[l - 1] = {param(sl.w_offset), param(sl.b_offset)};
    }
    return n;
  }

  // The tail path's training step over the next B rows (record_step), layer 0 reading x0, the
  // labels y.
  void record_tail_step(const Dataset& d, const cuda::DenseInput& x0, const cuda::LabelInput& y, int B, bool update) {
    const cudaStream_t s = stream_.get();
    // (kernels/pdl.cuh: each of the step's launches waits before it reads; pdl_scope.hpp: the carveout)
    const cuda::ProgrammaticLaunches pdl(pdl_, max_carveout_);
    const DenseSlot& first = layout_.dense.front();
    // Layer 0's forward inside the tail kernel (EngineConfig::tail_layer0: X in place), else its own launch.
    const bool l0_inside = tail_l0_ && x0.images;
    const cuda::TailLayer0 l0 = l0_inside ? layer0_inside(x0) : cuda::TailLayer0{};
    if (!l0_inside) forward(x0, B, true, 1);
    const std::vector<int>& w = tail_w_;
    {
      NvtxRange range("tail");
      const cuda::DropoutSpec drop{cfg_.spec.dropout, cfg_.seed, 0, 0, counters_.data()};
      // With the optimizer, the loss and hits stay in the scratch's group slots and its last block adds
      // them (GroupMetrics): the tail kernel ends without a block that waits for all the others.
      cuda::tail_train(tail_partial_.data(), dz_[0].data(), update ? nullptr : metrics_.data() + kTrainMetrics,
                       xent_scratch(), tail_net(), l0_inside ? nullptr : act_[0].data(), y, drop, mask_scale(),
                       1.0f / float(B), B, s, cfg_.precision, nullptr, tail_rows_, l0_inside ? &l0 : nullptr);
    }
    cuda::DenseInput xw = x0;  // layer 0's weight GEMM's X
    bool xw_rounded = false;   // ... written rounded to the precision (gather_batch_overlapped)
    if (x_in_place_ && x_split_) {
      // Gathered into floats while the tail kernel runs (it writes neither; with layer 0 inside it
      // reads the images too); the weight GEMM is faster on floats (EngineConfig::x_weight_gathered).
      NvtxRange range("gather X");
      cuda::gather_batch_overlapped(x_.data(), d.images.data(), order_.data(), counters_.data(), cfg_.batch_size, B,
                                    first.in, s, cfg_.precision);
      xw = x_.data();
      xw_rounded = true;
    }
    // Layer 0's weight GEMM with its Adam in the same launch (EngineConfig::weight_adam), where the
    // device holds the clusters; else its pieces, summed by the optimizer launch below.
    const bool weight_adam = update && weight_adam_ &&
                             cuda::dense_weight_adam_tile(B, first.in, first.out, cfg_.precision, xw.images != nullptr) !=
                                 cuda::WeightAdamTile::None;
    {
      NvtxRange range("backward");
      // dz0 comes rounded from the tail kernel, X gathered here from gather_batch_overlapped: the
      // GEMM need not round them again (its TF32 tiles skip that pass).
      if (weight_adam) {
        cuda::WeightAdam a;
        a.p = params_.data(), a.m = m_.data(), a.v = v_.data();
        a.w_offset = first.w_offset, a.b_offset = first.b_offset;
        a.counters = counters_.data();  // (advanced by the optimizer launch below, after this one has ended)
        a.b1 = cfg_.beta1, a.b2 = cfg_.beta2, a.eps = cfg_.eps;
        a.rounded = rounded_params();
        cuda::dense_weight_adam(a, dz_[0].data(), xw, B, first.in, first.out, s, cfg_.precision, true, xw_rounded);
      } else {
        cuda::dense_weight_partials(w0_partial_.data(), dz_[0].data(), xw, B, first.in, first.out, s, cfg_.precision,
                                    true, xw_rounded);
      }
    }
    if (!update) return;
    NvtxRange range("optimizer");
    cuda::GradSlicesSet set;
    if (!weight_adam)
      set.seg[set.count++] = {w0_partial_.data(), cuda::dense_weight_slices(B, first.in, first.out),
                              std::size_t(first.out) * std::size_t(first.in + 1), first.out, first.in, first.w_offset,
                              first.b_offset};
    const int blocks = cuda::tail_blocks(B, tail_rows_);
    const std::size_t slice = cuda::tail_slice_floats(w);
    for (std::size_t l = 1; l < layout_.dense.size(); ++l) {
      const DenseSlot& sl = layout_.dense[l];
      // (written by tail_train, two launches back: summed while layer 0's weight GEMM runs)
      set.seg[set.count++] = {tail_partial_.data() + cuda::tail_layer_offset(w, int(l)), blocks, slice, sl.out, sl.in,
                              sl.w_offset, sl.b_offset, true};
    }
    // ... and, by its last block, advance_train_counters: the step's last launch.
    cuda::adam_reduce_update(params_.data(), m_.data(), v_.data(), nullptr, set, counters_.data(), cfg_.beta1,
                             cfg_.beta2, cfg_.eps, s, advance_done_.data(),
                             cuda::GroupMetrics{xent_blocks_.data(), cuda::tail_xent_slots(B), metrics_.data() + kTrainMetrics},
                             rounded_params());
  }

  // The fused kernel's view of the model and buffers, training over dataset d.
  cuda::FusedStep fused_args(const Dataset& d) {
    cuda::FusedStep f;
    f.layers = int(layout_.dense.size());
    for (std::size_t l = 0; l < layout_.dense.size(); ++l) {
      const DenseSlot& sl = layout_.dense[l];
      f.layer[l] = {sl.in, sl.out, sl.w_offset, sl.b_offset, act_[l].data(), dz_[l].data()};
    }
    f.params = params_.data();
    f.m = m_.data();
    f.v = v_.data();
    f.images = d.images.data();
    f.labels = d.labels.data();
    f.order = order_.data();
    f.stride = cfg_.batch_size;
    f.partial = partial_.data();
    f.row_loss = row_loss_.data();
    f.row_hit = row_hit_.data();
    f.ready = ready_.data();
    f.metrics = metrics_.data() + kTrainMetrics;
    f.counters = counters_.data();
    f.dropout = cfg_.spec.dropout;
    f.seed = cfg_.seed;
    f.b1 = cfg_.beta1;
    f.b2 = cfg_.beta2;
    f.eps = cfg_.eps;
    f.phases = cfg_.fused_phases;
    f.grid_barriers = cfg_.fused_grid_barriers;
    f.precision = cfg_.precision;
    return f;
  }

  const Dataset& dataset(int id) const {
    MNIST_CHECK(id >= 0 && std::size_t(id) < data_.size(), "unknown dataset handle ", id);
    return data_[std::size_t(id)];
  }
  float* logits() { return act_.back().data(); }
  const float* head_input() { return layout_.dense.size() > 1 ? act_[layout_.dense.size() - 2].data() : x_.data(); }
  cuda::HeadScratch head_scratch() { return {xent_scratch(), head_partial_.data(), head_partial_.size()}; }
  cuda::XentScratch xent_scratch() { return {xent_blocks_.data(), xent_done_.data(), int(xent_blocks_.size())}; }
  float* param(std::size_t offset) { return params_.data() + offset; }
  // W of a Dense layer as the native GEMMs read it: the rounded copy where there is one.
  const float* gemm_w(const DenseSlot& sl) { return wq_.size() ? wq_.data() + sl.w_offset : param(sl.w_offset); }
  // The optimizer's view of the rounded copy (off: nothing to write).
  cuda::RoundedParams rounded_params() {
    return wq_.size() ? cuda::RoundedParams{wq_.data(), cfg_.precision} : cuda::RoundedParams{};
  }
  // The rounded copy made again from params_ (after every write of params_ from the host).
  void refresh_rounded() {
    if (wq_.size()) cuda::round_params(rounded_params(), params_.data(), layout_.storage, stream_.get());
  }
  float* grad(std::size_t offset) { return grads_.data() + offset; }
  float mask_scale() const { return cfg_.spec.dropout > 0 ? cuda::dropout_scale(cfg_.spec.dropout) : 1.0f; }

  const cublas::LtDense& lt_plan(std::size_t l, int rows) {
    auto& slot = blas_->plans[{l, rows}];
    if (!slot) {
      const DenseSlot& s = layout_.dense[l];
      slot = std::make_unique<cublas::LtDense>(blas_->lt.get(), rows, s.in, s.out, s.relu, cublas::kWorkspaceBytes);
    }
    return *slot;
  }

  // The next epoch's order, shuffled on side_ while this epoch's last steps and its evaluation run
  // on the main stream (the shuffle, ~34 µs of small launches on the H200 at 48,000 examples, was
  // the start of every epoch); the next train_steps copies it into order_ (the captured graphs read
  // order_ by address) if it trains that epoch of that dataset, else shuffles as before. Same
  // order, bit for bit (shuffle_order of the same seed, epoch and n).
  void queue_next_order(int train, int64_t epoch, int n) {
    if (!cfg_.shuffle) return;
    if (order_next_.size() != std::size_t(n)) order_next_.resize(std::size_t(n));
    CUDA_CHECK(cudaStreamWaitEvent(side_.get(), order_ready_.get(), 0));  // order_next_ and the scratch free
    cuda::shuffle_order(order_next_.data(), shuffle_temp_.data(), shuffle_temp_.size(), n, cfg_.seed, uint64_t(epoch),
                        side_.get());
    next_order_done_.record(side_.get());
    next_order_ = NextOrder{train, epoch, n};
  }

  // order_ and the shuffle's scratch for an n-example training set (reallocated only when n changes).
  void prepare_order(int n) {
    if (order_.size() != std::size_t(n)) {
      order_.resize(std::size_t(n));
      graphs_.clear();  // the captured steps read order_ by address
    }
    if (cfg_.shuffle && shuffle_n_ != n) {  // (sized once per n: the size query is host work)
      side_.synchronize();  // (a next-epoch shuffle of the old n may still use the scratch)
      next_order_ = NextOrder{};
      const std::size_t bytes = cuda::shuffle_temp_bytes(n);
      if (shuffle_temp_.size() < bytes) shuffle_temp_.resize(bytes);
      // The bucket counts start at 0 (their place depends on n; every shuffle leaves them 0).
      if (shuffle_temp_.size()) CUDA_CHECK(cudaMemsetAsync(shuffle_temp_.data(), 0, shuffle_temp_.size(), stream_.get()));
      shuffle_n_ = n;
    }
  }

  // Kernels::Auto above the fused kernel's batches, autotuned: the training step's two paths, graph
  // (separate kernels, head) and tail, each with layer 0's X read in place from the images and (where
  // cfg.x_in_place allows both) gathered into floats first, raced on this device, the fastest kept
  // (autotune::tune, the tail path, Auto's untuned choice, as the reference: another must be kMargin faster;
  // in place and gathered are bitwise equal, so that choice costs no bit). Each candidate is one captured
  // step replayed from the same state: parameters, Adam moments and counters are restored before
  // every replay (device copies, in both candidates' times alike), with a learning rate of 0, so the
  // step leaves the moments of one step from the saved state, which the two paths must agree on
  // (a graph path that computes other gradients than the tail's here is rejected). The state is put back afterwards,
  // the graphs captured for the race are dropped, and the loser's buffers freed. Both paths' GEMMs
  // are tuned first (tune_step each), so that the race compares them at their best tiles.
  void race_paths(const Dataset& d) {
    NvtxRange range("autotune paths");
    const cudaStream_t s = stream_.get();
    const std::vector<PathOption> options = path_options();
    for (const PathOption& o : options) {  // every GEMM of every candidate tuned
      take_option(o);
      tune_step(d);  // (counters_host_[0] holds tune_step's counters: lr 0, batch 0)
    }
    DeviceBuffer<float> saved(3 * layout_.storage);
    const std::size_t bytes = layout_.storage * sizeof(float);
    DeviceBuffer<float>* const state[3] = {&params_, &m_, &v_};
    for (int i = 0; i < 3; ++i)
      CUDA_CHECK(cudaMemcpyAsync(saved.data() + i * layout_.storage, state[i]->data(), bytes, cudaMemcpyDeviceToDevice, s));
    auto restore = [&] {
      for (int i = 0; i < 3; ++i)
        CUDA_CHECK(cudaMemcpyAsync(state[i]->data(), saved.data() + i * layout_.storage, bytes, cudaMemcpyDeviceToDevice, s));
      CUDA_CHECK(cudaMemcpyAsync(counters_.data(), &counters_host_[0], sizeof(cuda::TrainCounters), cudaMemcpyHostToDevice, s));
    };
    std::vector<GraphExec> graphs;
    std::vector<cuda::autotune::Candidate> paths;
    for (const PathOption& o : options) {
      take_option(o);
      restore();
      CUDA_CHECK(cudaStreamSynchronize(s));
      graphs.push_back(capture_graph(s, [this, dp = &d] { record_step(*dp, cfg_.batch_size); }));
    }
    for (std::size_t i = 0; i < graphs.size(); ++i)
      paths.push_back({options[i].label, [&, g = &graphs[i]] {
                         restore();
                         g->launch(s);
                       }});
    cuda::autotune::Record rec;
    rec.op = path_key();
    const int kept = cuda::autotune::tune(paths, {{m_.data(), layout_.storage}, {v_.data(), layout_.storage}}, s, rec,
                                          cfg_.autotune == Autotune::On);
    restore();
    refresh_rounded();  // (the race's steps ran at lr 0 and left the copy as it was; made sure of)
    stream_.synchronize();
    path_report_.push_back(rec.line());
    path_choice_ = rec.chosen;
    keep_path(options[std::size_t(kept)]);
  }

  // The race's candidates: the graph and tail paths, X in place (where cfg.x_in_place allows it)
  // and gathered (where the gathered buffer exists: race_x_).
  struct PathOption {
    std::string label;
    bool tail, in_place;
    bool split = false;       // tail, X in place: the weight GEMM's X gathered (x_split_)
    bool adam_apart = false;  // tail: layer 0's Adam in the optimizer launch, not its weight GEMM's (weight_adam_)
    bool ordinary = false;    // tail: ordinary launches where the device takes programmatic ones (pdl_)
    bool driver_carveout = false;  // tail, programmatic: the driver's carveout per launch (max_carveout_ off)
    bool half_rows = false;        // tail: 16-row blocks, two an SM (tail_rows_; EngineConfig::tail_rows)
    bool layer0_inside = false;    // tail, X in place: layer 0's forward in the tail kernel (tail_l0_)
    bool l0_alone = false;         // ... each block computing its own rows' layer 0, in no cluster (l0_cluster_)
  };
  // Sets the members a race option stands for.
  void take_option(const PathOption& o) {
    tail_ = o.tail, x_in_place_ = o.in_place, x_split_ = o.split;
    weight_adam_ = cfg_.weight_adam && !o.adam_apart;
    pdl_ = pdl_ok_ && !o.ordinary;
    max_carveout_ = carveout_ok_ && pdl_ && !o.driver_carveout;
    tail_rows_ = cfg_.tail_rows == TailRows::Rows16 || o.half_rows ? cuda::TailRows::Half : cuda::TailRows::Wide;
    // (not on the race's 16-row candidates: a block of layer 0 inside holds an SM, two waves; a run
    // that sets both flags gets both)
    tail_l0_ = (cfg_.tail_layer0 || o.layer0_inside) && !o.half_rows && tail_layer0_ok(x_in_place_);
    l0_cluster_ = o.l0_alone ? 1 : cluster_blocks(cfg_.tail_layer0_cluster);
  }
  // Whether the tail kernel can compute layer 0's forward here (EngineConfig::tail_layer0): X read
  // in place, TF32/BF16, the widths and layer 0's inputs within cuda::tail_layer0_unsupported.
  bool tail_layer0_ok(bool in_place) const {
    return in_place && !tail_w_.empty() &&
           cuda::tail_layer0_unsupported(tail_w_, layout_.dense.front().in, cfg_.precision).empty();
  }
  std::vector<PathOption> path_options() const {
    const bool in_place = cfg_.x_in_place && x_race_ok_;
    // The tail first: the reference (what Auto runs untuned), kept unless another is kMargin faster.
    const bool split = in_place && cfg_.x_weight_gathered;
    std::vector<PathOption> o{{"tail step", true, in_place, split}, {"graph step", false, in_place}};
    if (split) o.push_back({"tail step, X in place only", true, true, false});
    // Layer 0's Adam apart from its weight GEMM, where the tail step would run them in one launch.
    const int B = cfg_.batch_size;
    const DenseSlot& first = layout_.dense.front();
    if (cfg_.weight_adam && cuda::dense_weight_adam_tile(B, first.in, first.out, cfg_.precision, in_place && !split) !=
                                cuda::WeightAdamTile::None)
      o.push_back({"tail step, Adam apart", true, in_place, split, true});
    // Ordinary launches, where the step's would be programmatic: the probe says only that they are
    // right on this device, the race whether they are faster (NOTES, "Programmatic launches").
    if (pdl_ok_) o.push_back({"tail step, ordinary launches", true, in_place, split, false, true});
    // ... and, where they ask for the largest shared-memory carveout, the driver's split per launch
    // (NOTES, "One shared-memory carveout for the step": predicted, not measured).
    if (carveout_ok_) o.push_back({"tail step, driver carveout", true, in_place, split, false, false, true});
    // ... and its rows in 16-row blocks, two an SM, where that makes more blocks (NOTES, "Two tail
    // blocks an SM": predicted, not measured); with X gathered beside the tail kernel, also without
    // that launch, whose blocks need registers that two tail blocks an SM leave no room for.
    if (cfg_.tail_rows == TailRows::Rows32 && cuda::tail_half_rows_apply(B, tail_w_)) {
      o.push_back({"tail step, two blocks an SM", true, in_place, split, false, false, false, true});
      if (split) o.push_back({"tail step, two blocks an SM, X in place only", true, true, false, false, false, false, true});
    }
    // ... and with layer 0's forward inside the tail kernel, where it can run (NOTES, "Layer 0 inside
    // the tail kernel": predicted, not measured).
    if (!cfg_.tail_layer0 && cfg_.tail_rows == TailRows::Rows32 && tail_layer0_ok(in_place))
      o.push_back({"tail step, layer 0 inside", true, in_place, split, false, false, false, false, true});
    // ... and there, where its launch shares layer 0 across clusters, each block alone (NOTES, "Layer
    // 0 shared across a cluster": predicted, not measured; the same bits).
    if ((cfg_.tail_layer0 || cfg_.tail_rows == TailRows::Rows32) && tail_layer0_ok(in_place) &&
        cuda::tail_layer0_cluster(B, true, tail_w_, cluster_blocks(cfg_.tail_layer0_cluster), cfg_.precision,
                                  cfg_.tail_rows == TailRows::Rows16 ? cuda::TailRows::Half : cuda::TailRows::Wide) > 1)
      o.push_back({"tail step, layer 0 inside, no clusters", true, in_place, split, false, false, false, false, true, true});
    if (in_place && race_x_)
      o.insert(o.end(), {{"tail step, X gathered", true, false}, {"graph step, X gathered", false, false}});
    return o;
  }

  // The race's operation name (autotune_choices) and its outcome: the path and X's source kept, the
  // other path's buffers (and the gathered X, when in place won) freed.
  std::string path_key() const {
    return cat("training step ", cfg_.batch_size, " rows ", to_string(cfg_.precision), " (--kernels auto)");
  }
  void keep_path(const PathOption& o) {
    take_option(o);
    race_paths_ = race_x_ = false;
    if (x_in_place_ && !x_split_) x_ = DeviceBuffer<float>();
    if (tail_) {
      head_ = false;
      head_partial_ = DeviceBuffer<float>();
    } else {
      tail_partial_ = DeviceBuffer<float>();
      w0_partial_ = DeviceBuffer<float>();
    }
  }

  // Autotuning (cfg.autotune): one full-batch step's launches, uncaptured and without the optimizer,
  // inside train_steps' DenseAutotune scope, so that every GEMM the graphs will capture is tuned
  // first (a GEMM first met inside a capture would keep the size model's tile). Rows: the identity
  // order from batch 0 (any valid rows; a GEMM's time does not depend on which); the epoch then
  // writes its own order and counters and zeroes the metrics this step added to. Once per engine:
  // the choices are per GEMM shape, the same for every later epoch and dataset.
  void tune_step(const Dataset& d) {
    NvtxRange range("autotune");
    const cudaStream_t s = stream_.get();
    cuda::identity_order(order_.data(), d.n, s);
    cuda::TrainCounters& c = counters_host_[0];
    c = cuda::TrainCounters{};
    c.step = step_ + 1;
    CUDA_CHECK(cudaMemcpyAsync(counters_.data(), &c, sizeof c, cudaMemcpyHostToDevice, s));
    record_step(d, cfg_.batch_size, false);
    stream_.synchronize();  // (the pinned counters are written again by the epoch)
    step_tuned_ = true;
  }

  // The graph of `steps` consecutive full-batch training steps over dataset `train`, captured on
  // first use (the captured kernels read the dataset and order_ by address).
  const GraphExec& step_graph(int train, int steps) {
    if (graph_dataset_ != train) {
      graphs_.clear();
      graph_dataset_ = train;
    }
    GraphExec& g = graphs_[steps];
    if (!g) {
      const Dataset& d = dataset(train);
      CUDA_CHECK(cudaDeviceSynchronize());  // no legacy-stream copy (dataset upload) still in flight
      // Captures by value: the emulation of tests/gpu/emu keeps the callable as its "graph".
      g = capture_graph(stream_.get(), [this, dp = &d, steps] {
        for (int i = 0; i < steps; ++i) record_step(*dp, cfg_.batch_size);
      });
    }
    return g;
  }

  // Slots slot .. slot + count - 1 to the host, with one synchronisation; returns the first.
  cuda::Metrics read_metrics(int slot, int count = 1) {
    CUDA_CHECK(cudaMemcpyAsync(metrics_host_.data() + slot, metrics_.data() + slot, sizeof(cuda::Metrics) * count,
                               cudaMemcpyDeviceToHost, stream_.get()));
    stream_.synchronize();
    return metrics_host_[std::size_t(slot)];
  }

  // Forward over the B rows of x0 (layer 0's X: gathered floats, or the images read in place) into
  // act_ through the first `layers` layers (all, or all but the last when the head runs it); in
  // training mode the hidden layers' dropout (step from the device counters) is applied, and act_
  // holds the post-dropout activations.
  void forward(const cuda::DenseInput& x0, int B, bool training, std::size_t layers) {
    NvtxRange range("forward");
    const cudaStream_t s = stream_.get();
    cuda::DenseInput in = x0;
    const std::size_t L = layout_.dense.size();
    for (std::size_t l = 0; l < layers; ++l) {
      const DenseSlot& sl = layout_.dense[l];
      float* out = act_[l].data();
      const float* b = param(sl.b_offset);
      const bool drop = l + 1 < L && training && cfg_.spec.dropout > 0;
      const cuda::DropoutSpec spec{cfg_.spec.dropout, cfg_.seed, 0, uint32_t(l), counters_.data()};
      if (blas_) {
        lt_plan(l, B).run(out, in.x, param(sl.w_offset), b, blas_->workspace.data(), s);  // floats: cuBLAS gathers (x_in_place_)
        if (drop) cuda::dropout_forward(out, out, std::size_t(B) * std::size_t(sl.out), spec, s);
      } else if (drop) {
        cuda::dense_relu_dropout_forward(out, in, gemm_w(sl), b, B, sl.in, sl.out, spec, s, cfg_.precision,
                                         gemm_ws_.data(), gemm_tickets_.data(), rounded_weights());
      } else {
        cuda::dense_forward(out, in, gemm_w(sl), b, B, sl.in, sl.out, sl.relu, s, cfg_.precision, gemm_ws_.data(),
                            gemm_tickets_.data(), rounded_weights());
      }
      in = out;
    }
  }

  // Backward from dz_[top-1] down to layer 0's weights (top: all layers, or all but the last when
  // the head has done its backward); layer 0's X is x0, as in forward.
  void backward(const cuda::DenseInput& x0, int B, std::size_t top) {
    NvtxRange range("backward");
    const cudaStream_t s = stream_.get();
    for (std::size_t l = top; l-- > 0;) {
      const DenseSlot& sl = layout_.dense[l];
      const cuda::DenseInput X = l == 0 ? x0 : cuda::DenseInput(act_[l - 1].data());
      const float* dZ = dz_[l].data();
      if (blas_) {
        cublasHandle_t h = blas_->handle.get();
        cublas::gemm_tn(h, grad(sl.w_offset), dZ, X.x, sl.out, sl.in, B, s);  // dW [out,in] = dZᵀ·X
        cublas::column_sum(h, grad(sl.b_offset), dZ, blas_->ones.data(), B, sl.out, s);
        if (l > 0) {
          float* dprev = dz_[l - 1].data();
          cublas::gemm_nn(h, dprev, dZ, param(sl.w_offset), B, sl.in, sl.out, s);  // dX [B,in] = dZ·W
          cuda::relu_dropout_backward(dprev, dprev, act_[l - 1].data(), std::size_t(B) * std::size_t(sl.in),
                                      mask_scale(), s);
        }
      } else {
        // dW, db and (below the first layer) the previous layer's dZ, in one launch.
        float* dprev = l > 0 ? dz_[l - 1].data() : nullptr;
        const float* mask = l > 0 ? act_[l - 1].data() : nullptr;
        cuda::dense_backward_fused(grad(sl.w_offset), grad(sl.b_offset), dprev, dZ, X, gemm_w(sl), mask,
                                   mask_scale(), B, sl.in, sl.out, s, cfg_.precision, gemm_ws_.data(),
                                   gemm_tickets_.data(), rounded_weights());
      }
    }
  }

  // Layer 0's X and the labels of the next B rows of the epoch's order (batch index from the device
  // counters): read in place by the kernels that use them (no launch), or, where layer 0 does not
  // read X in place, the step's first launch gathers both into x_ and y_.
  struct StepInput {
    cuda::DenseInput x;
    cuda::LabelInput y;
  };
  StepInput gather_step(const Dataset& d, int B) {
    if (!x_in_place_) {
      cuda::gather_batch(x_.data(), y_.data(), d.images.data(), d.labels.data(), order_.data(), counters_.data(),
                         cfg_.batch_size, B, cfg_.spec.input, stream_.get());
      return {x_.data(), y_.data()};
    }
    return {cuda::DenseInput::images_by_index(d.images.data(), order_.data(), 0, counters_.data(), cfg_.batch_size),
            cuda::LabelInput::by_index(d.labels.data(), order_.data(), 0, counters_.data(), cfg_.batch_size)};
  }

  // Enqueues one training step over the next B rows of the epoch's order (batch index and step
  // from the device counters). No host synchronisation: capturable. update false: without the
  // optimizer and the counters' advance (tune_step), so that nothing but the step's scratch, its
  // gradients and the running metrics changes.
  void record_step(const Dataset& d, int B, bool update = true) {
    const cudaStream_t s = stream_.get();
    const StepInput in = gather_step(d, B);
    const cuda::DenseInput& x0 = in.x;
    const std::size_t L = layout_.dense.size();
    if (tail_) return record_tail_step(d, x0, in.y, B, update);
    if (head_) {  // the last layer, its loss and its backward in one launch (see the header)
      forward(x0, B, true, L - 1);
      NvtxRange range("head");
      const DenseSlot& sl = layout_.dense.back();
      float* dprev = L > 1 ? dz_[L - 2].data() : nullptr;
      cuda::head_train(grad(sl.w_offset), grad(sl.b_offset), dprev, metrics_.data() + kTrainMetrics, head_scratch(),
                       head_input(), param(sl.w_offset), param(sl.b_offset), in.y, mask_scale(), 1.0f / float(B),
                       B, sl.in, sl.out, s, cfg_.precision);
      backward(x0, B, L - 1);
    } else {
      forward(x0, B, true, L);
      cuda::softmax_xent(dz_.back().data(), metrics_.data() + kTrainMetrics, xent_scratch(), logits(), in.y, B,
                         cfg_.spec.classes, 1.0f / float(B), s);
      backward(x0, B, L);
    }
    if (!update) return;
    NvtxRange range("optimizer");
    // ... and advance_train_counters by its last block: the step's last launch (every reader of the
    // counters in this step has run before it).
    cuda::adam_update_and_advance(params_.data(), m_.data(), v_.data(), grads_.data(), layout_.storage,
                                  counters_.data(), cfg_.beta1, cfg_.beta2, cfg_.eps, s, advance_done_.data(),
                                  rounded_params());
  }

  EngineConfig cfg_;
  ParamLayout layout_;
  Stream stream_;
  int cap_ = 0;  // rows of y_, act_ (and x_ where evaluation gathers): max(batch, EngineConfig::eval_rows)
  DeviceBuffer<float> params_, grads_, m_, v_;
  // params_ rounded to the precision, kept so by every writer (EngineConfig::rounded_weights); empty
  // when off (FP32, --gemm cublas, the fused path, or the config).
  DeviceBuffer<float> wq_;
  bool pdl_ = false;  // the tail path's launches are programmatic (cfg.pdl and the device's probe)
  bool pdl_ok_ = false, carveout_ok_ = false;  // ... and the largest carveout, where they may be (the race's options)
  bool max_carveout_ = false;  // ... and ask for the largest carveout (cfg.carveout and the probe)
  bool x_in_place_ = false;  // layer 0 reads X from the images (cfg.x_in_place where it can; the header)
  bool tune_ = false;        // cfg.autotune with native GEMMs (DenseAutotune scopes)
  bool step_tuned_ = false;  // tune_step has run
  bool race_paths_ = false;  // Auto, autotuned: graph vs tail still to be timed (race_paths)
  bool x_split_ = false;     // tail, X in place: the weight GEMM reads X gathered beside the tail kernel
  bool weight_adam_ = false;  // tail: layer 0's weight GEMM runs its Adam (EngineConfig::weight_adam; the race's option)
  // tail: the tail kernel's blocks (EngineConfig::tail_rows; the race's option)
  cuda::TailRows tail_rows_ = cuda::TailRows::Wide;
  bool tail_l0_ = false;  // tail: layer 0's forward in the tail kernel (EngineConfig::tail_layer0; the race's option)
  int l0_cluster_ = 1;    // ... shared by clusters of up to this many blocks (EngineConfig::tail_layer0_cluster; the race's)
  bool race_x_ = false;      // ... with X in place and gathered (x_ allocated for the race)
  bool x_race_ok_ = false;   // layer 0 can read X in place at all (no cuBLAS, no one-layer head)
  std::vector<std::string> path_report_;  // what race_paths found
  std::string path_choice_;               // its kept candidate ("graph step", "tail step"), or preset
  DeviceBuffer<float> x_;    // the gathered X0 [cap, input] otherwise (empty when in place)
  DeviceBuffer<uint8_t> y_;  // the gathered labels, where X is gathered too (else read by index)
  std::vector<DeviceBuffer<float>> act_;  // [cap, out_l]: post-ReLU (and post-dropout in training)
  std::vector<DeviceBuffer<float>> dz_;   // [batch, out_l]: gradient w.r.t. layer l's pre-activation
  DeviceBuffer<float> gemm_ws_;           // split-K partials of the GEMMs (kernels/dense.cuh)
  DeviceBuffer<unsigned> gemm_tickets_;   // and the per-tile counters of their one-launch reduction
  DeviceBuffer<cuda::TrainCounters> counters_;
  PinnedBuffer<cuda::TrainCounters> counters_host_;
  DeviceBuffer<cuda::Metrics> metrics_;
  PinnedBuffer<cuda::Metrics> metrics_host_;
  DeviceBuffer<cuda::Metrics> xent_blocks_;  // softmax_xent's scratch: per-block sums, completion count
  DeviceBuffer<unsigned> xent_done_;
  bool head_ = false;                // the last layer runs as cuda::head_train / head_evaluate
  DeviceBuffer<float> head_partial_;  // the head's per-block dW/db partials (training)
  bool tail_ = false;                 // Kernels::Tail: the tail path (choose_tail)
  std::vector<int> tail_w_;           // the widths it sees: layer 0's output, then every later layer's
  DeviceBuffer<float> tail_partial_;  // its per-block [dW | db] slices of layers 1..L-1
  DeviceBuffer<float> w0_partial_;    // and layer 0's weight-GEMM pieces
  DeviceBuffer<unsigned> advance_done_;  // adam_reduce_update's count of blocks past their counter read
  StepSnapshots snapshots_;  // only with a progress hook
  DeviceBuffer<int32_t> order_;
  DeviceBuffer<unsigned char> shuffle_temp_;
  // The next epoch's order (queue_next_order), shuffled on side_ into order_next_ once order_ready_
  // (the current order written, so the scratch and order_next_ are free); next_order_done_ when it is.
  Stream side_;
  Event order_ready_{cudaEventDisableTiming}, next_order_done_{cudaEventDisableTiming};
  DeviceBuffer<int32_t> order_next_;
  struct NextOrder {
    int train = -1;
    int64_t epoch = -1;
    int n = -1;
  } next_order_;
  int shuffle_n_ = -1;  // the n that shuffle_temp_ was zeroed for
  DeviceBuffer<uint8_t> staging_;  // predict: a chunk of host images
  DeviceBuffer<float> probs_;      // predict: a chunk of probabilities
  std::vector<Dataset> data_;
  std::unique_ptr<Blas> blas_;
  std::map<int, GraphExec> graphs_;  // steps per replay -> graph, over dataset graph_dataset_
  int graph_dataset_ = -1;
  int64_t step_ = 0;
  bool fused_ = false;      // train with the fused kernel (choose_kernels)
  int queued_eval_ = -1;    // queue_evaluation's dataset for the next completed epoch, or -1
  int ready_eval_ = -1;     // the dataset whose evaluation train_steps enqueued and read, or -1
  EpochStats ready_stats_;  // ... and its result
  int fused_blocks_ = 0;    // its grid
  std::string notice_;      // why not, when Kernels::Fused was asked for
  DeviceBuffer<float> partial_;     // fused: layer 0's split-K partial sums
  bool eval_fused_ = false;         // evaluate with cuda::fused_evaluate
  DeviceBuffer<double> eval_loss_;  // its per-block sums
  DeviceBuffer<uint32_t> eval_hit_;
  DeviceBuffer<uint32_t> eval_done_;
  DeviceBuffer<double> row_loss_;   // fused: per-item loss of a step
  DeviceBuffer<uint32_t> row_hit_;  // fused: per-item hits of a step
  DeviceBuffer<unsigned> ready_;    // fused: the counters its phases wait on (0 between launches)
};

}  // namespace

// The device is checked before anything touches the CUDA runtime (the engine's stream is a member,
// created before its constructor body runs), so a machine without a usable GPU gets this message
// rather than a failed stream creation.
std::unique_ptr<Engine> make_cuda_engine(const EngineConfig& cfg) {
  const DeviceInfo info = query_device();
  if (!info.available) throw CudaError("the CUDA engine needs a CUDA device: " + info.reason);
  CUDA_CHECK(cudaSetDevice(0));
  return std::make_unique<CudaEngine>(cfg);
}

}  // namespace mnist
