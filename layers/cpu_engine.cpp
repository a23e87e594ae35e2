// The CPU reference engine: the Sequential model's forward, backward and Adam step composed from
// the ops in cpu_ops.hpp. Every buffer is allocated once in the constructor for the configured
// batch size; a step allocates nothing.
//
// Threads: the engine's own (OpenMP; EngineConfig::cpu_threads), one team a step. Each thread takes
// a contiguous range of the step's rows for everything a row owns: its gather, its forward through
// every layer (dropout included), its loss, and its backward down to each layer's dZ and dX. After
// the step's one barrier, each takes a range of every layer's output units for what sums over all
// rows (that range's rows of dW, its db) and those parameters' Adam update, which needs nothing
// else. OpenBLAS runs one thread inside each (cpu::blas_one_thread): its own pool, woken at each of
// a step's small GEMMs, made a 2-core epoch slower than one thread. A row's or a unit's arithmetic
// does not depend on the team, but OpenBLAS's kernels sum a GEMM's slice in an order that can
// depend on the slice's size, so results are the same bits run to run at one thread count and agree
// to float32 rounding across counts (test_training checks both).
#include <algorithm>
#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "layers/cpu_ops.hpp"
#include "layers/engine.hpp"
#include "runtime/error.hpp"
#include "runtime/huge_pages.hpp"

namespace mnist {
namespace {

// [begin, end) of n things, part i of parts (contiguous, sizes differing by at most one).
struct Range {
  int begin = 0, end = 0;
  int size() const { return end - begin; }
};
Range share(int n, int parts, int i) {
  return {int(int64_t(n) * i / parts), int(int64_t(n) * (i + 1) / parts)};
}

// Fewest rows a thread of a step takes, so that a small batch is not spread over every core of a
// large machine (a choice, not measured: 8 threads for the tutorial's 128 rows on 16 cores).
constexpr int kMinRowsPerThread = 16;

// body(thread, threads) on a team of `threads` (one: the calling thread, no parallel region). The
// body may hold `#pragma omp barrier`; nothing in it throws (the engine's buffers are allocated and
// OpenBLAS is loaded by the constructor).
template <class Body>
void in_team(int threads, const Body& body) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

class CpuEngine final : public Engine {
 public:
  explicit CpuEngine(const EngineConfig& cfg) : cfg_(cfg), layout_(make_layout(cfg.spec)) {
    MNIST_CHECK(cfg.batch_size > 0, "batch size must be > 0");
    MNIST_CHECK(cfg.cpu_threads >= 0, "CPU threads must be >= 0 (0: all cores), not ", cfg.cpu_threads);
    cpu::blas_one_thread();
    init_params(params_, layout_, cfg.init, cfg.seed);
    grads_.assign(layout_.storage, 0.0f);
    m_.assign(layout_.storage, 0.0f);
    v_.assign(layout_.storage, 0.0f);
    const std::size_t B = std::size_t(cfg.batch_size);
    x_.resize(B * std::size_t(cfg.spec.input));
    y_.resize(B);
    idx_.resize(B);
    row_loss_.resize(B);
    row_hit_.resize(B);
    for (const DenseSlot& s : layout_.dense) {
      out_.emplace_back(B * std::size_t(s.out));   // H: Dense(+ReLU) output
      drop_.emplace_back(B * std::size_t(s.out));  // D: after dropout (hidden layers)
      dout_.emplace_back(B * std::size_t(s.out));  // gradient w.r.t. the layer's output, then dZ in place
      if (rounding()) {
        xr_.emplace_back(B * std::size_t(s.in));                   // the layer's input, rounded
        wr_.emplace_back(std::size_t(s.out) * std::size_t(s.in));  // its weights, rounded
      }
    }
  }

  std::string name() const override { return "cpu"; }
  const ParamLayout& layout() const override { return layout_; }

  int add_dataset(const DataView& d) override {
    MNIST_CHECK(d.dim == cfg_.spec.input, "dataset has ", d.dim, " pixels per image, the model expects ",
                cfg_.spec.input);
    Stored s;
    reserve_huge(s.images, std::size_t(d.n) * d.dim);  // (runtime/huge_pages.hpp: first touched by the copy)
    s.images.assign(d.images, d.images + std::size_t(d.n) * d.dim);
    s.labels.assign(d.labels, d.labels + d.n);
    s.n = d.n;
    data_.push_back(std::move(s));
    return int(data_.size()) - 1;
  }

