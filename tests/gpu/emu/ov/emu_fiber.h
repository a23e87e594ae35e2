// The emulator's CUDA threads: fibers (user-space contexts) on the launching host thread, run by a
// scheduler that switches only where a CUDA thread must wait for others (__syncthreads, a grid
// sync, a warp or warpgroup collective). A launch of B blocks of T threads costs T context
// switches per barrier instead of T OS threads created, woken and joined per block, which made the
// emulation spend most of its time in the kernel's scheduler (one std::thread per CUDA thread
// until 2026-11-26).
//
// Semantics the kernels can rely on, and no more, as on the GPU:
//   - a thread runs until it reaches a barrier (or ends); when every participant has arrived, all
//     of them continue, in the order they arrived;
//   - the first phase of a block's threads runs in index order or in reverse, alternately from
//     one block to the next (g_thread_order can force one): a missing __syncthreads between a
//     write and another thread's read shows in one of the two orders whichever thread writes;
//   - a barrier that cannot complete (a thread skipped it, or waits at another one) stops the
//     run with a message naming the launch, the block, the waiting threads and where they wait,
//     instead of hanging until the test's timeout;
//   - an exception thrown by a CUDA thread ends the launch and is rethrown by the launch call.
// Per-thread state of the models (cp.async and wgmma queues, collective call counts) lives in the
// fiber (lane_local), per-warp or per-warpgroup state in the block (group_state).
#pragma once

#include <sys/mman.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

