// The CPU reference engine: the Sequential model's forward, backward and Adam step composed from
// the ops in cpu_ops.hpp. Every buffer is allocated once in the constructor for the configured
// batch size; a step allocates nothing.
#include <algorithm>
#include <cmath>

#include "layers/cpu_ops.hpp"
#include "layers/engine.hpp"
#include "runtime/error.hpp"
#include "runtime/huge_pages.hpp"

namespace mnist {
namespace {

class CpuEngine final : public Engine {
 public:
  explicit CpuEngine(const EngineConfig& cfg) : cfg_(cfg), layout_(make_layout(cfg.spec)) {
    MNIST_CHECK(cfg.batch_size > 0, "batch size must be > 0");
    init_params(params_, layout_, cfg.init, cfg.seed);
    grads_.assign(layout_.storage, 0.0f);
    m_.assign(layout_.storage, 0.0f);
    v_.assign(layout_.storage, 0.0f);
    const std::size_t B = std::size_t(cfg.batch_size);
    x_.resize(B * std::size_t(cfg.spec.input));
    y_.resize(B);
    for (const DenseSlot& s : layout_.dense) {
      out_.emplace_back(B * std::size_t(s.out));    // H: Dense(+ReLU) output
      drop_.emplace_back(B * std::size_t(s.out));   // D: after dropout (hidden layers)
      dout_.emplace_back(B * std::size_t(s.out));   // gradient w.r.t. the layer's output
    }
    int widest = 0;
    for (const DenseSlot& s : layout_.dense) widest = std::max(widest, s.out);
    dz_.resize(B * std::size_t(widest));
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
      cpu::gather_batch(x_.data(), y_.data(), d.images.data(), d.labels.data(), order_.data() + off, B,
                        cfg_.spec.input);
      ++step_;
      int hits = 0;
      p.loss_sum += train_step(B, lr, &hits);
      p.correct += hits;
      p.examples += B;
      if (p.on_steps) p.on_steps(p.next_batch + 1, batches, p.stats());
    }
    return p.next_batch == batches;
  }

  EpochStats evaluate(int id) override {
    const Stored& d = dataset(id);
    double loss = 0;
    int64_t correct = 0;
    idx_.resize(std::size_t(cfg_.batch_size));
    for (int off = 0; off < d.n; off += cfg_.batch_size) {
      const int B = std::min(cfg_.batch_size, d.n - off);
      for (int r = 0; r < B; ++r) idx_[std::size_t(r)] = off + r;
      cpu::gather_batch(x_.data(), y_.data(), d.images.data(), d.labels.data(), idx_.data(), B,
                        cfg_.spec.input);
      forward(B, false);
      int hits = 0;
      loss += cpu::softmax_xent<float>(nullptr, &hits, logits(), y_.data(), B, cfg_.spec.classes, 0.0f);
      correct += hits;
    }
    return {loss / std::max(d.n, 1), double(correct) / std::max(d.n, 1), d.n};
  }

  void predict(float* probs, const uint8_t* images, int n) override {
    idx_.resize(std::size_t(cfg_.batch_size));
    for (int off = 0; off < n; off += cfg_.batch_size) {
      const int B = std::min(cfg_.batch_size, n - off);
      for (int r = 0; r < B; ++r) idx_[std::size_t(r)] = off + r;
      cpu::gather_batch(x_.data(), nullptr, images, nullptr, idx_.data(), B, cfg_.spec.input);
      forward(B, false);
      cpu::softmax(probs + std::size_t(off) * cfg_.spec.classes, logits(), B, cfg_.spec.classes);
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

  // Forward pass over x_[0:B]; in training mode the hidden layers' dropout is applied.
  void forward(int B, bool training) {
    const float* in = x_.data();
    const std::size_t L = layout_.dense.size();
    for (std::size_t l = 0; l < L; ++l) {
      const DenseSlot& s = layout_.dense[l];
      cpu::dense_forward(out_[l].data(), in, params_.data() + s.w_offset, params_.data() + s.b_offset, B,
                         s.in, s.out, s.relu, cfg_.precision);
      in = out_[l].data();
      if (l + 1 < L && training && cfg_.spec.dropout > 0) {
        cpu::dropout_forward(drop_[l].data(), out_[l].data(), std::size_t(B) * s.out, cfg_.spec.dropout,
                             cfg_.seed, uint64_t(step_), uint32_t(l));
        in = drop_[l].data();
      }
    }
  }

  // One training step on x_/y_[0:B]: forward, loss, backward, Adam. Returns the loss sum.
  double train_step(int B, float lr, int* hits) {
    forward(B, true);
    const std::size_t L = layout_.dense.size();
    const bool dropping = cfg_.spec.dropout > 0;
    double loss = cpu::softmax_xent(dout_[L - 1].data(), hits, logits(), y_.data(), B, cfg_.spec.classes,
                                    1.0f / float(B));
    for (std::size_t l = L; l-- > 0;) {
      const DenseSlot& s = layout_.dense[l];
      const float* X = l == 0 ? x_.data() : (dropping ? drop_[l - 1].data() : out_[l - 1].data());
      float* dX = l == 0 ? nullptr : dout_[l - 1].data();
      cpu::dense_backward(dX, grads_.data() + s.w_offset, grads_.data() + s.b_offset, dz_.data(),
                          dout_[l].data(), X, params_.data() + s.w_offset, out_[l].data(), B, s.in, s.out,
                          s.relu, cfg_.precision);
      if (l > 0 && dropping)  // gradient through the dropout that fed this layer, in place
        cpu::dropout_backward(dout_[l - 1].data(), dout_[l - 1].data(), std::size_t(B) * s.in,
                              cfg_.spec.dropout, cfg_.seed, uint64_t(step_), uint32_t(l - 1));
    }
    cpu::adam_update(params_.data(), m_.data(), v_.data(), grads_.data(), params_.size(), lr, cfg_.beta1,
                     cfg_.beta2, cfg_.eps, step_);
    return loss;
  }

  EngineConfig cfg_;
  ParamLayout layout_;
  std::vector<float> params_, grads_, m_, v_;
  std::vector<float> x_, dz_;
  std::vector<uint8_t> y_;
  std::vector<std::vector<float>> out_, drop_, dout_;
  std::vector<int32_t> order_, idx_;
  std::vector<Stored> data_;
  int64_t step_ = 0;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const EngineConfig& cfg) { return std::make_unique<CpuEngine>(cfg); }

}  // namespace mnist
