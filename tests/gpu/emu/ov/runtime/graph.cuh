#pragma once
// Emulation: a "graph" is the recorded callable; a replay calls it again (the engine's record_step
// must be a pure function of state that does not change between replays, which holds by review).
#include <functional>
#include <cuda_runtime.h>
namespace mnist {
extern int g_emu_captures, g_emu_replays;
class GraphExec {
 public:
  GraphExec() = default;
  explicit GraphExec(std::function<void()> f) : f_(std::move(f)) {}
  explicit operator bool() const { return bool(f_); }
  void launch(cudaStream_t) const { ++g_emu_replays; f_(); }
 private:
  std::function<void()> f_;
};
template <class F> GraphExec capture_graph(cudaStream_t, F&& record) { ++g_emu_captures; return GraphExec(std::function<void()>(record)); }
}