  bool train_steps(int train, int64_t epoch, float lr, EpochProgress& p,
                   const std::atomic<bool>* interrupt) override {
    const Stored& d = dataset(train);
    const int batches = (d.n + cfg_.batch_size - 1) / cfg_.batch_size;
    MNIST_CHECK(p.next_batch >= 0 && p.next_batch <= batches, "epoch progress at batch ", p.next_batch, " of ",
                batches);
    order_.resize(std::size_t(d.n));
    if (cfg_.shuffle) cpu::shuffle_order(order_.data(), d.n, cfg_.seed, uint64_t(epoch));
    else for (int i = 0; i < d.n; ++i) order_[std::size_t(i)] = i;
    const int end = p.end_batch < 0 ? batches : std::min(p.end_batch, batches);
    for (; p.next_batch < end; ++p.next_batch) {
      if (interrupt && interrupt->load(std::memory_order_relaxed)) return false;
      const int off = p.next_batch * cfg_.batch_size;
      const int B = std::min(cfg_.batch_size, d.n - off);
      ++step_;
      int hits = 0;
      p.loss_sum += train_step(d, order_.data() + off, B, lr, &hits);
      p.correct += hits;
      p.examples += B;
      if (p.on_steps) p.on_steps(p.next_batch + 1, batches, p.stats());
    }
    return p.next_batch == batches;
  }

  EpochStats evaluate(int id) override {
    const Stored& d = dataset(id);
    round_weights_alone();
    double loss = 0;
    int64_t correct = 0;
    for (int off = 0; off < d.n; off += cfg_.batch_size) {
      const int B = std::min(cfg_.batch_size, d.n - off);
      for (int r = 0; r < B; ++r) idx_[std::size_t(r)] = off + r;
      in_team(team(B), [&](int t, int nt) {
        const Range rows = share(B, nt, t);
        if (rows.size() == 0) return;
        gather(rows, d.images.data(), d.labels.data(), idx_.data());
        forward(rows, false);
        rows_loss(rows, false, 0.0f);
      });
      int hits = 0;
      loss += sum_rows(B, &hits);
      correct += hits;
    }
    return {loss / std::max(d.n, 1), double(correct) / std::max(d.n, 1), d.n};
  }

  void predict(float* probs, const uint8_t* images, int n) override {
    round_weights_alone();
    for (int off = 0; off < n; off += cfg_.batch_size) {
      const int B = std::min(cfg_.batch_size, n - off);
      for (int r = 0; r < B; ++r) idx_[std::size_t(r)] = off + r;
      in_team(team(B), [&](int t, int nt) {
        const Range rows = share(B, nt, t);
        if (rows.size() == 0) return;
        gather(rows, images, nullptr, idx_.data());
        forward(rows, false);
        const int C = cfg_.spec.classes;
        cpu::softmax(probs + (std::size_t(off) + rows.begin) * C, logits() + std::size_t(rows.begin) * C,
                     rows.size(), C);
      });
    }
  }

  void get_params(std::vector<float>& flat) override { flat = params_; }
  void set_params(const std::vector<float>& flat) override {
    MNIST_CHECK(flat.size() == params_.size(), "parameter array of ", flat.size(), " floats, model has ",
                params_.size());
    params_ = flat;
  }
  void get_state(TrainState& s) override {
    s.params = params_;
    s.m = m_;
    s.v = v_;
    s.step = step_;
  }
  void set_state(const TrainState& s) override {
    MNIST_CHECK(s.params.size() == params_.size() && s.m.size() == m_.size() && s.v.size() == v_.size(),
                "optimizer state does not match the model's layout");
    params_ = s.params;
    m_ = s.m;
    v_ = s.v;
    step_ = s.step;
  }