// Included by cuda_runtime.h once dim3 is defined. The per-thread globals of the emulated runtime,
// set each time a fiber (re)starts (threadIdx, blockIdx: defined in emu_runtime.cpp).
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
inline thread_local void* g_emu_dynamic_smem = nullptr;
namespace emu {

struct Fiber;

// The switch between two fibers (or a fiber and the scheduler). On x86-64 a few instructions
// (emu_runtime.cpp, emu_switch: the callee-saved registers, MXCSR and the x87 control word pushed on
// the stack being left, the stack pointer swapped); swapcontext also saves and restores the signal
// mask, a system call on every switch, which was half the emulation's time (perf, 2026-11-27).
// Elsewhere: ucontext.
#if defined(__x86_64__)
struct Context {
  void* sp = nullptr;
};
extern "C" void emu_switch(void** save_sp, void* load_sp);
inline void switch_to(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
// A fresh context that starts `entry` (which must never return) on [stack, stack + bytes).
inline void make_context(Context& c, void* stack, std::size_t bytes, void (*entry)()) {
  auto top = reinterpret_cast<std::uintptr_t>(static_cast<char*>(stack) + bytes) & ~std::uintptr_t(15);
  auto* w = reinterpret_cast<std::uint64_t*>(top);
  *--w = 0;                                         // (alignment: entry starts with rsp = 8 mod 16)
  *--w = reinterpret_cast<std::uint64_t>(entry);    // emu_switch's ret
  for (int i = 0; i < 6; ++i) *--w = 0;             // rbp, rbx, r12..r15
  std::uint32_t csr[2];
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  *--w = std::uint64_t(csr[0]) | (std::uint64_t(csr[1] & 0xFFFF) << 32);  // MXCSR, x87 control word
  c.sp = w;
}
#else
struct Context {
  ucontext_t uc;
};
inline void switch_to(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, void* stack, std::size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

// A barrier of `expected` threads. `what` names it in a deadlock report.
struct Barrier {
  unsigned expected = 0;
  const char* what = "";
  unsigned arrived = 0;
  std::vector<Fiber*> waiting;
};

struct Block;
// A thread block cluster of a cluster launch (emu::launch_cluster, ov/kernels/cluster.cuh): the
// barrier of cluster_sync over every thread of its blocks, and its blocks by rank (their shared
// memory, for cluster_peer).
struct Cluster {
  Barrier sync;
  std::vector<Block*> blocks;
};

// One block of a running launch: its __syncthreads barrier, its dynamic shared memory and the state
// its warps or warpgroups share (keyed by type, group size and group index).
struct Block {
  unsigned bx = 0, by = 0;
  Barrier sync;
  void* smem = nullptr;
  std::size_t smem_bytes = 0;  // the dynamic shared memory's size (0: none)
  std::map<std::tuple<unsigned, unsigned, unsigned>, std::shared_ptr<void>> groups;
  // Set for the blocks of a launch whose blocks are in flight beside another launch's (a
  // programmatic launch, run_early/finish_flight below): its grid, block size and kernel, restored
  // each time one of its threads resumes; its own static __shared__ objects (shared_obj, ID ->
  // bytes, poisoned) instead of the one per declaration that blocks run one after another share.
  unsigned threads = 0;
  dim3 grid;
  const void* kernel = nullptr;
  bool own_statics = false;
  std::map<int, std::unique_ptr<unsigned char[]>> statics;
  // Programmatic launch (kernels/pdl.cuh): `programmatic` holds the contract (every thread waits;
  // it triggers only after its wait); `early`: a thread's pdl_wait() stops it here (in `parked`)
  // until the launch before has run to its end.
  bool programmatic = false, early = false;
  std::vector<Fiber*>* parked = nullptr;
  // A cluster launch's block: its cluster and its rank there (null: not launched in clusters).
  Cluster* cluster = nullptr;
  unsigned cluster_rank = 0;
};

struct Fiber {
  Context ctx;
  unsigned tid = 0;
  Block* block = nullptr;
  void* stack = nullptr;
  bool done = false;
  bool spinning = false;  // queued by spin_yield (see pick)
  unsigned long long spun_at = 0;  // the scheduler's `runs` when it last looked at its count
  const Barrier* waits_at = nullptr;
  std::vector<std::shared_ptr<void>> locals;  // lane_local slots
  bool waited = false;  // pdl_wait() called (programmatic launches)
};

enum class ThreadOrder { Alternate, Index, Reverse };
inline ThreadOrder g_thread_order = ThreadOrder::Alternate;

// Slow blocks (tests of dependencies between the blocks of one cooperative or cluster launch): a
// block for which it returns true runs only when no other block's thread can, so its work comes as
// late as the launch allows, and a consumer that does not wait for it reads too early. Its argument
// is the block's index along the grid's one dimension (bx + by: the launches it serves are n x 1,
// cooperative, or 1 x n, in clusters). Empty: every thread in queue order, as always.
inline std::function<bool(unsigned bx)> g_slow_block;

// Stacks: 256 KB each with a guard page below (an overflow faults instead of corrupting a
// neighbour), mapped on demand and reused across launches.
constexpr std::size_t kStackBytes = 256 * 1024, kGuardBytes = 4096;
inline thread_local std::size_t g_stacks_mapped = 0;  // (reported when a mapping fails)
inline std::vector<void*>& free_stacks() {
  thread_local std::vector<void*> s;
  return s;
}
inline void* take_stack() {
  auto& s = free_stacks();
  if (!s.empty()) {
    void* p = s.back();
    s.pop_back();
    return p;
  }
  void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "emu: cannot map a fiber stack (%zu in use: %s)\n", g_stacks_mapped, std::strerror(errno));
    std::abort();
  }
  mprotect(p, kGuardBytes, PROT_NONE);
  ++g_stacks_mapped;
  return p;
}

// Called when a launch's blocks have all ended, before run() returns (the bank-conflict model,
// banks.cpp, analyses the shared-memory accesses it recorded there). Null: nothing.
inline void (*g_after_run)() = nullptr;
// The kernel the running launch runs (transform.py passes emu::kernel_key(name); null if unknown).
inline const void* g_launch_kernel = nullptr;

struct Scheduler {
  Context host;
  std::deque<Fiber*> ready;
  Fiber* current = nullptr;
  const std::function<void()>* body = nullptr;
  std::exception_ptr error;
  unsigned long long blocks_run = 0;
  unsigned long long spins_since_progress = 0;  // spin_yield turns since a barrier completed or a thread ended
  unsigned long long spinning = 0;              // fibers in `ready` queued by spin_yield
  unsigned long long runs = 0;                  // picks of a thread that does not spin
};

// The next fiber to run: the front of the queue, unless threads spin or blocks are slow. Then, in
// this order: the first thread of a block that is not slow and does not spin; a spinning thread
// that has not looked at its count since another thread ran (so a waiter sees a count as soon as
// it is reached: a slow block is let through its work one thread's run at a time, and a block that
// waits for too little gets ahead of it); a thread of a slow block; else the front.
inline Fiber* pick(Scheduler& s) {
  auto it = s.ready.begin();
  if (s.spinning || g_slow_block) {
    const auto none = s.ready.end();
    auto fast = none, waiter = none, slow = none;
    for (auto i = s.ready.begin(); i != none && fast == none; ++i) {
      Fiber* f = *i;
      if (f->spinning) {
        if (waiter == none && f->spun_at < s.runs) waiter = i;
      } else if (g_slow_block && g_slow_block(f->block->bx + f->block->by)) {
        if (slow == none) slow = i;
      } else {
        fast = i;
      }
    }
    it = fast != none ? fast : waiter != none ? waiter : slow != none ? slow : s.ready.begin();
  }
  Fiber* f = *it;
  if (it == s.ready.begin())
    s.ready.pop_front();  // (the common case: erase's general path cost 5 % of emu_gpu_tests' time)
  else
    s.ready.erase(it);
  if (f->spinning) {
    f->spinning = false;
    --s.spinning;
  } else {
    ++s.runs;
  }
  return f;
}
inline Scheduler& scheduler() {
  thread_local Scheduler s;
  return s;
}

inline Fiber& current_fiber() {
  Fiber* f = scheduler().current;
  if (!f) {
    std::fprintf(stderr, "emu: a device-side call outside a kernel launch\n");
    std::abort();
  }
  return *f;
}
inline Block& current_block() { return *current_fiber().block; }

// Each time a fiber (re)starts: the emulated runtime's per-thread globals are its own.
inline void on_resume(const Fiber& f) {
  threadIdx = dim3(f.tid);
  blockIdx = dim3(f.block->bx, f.block->by);
  g_emu_dynamic_smem = f.block->smem;
  if (f.block->threads) {  // a launch in flight beside another: its own launch globals
    blockDim = dim3(f.block->threads);
    gridDim = f.block->grid;
    g_launch_kernel = f.block->kernel;
  }
}

inline void fiber_main() {
  Scheduler& s = scheduler();
  Fiber& f = *s.current;
  on_resume(f);
  try {
    (*s.body)();
    if (f.block->programmatic && !f.waited)
      throw std::runtime_error("emu: a thread of a programmatic launch ended without pdl_wait() (kernels/pdl.cuh, rule 2)");
  } catch (...) {
    if (!s.error) s.error = std::current_exception();
  }
  f.done = true;
  s.spins_since_progress = 0;
  switch_to(f.ctx, s.host);  // never resumed
  std::abort();
}

// Back to the scheduler; the fiber resumes when the scheduler picks it from the ready queue.
inline void yield() {
  Scheduler& s = scheduler();
  Fiber& f = *s.current;
  switch_to(f.ctx, s.host);
  on_resume(f);
}

// A thread in a spin-wait (__nanosleep in a wait loop, kernels/dep_wait.cuh): to the back of the
// ready queue, so every other runnable thread runs before it looks again. Spinning with nothing
// else able to run is a wait no thread can end: after kSpinLimit turns without a barrier completing
// or a thread ending, the run stops with a report instead of spinning forever.
constexpr unsigned long long kSpinLimit = 50'000'000ull;
inline void spin_yield() {
  Scheduler& s = scheduler();
  Fiber& f = *s.current;
  if (++s.spins_since_progress > kSpinLimit) {
    std::fprintf(stderr, "emu: deadlock: block (%u,%u) thread %u spins on a count that no thread can reach\n",
                 f.block->bx, f.block->by, f.tid);
    std::abort();
  }
  f.spinning = true;
  f.spun_at = s.runs;
  ++s.spinning;
  s.ready.push_back(&f);
  yield();
}

inline void wait(Barrier& b) {
  Scheduler& s = scheduler();
  Fiber& f = *s.current;
  b.waiting.push_back(&f);
  if (++b.arrived == b.expected) {
    s.spins_since_progress = 0;
    for (Fiber* w : b.waiting) {
      w->waits_at = nullptr;
      s.ready.push_back(w);
    }
    b.waiting.clear();
    b.arrived = 0;
  } else {
    f.waits_at = &b;
  }
  yield();
}

// The state shared by the `size` consecutive threads of the current block that hold this thread
// (a warp: 32, a warpgroup: 128), one per type T: created value-initialised at first use.
inline unsigned next_type_slot() {
  static unsigned n = 0;
  return n++;
}
template <class T>
unsigned type_slot() {
  static const unsigned slot = next_type_slot();
  return slot;
}
template <class T>
T& group_state(unsigned size) {
  Block& b = current_block();
  const auto key = std::make_tuple(type_slot<T>(), size, current_fiber().tid / size);
  auto& slot = b.groups[key];
  if (!slot) slot = std::make_shared<T>();
  return *static_cast<T*>(slot.get());
}

// A barrier of the `size` threads of the current block that hold this thread.
struct GroupBarrier {
  Barrier b;
};
inline void group_wait(unsigned size, const char* what) {
  GroupBarrier& g = group_state<GroupBarrier>(size);
  if (g.b.expected == 0) {
    g.b.expected = size;
    g.b.what = what;
  }
  wait(g.b);
}

// This CUDA thread's own T (one per type), value-initialised at first use: what a thread_local
// was when every CUDA thread was an OS thread.
template <class T>
T& lane_local() {
  const unsigned slot = type_slot<T>();
  auto& v = current_fiber().locals;
  if (v.size() <= slot) v.resize(slot + 1);
  if (!v[slot]) v[slot] = std::make_shared<T>();
  return *static_cast<T*>(v[slot].get());
}

// No thread can run and some have not ended: name the barriers they wait at, then stop.
[[noreturn]] inline void report_deadlock(const char* launch, const std::vector<Fiber>& fibers) {
  std::size_t waiting = 0;
  for (const Fiber& f : fibers) waiting += f.done ? 0 : 1;
  std::fprintf(stderr, "emu: deadlock in %s: %zu of %zu threads wait at a barrier the others never reach\n", launch,
               waiting, fibers.size());
  int shown = 0;
  for (const Fiber& f : fibers)
    if (!f.done && f.waits_at && shown++ < 8)
      std::fprintf(stderr, "emu:   block (%u,%u) thread %u waits at %s (%u of %u arrived)\n", f.block->bx, f.block->by,
                   f.tid, f.waits_at->what, f.waits_at->arrived, f.waits_at->expected);
  std::abort();
}

// Queues one fiber per thread of each of `blocks` (index order or reverse, alternately by block).
inline void start_fibers(Scheduler& s, std::vector<Block>& blocks, std::size_t b0, std::size_t b1, unsigned threads,
                         std::vector<Fiber>& fibers) {
  for (std::size_t b = b0; b < b1; ++b) {
    const bool reverse = g_thread_order == ThreadOrder::Reverse ||
                         (g_thread_order == ThreadOrder::Alternate && (s.blocks_run++ % 2 == 1));
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = reverse ? threads - 1 - i : i;
      Fiber& f = fibers[b * threads + t];
      f.tid = t;
      f.block = &blocks[b];
      f.stack = take_stack();
      make_context(f.ctx, static_cast<char*>(f.stack) + kGuardBytes, kStackBytes, fiber_main);
      s.ready.push_back(&f);
    }
  }
}

