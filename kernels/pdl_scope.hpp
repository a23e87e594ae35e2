// ProgrammaticLaunches: which launches of this host thread carry programmatic dependent launch
// (kernels/pdl.cuh). A scope, as cuda::DenseAutotune is: the engine opens one around the launches of
// a training step or an evaluation chunk whose kernels all wait before they read their
// predecessors' outputs; every launch_kernel inside it asks for the overlap, every one outside it
// (the benchmarks' back-to-back launches, the kernel tests, the other paths) launches as before.
// Host-only: shared by the real launcher and the host emulation's (tests/gpu/emu/ov/kernels/pdl.cuh).
#pragma once

namespace mnist::cuda {

class ProgrammaticLaunches {
 public:
  // on: launches inside the scope ask for programmatic serialization; off: a scope that changes
  // nothing (so a caller can open one unconditionally). Scopes nest; the innermost decides.
  explicit ProgrammaticLaunches(bool on) : saved_(flag()) { flag() = on; }
  ~ProgrammaticLaunches() { flag() = saved_; }
  ProgrammaticLaunches(const ProgrammaticLaunches&) = delete;
  ProgrammaticLaunches& operator=(const ProgrammaticLaunches&) = delete;

  // Whether the launches of this host thread ask for it now.
  static bool active() { return flag(); }

 private:
  static bool& flag() {
    thread_local bool on = false;
    return on;
  }
  bool saved_;
};

}  // namespace mnist::cuda