 private:
  struct Stored {
    std::vector<uint8_t> images, labels;
    int n = 0;
  };
  const Stored& dataset(int id) const {
    MNIST_CHECK(id >= 0 && std::size_t(id) < data_.size(), "unknown dataset handle ", id);
    return data_[std::size_t(id)];
  }
  float* logits() { return out_.back().data(); }
  bool rounding() const { return cfg_.precision != Precision::FP32; }
  bool dropping() const { return cfg_.spec.dropout > 0; }

  // The team for B rows: the configured threads (0: OpenMP's count, --threads), at least
  // kMinRowsPerThread rows each.
  int team(int B) const {
    int threads = cfg_.cpu_threads;
#ifdef _OPENMP
    if (threads == 0) threads = omp_get_max_threads();
#endif
    return std::max(1, std::min(threads, B / kMinRowsPerThread));
  }

  // Layer l's input: the images (l = 0), else the layer before's output, after its dropout when
  // training with dropout.
  float* input(std::size_t l, bool training) {
    if (l == 0) return x_.data();
    return training && dropping() ? drop_[l - 1].data() : out_[l - 1].data();
  }

  // TF32/BF16: thread t's share of every layer's weights rounded into wr_ (the units it updates).
  void round_weights(int t, int nt) {
    if (!rounding()) return;
    for (std::size_t l = 0; l < layout_.dense.size(); ++l) {
      const DenseSlot& s = layout_.dense[l];
      const Range u = share(s.out, nt, t);
      const std::size_t first = std::size_t(u.begin) * s.in;
      cpu::round_gemm_inputs(wr_[l].data() + first, params_.data() + s.w_offset + first,
                             std::size_t(u.size()) * s.in, cfg_.precision);
    }
  }
  void round_weights_alone() { round_weights(0, 1); }

  void gather(Range rows, const uint8_t* images, const uint8_t* labels, const int32_t* idx) {
    const std::size_t D = std::size_t(cfg_.spec.input);
    cpu::gather_batch(x_.data() + rows.begin * D, labels ? y_.data() + rows.begin : nullptr, images, labels,
                      idx + rows.begin, rows.size(), int(D));
  }

  // The forward pass of `rows`; in training mode the hidden layers' dropout is applied.
  void forward(Range rows, bool training) {
    const std::size_t L = layout_.dense.size();
    for (std::size_t l = 0; l < L; ++l) {
      const DenseSlot& s = layout_.dense[l];
      const std::size_t first_in = std::size_t(rows.begin) * s.in, first_out = std::size_t(rows.begin) * s.out;
      const float* in = input(l, training) + first_in;
      const float* w = params_.data() + s.w_offset;
      if (rounding()) {  // (rounded once here for the backward's weight GEMM too)
        cpu::round_gemm_inputs(xr_[l].data() + first_in, in, std::size_t(rows.size()) * s.in, cfg_.precision);
        in = xr_[l].data() + first_in;
        w = wr_[l].data();
      }
      cpu::dense_forward(out_[l].data() + first_out, in, w, params_.data() + s.b_offset, rows.size(), s.in,
                         s.out, s.relu);
      if (l + 1 < L && training && dropping())
        cpu::dropout_forward(drop_[l].data() + first_out, out_[l].data() + first_out,
                             std::size_t(rows.size()) * s.out, cfg_.spec.dropout, cfg_.seed, uint64_t(step_),
                             uint32_t(l), first_out);
    }
  }

  // Each row's loss and hit into row_loss_/row_hit_ (summed in row order by sum_rows, so that a
  // team's split does not change the sum); training: the logits' gradient, scaled by grad_scale.
  void rows_loss(Range rows, bool training, float grad_scale) {
    const std::size_t first = std::size_t(rows.begin) * cfg_.spec.classes;
    cpu::softmax_xent_rows(training ? dout_.back().data() + first : nullptr, row_loss_.data() + rows.begin,
                           row_hit_.data() + rows.begin, logits() + first, y_.data() + rows.begin, rows.size(),
                           cfg_.spec.classes, grad_scale);
  }
  double sum_rows(int B, int* hits) const {
    double loss = 0;
    int h = 0;
    for (int r = 0; r < B; ++r) {
      loss += row_loss_[std::size_t(r)];
      h += row_hit_[std::size_t(r)];
    }
    *hits = h;
    return loss;
  }