// Runs the queued threads until none can run (all ended, or waiting at a barrier, or parked).
inline void drive(Scheduler& s, const std::function<void()>& body) {
  if (s.current) {
    std::fprintf(stderr, "emu: a kernel launch from inside a kernel\n");
    std::abort();
  }
  s.body = &body;
  s.error = nullptr;
  s.spins_since_progress = 0;
  while (!s.ready.empty() && !s.error) {
    Fiber* f = pick(s);
    s.current = f;
    switch_to(s.host, f->ctx);
  }
  s.current = nullptr;
}

// After drive: the model's hook, then every thread must have ended (else the deadlock report); the
// stacks go back; a thread's exception is rethrown.
inline void end_launch(Scheduler& s, std::vector<Fiber>& fibers, const char* launch) {
  if (g_after_run) g_after_run();
  s.ready.clear();
  s.spinning = 0;
  bool all_done = true;
  for (Fiber& f : fibers) all_done = all_done && (f.done || !f.stack);
  for (Fiber& f : fibers)
    if (f.stack) free_stacks().push_back(std::exchange(f.stack, nullptr));
  if (s.error) std::rethrow_exception(std::exchange(s.error, nullptr));
  if (!all_done) report_deadlock(launch, fibers);
}

// Runs `threads` threads of each of `blocks` (concurrently, as one cooperative launch runs its
// blocks; an ordinary launch calls this once per block) until all have ended, each running body.
inline void run(std::vector<Block>& blocks, unsigned threads, const std::function<void()>& body, const char* launch) {
  Scheduler& s = scheduler();
  std::vector<Fiber> fibers(blocks.size() * threads);
  start_fibers(s, blocks, 0, blocks.size(), threads, fibers);
  drive(s, body);
  end_launch(s, fibers, launch);
}

