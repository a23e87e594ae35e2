// ProgrammaticLaunches: which launches of this host thread carry programmatic dependent launch
// (kernels/pdl.cuh). A scope, as cuda::DenseAutotune is: the engine opens one around the launches of
// a training step or an evaluation chunk whose kernels all wait before they read their
// predecessors' outputs; every launch_kernel inside it asks for the overlap, every one outside it
// (the benchmarks' back-to-back launches, the kernel tests, the other paths) launches as before.
// Host-only: shared by the real launcher and the host emulation's (tests/gpu/emu/ov/kernels/pdl.cuh).
#pragma once

namespace mnist::cuda {

// With the overlap, a scope also asks (max_shared, the default) for the largest shared-memory
// carveout on every launch: the step's kernels would otherwise each get the driver's own split of
// an SM's 256 KB between shared memory and L1 (by the launch's shared-memory size: the layer-0
// GEMM 136-160 KB a block, the tail kernel 79 KB, the optimizer 4 KB). As far as we know an SM
// changes its split only when no block runs there, so a launch whose split differs from the running
// kernel's could not put a block beside it -- the overlap the programmatic launch asks for. One
// split for all of them costs the kernels without shared memory their L1 beyond 28 KB (the
// optimizer and the gathers stream: they hit L2). Not yet measured (profiling/NOTES.md, "One
// shared-memory carveout for the step"); --carveout driver restores the driver's choice.
class ProgrammaticLaunches {
 public:
  // on: launches inside the scope ask for programmatic serialization (and, with max_shared, for
  // the largest carveout); off: a scope that changes nothing (so a caller can open one
  // unconditionally). Scopes nest; the innermost decides.
  explicit ProgrammaticLaunches(bool on, bool max_shared = true) : saved_(state()) {
    state() = {on, on && max_shared};
  }
  ~ProgrammaticLaunches() { state() = saved_; }
  ProgrammaticLaunches(const ProgrammaticLaunches&) = delete;
  ProgrammaticLaunches& operator=(const ProgrammaticLaunches&) = delete;

  // Whether the launches of this host thread ask for the overlap now.
  static bool active() { return state().on; }
  // Whether they also ask for the largest shared-memory carveout (never without the overlap).
  static bool max_shared() { return state().max_shared; }

 private:
  struct State {
    bool on = false, max_shared = false;
  };
  static State& state() {
    thread_local State s;
    return s;
  }
  State saved_;
};

}  // namespace mnist::cuda