  // The backward pass of `rows` down to every layer's dZ (in place in dout_: the ReLU's mask and
  // the dropout after it, then the rounding) and dX. The dropout's mask is not drawn again: its
  // output is > 0 exactly where it kept an element the ReLU passed (cpu::relu_dropout_backward).
  void backward_rows(Range rows) {
    const std::size_t L = layout_.dense.size();
    const float scale = 1.0f / (1.0f - cfg_.spec.dropout);  // dropout_forward's
    for (std::size_t l = L; l-- > 0;) {
      const DenseSlot& s = layout_.dense[l];
      const std::size_t n_out = std::size_t(rows.size()) * s.out, first_out = std::size_t(rows.begin) * s.out;
      float* dz = dout_[l].data() + first_out;
      if (s.relu && l + 1 < L && dropping())
        cpu::relu_dropout_backward(dz, dz, drop_[l].data() + first_out, n_out, scale);
      else if (s.relu)
        cpu::relu_backward(dz, dz, out_[l].data() + first_out, n_out);
      if (rounding()) cpu::round_gemm_inputs(dz, dz, n_out, cfg_.precision);
      if (l == 0) continue;
      cpu::gemm_nn(dout_[l - 1].data() + std::size_t(rows.begin) * s.in, dz,
                   rounding() ? wr_[l].data() : params_.data() + s.w_offset, rows.size(), s.in, s.out);
    }
  }

  // Thread t's share of every layer's units, over all B rows: dW = dZᵀ·X and db = Σ dZ for them,
  // then their Adam update.
  void update_units(int t, int nt, int B, float lr) {
    for (std::size_t l = 0; l < layout_.dense.size(); ++l) {
      const DenseSlot& s = layout_.dense[l];
      const Range u = share(s.out, nt, t);
      if (u.size() == 0) continue;
      const float* X = rounding() ? xr_[l].data() : input(l, true);
      const float* dz = dout_[l].data() + u.begin;
      const std::size_t w = s.w_offset + std::size_t(u.begin) * s.in, b = s.b_offset + std::size_t(u.begin);
      const std::size_t nw = std::size_t(u.size()) * s.in, nb = std::size_t(u.size());
      cpu::gemm_tn(grads_.data() + w, dz, X, u.size(), s.in, B, s.out);  // [u, K] = dZ[:, u]ᵀ · X
      cpu::column_sums(grads_.data() + b, dz, B, u.size(), s.out);
      for (const auto& [first, n] : {std::pair{w, nw}, std::pair{b, nb}})
        cpu::adam_update(params_.data() + first, m_.data() + first, v_.data() + first, grads_.data() + first, n,
                         lr, cfg_.beta1, cfg_.beta2, cfg_.eps, step_);
    }
  }

  // One training step on the B examples idx[0:B] of d: gather, forward, loss, backward, Adam.
  // Returns the loss sum.
  double train_step(const Stored& d, const int32_t* idx, int B, float lr, int* hits) {
    in_team(team(B), [&](int t, int nt) {
      if (rounding()) {
        round_weights(t, nt);
#pragma omp barrier
      }
      const Range rows = share(B, nt, t);
      if (rows.size() > 0) {
        gather(rows, d.images.data(), d.labels.data(), idx);
        forward(rows, true);
        rows_loss(rows, true, 1.0f / float(B));
        backward_rows(rows);
      }
#pragma omp barrier
      update_units(t, nt, B, lr);
    });
    return sum_rows(B, hits);
  }

  EngineConfig cfg_;
  ParamLayout layout_;
  std::vector<float> params_, grads_, m_, v_;
  std::vector<float> x_;
  std::vector<uint8_t> y_;
  std::vector<std::vector<float>> out_, drop_, dout_, xr_, wr_;
  std::vector<double> row_loss_;
  std::vector<uint8_t> row_hit_;
  std::vector<int32_t> order_, idx_;
  std::vector<Stored> data_;
  int64_t step_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const EngineConfig& cfg) { return std::make_unique<CpuEngine>(cfg); }

}  // namespace mnist