// ---- Programmatic launches (kernels/pdl.cuh; README.md "Programmatic launches") ----
// A launch in flight: its blocks all at once (each with its own shared memory), started by
// run_early and ended by finish_flight, with another launch's run in between.
struct Flight {
  std::vector<Block> blocks;
  std::vector<Fiber> fibers;
  std::vector<Fiber*> parked;  // threads stopped at pdl_wait() in the early run
  std::function<void()> body;  // owns the launch's arguments
  std::shared_ptr<void> memory;  // the blocks' dynamic shared memory (a lease, cooperative_groups.h)
  unsigned threads = 0;
  std::size_t early_blocks = 0;  // blocks [0, early_blocks) run early; the rest at finish_flight
};

// Starts the first early_blocks blocks' threads and runs them until each has ended, reached
// pdl_wait() (parked) or waits at a barrier that a parked thread has still to reach.
inline void run_early(Flight& fl) {
  Scheduler& s = scheduler();
  for (std::size_t b = 0; b < fl.early_blocks; ++b) fl.blocks[b].early = true;
  start_fibers(s, fl.blocks, 0, fl.early_blocks, fl.threads, fl.fibers);
  drive(s, fl.body);
  if (s.error) end_launch(s, fl.fibers, "a programmatic launch (before its pdl_wait)");  // rethrows
}

// The rest of the launch: the parked threads go on to their end; then the blocks not run early,
// one after another (as an ordinary launch's: their stacks go back before the next block starts).
inline void finish_flight(Flight& fl) {
  Scheduler& s = scheduler();
  for (Block& b : fl.blocks) b.early = false;
  for (Fiber* f : fl.parked) s.ready.push_back(f);
  fl.parked.clear();
  drive(s, fl.body);
  end_launch(s, fl.fibers, "a programmatic launch");  // (the fibers not started yet have no stack)
  for (std::size_t b = fl.early_blocks; b < fl.blocks.size(); ++b) {
    start_fibers(s, fl.blocks, b, b + 1, fl.threads, fl.fibers);
    drive(s, fl.body);
    end_launch(s, fl.fibers, "a programmatic launch");
  }
}

// The launch whose early part ran and whose rest waits for the next launch's early part (or for
// anything else that orders after it: flush_pending).
inline std::unique_ptr<Flight>& pending_flight() {
  thread_local std::unique_ptr<Flight> f;
  return f;
}

// Ends the pending launch, if any: called by every emulated runtime call that orders after the
// launches before it (a copy, a set, a synchronisation, an ordinary launch), so the host sees the
// launch complete, as it would on the GPU.
inline void flush_pending() {
  if (scheduler().current) return;  // (inside a kernel: nothing of the host's runs there)
  if (std::unique_ptr<Flight> fl = std::move(pending_flight())) finish_flight(*fl);
}

// pdl_wait(): in a launch's early run, the thread parks until the launch before has ended.
inline void grid_dependency_wait() {
  Fiber& f = current_fiber();
  if (f.waited) return;
  f.waited = true;
  if (f.block->early) {
    f.block->parked->push_back(&f);
    yield();  // (resumed by finish_flight)
  }
}

// pdl_trigger(): rule 2 of kernels/pdl.cuh.
inline void grid_dependency_trigger() {
  if (current_fiber().block->programmatic && !current_fiber().waited)
    throw std::runtime_error("emu: pdl_trigger() before pdl_wait() (kernels/pdl.cuh, rule 2)");
}

}  // namespace emu
