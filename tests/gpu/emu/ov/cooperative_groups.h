// Host emulation of cooperative launches (kernels/fused_step.cu): cudaLaunchCooperativeKernel
// runs ALL blocks' threads at once (one fiber per CUDA thread, emu_fiber.h), each block with its own
// __syncthreads barrier and its own dynamic shared memory (poisoned with 0xFF bytes, NaN as float,
// so a read before a write shows; its end, rounded up to 16 bytes, is the start of an inaccessible
// page, so a read or write past the size the launch asked for stops the run with SIGSEGV, where the
// device would read another block's memory or fault), and cooperative_groups::this_grid().sync() is a barrier over
// every thread of the grid, as on the GPU where all blocks are co-resident. The device has
// g_emu_sm_count SMs, each holding one block of any size: a grid larger than that is refused, as
// cudaErrorCooperativeLaunchTooLarge. Also the occupancy and attribute queries the launcher uses,
// and ordinary launches with dynamic shared memory (emu::launch_dynamic).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

inline int g_emu_sm_count = 2;           // tests set it to vary the cooperative grid
inline int g_emu_cooperative_launches = 0;
inline long long g_emu_programmatic_launches = 0;  // launches run as programmatic (launch_programmatic)
inline emu::Barrier* g_emu_grid_barrier = nullptr;

namespace emu {
template <class T>
T* dynamic_shared() {
  return static_cast<T*>(g_emu_dynamic_smem);
}

// Runs blocks [b0, b1) of the grid concurrently, each with its own barrier and shared memory.
// A block's memory: whole pages, then one inaccessible guard page. Mapped once per size and reused
// by later launches (a launch of many blocks had mapped and unmapped each block's memory).
struct BlockMemory {
  void* base = MAP_FAILED;
  std::size_t pages = 0;  // bytes before the guard page
  BlockMemory() = default;
  explicit BlockMemory(std::size_t bytes_before_guard) : pages(bytes_before_guard) {
    const std::size_t page = std::size_t(sysconf(_SC_PAGESIZE));
    base = mmap(nullptr, pages + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(static_cast<char*>(base) + pages, page, PROT_NONE) != 0)
      throw std::runtime_error("emu: cannot map a block's shared memory");
  }
  BlockMemory(BlockMemory&& o) noexcept : base(std::exchange(o.base, MAP_FAILED)), pages(o.pages) {}
  BlockMemory& operator=(BlockMemory&& o) noexcept {
    std::swap(base, o.base);
    std::swap(pages, o.pages);
    return *this;
  }
  ~BlockMemory() {
    if (base != MAP_FAILED) munmap(base, pages + std::size_t(sysconf(_SC_PAGESIZE)));
  }
};
inline std::multimap<std::size_t, BlockMemory>& free_block_memory() {
  thread_local std::multimap<std::size_t, BlockMemory> m;
  return m;
}

// The blocks' shared memory of one launch, taken from the pool and given back when the lease ends
// (also when the launch throws). A block's bytes end where its guard page begins (16-byte aligned
// start: what every tile asks of it), poisoned with 0xFF at every launch.
struct BlockMemoryLease {
  std::vector<BlockMemory> mem;
  BlockMemoryLease() = default;
  BlockMemoryLease(const BlockMemoryLease&) = delete;
  BlockMemoryLease& operator=(const BlockMemoryLease&) = delete;
  ~BlockMemoryLease() {
    for (BlockMemory& m : mem) {
      const std::size_t key = m.pages;
      free_block_memory().emplace(key, std::move(m));
    }
  }
  // One block's smem bytes, poisoned; Block::smem and smem_bytes set.
  void take(Block& b, std::size_t smem) {
    const std::size_t page = std::size_t(sysconf(_SC_PAGESIZE));
    const std::size_t used = (smem + 15) / 16 * 16;
    const std::size_t pages = (used + page - 1) / page * page;
    auto& pool = free_block_memory();
    const auto it = pool.find(pages);
    if (it != pool.end()) {
      mem.push_back(std::move(it->second));
      pool.erase(it);
    } else {
      mem.emplace_back(pages);
    }
    b.smem = static_cast<char*>(mem.back().base) + pages - used;
    b.smem_bytes = smem;
    std::memset(b.smem, 0xFF, used);
  }
};

inline void run_blocks(unsigned b0, unsigned b1, unsigned threads, std::size_t smem, const std::function<void()>& body) {
  const unsigned nb = b1 - b0;
  std::vector<Block> blocks(nb);
  BlockMemoryLease lease;
  for (unsigned b = 0; b < nb; ++b) {
    blocks[b].bx = (b0 + b) % gridDim.x;
    blocks[b].by = (b0 + b) / gridDim.x;
    blocks[b].sync.expected = threads;
    blocks[b].sync.what = "__syncthreads";
    // (a cooperative launch's blocks run at once: each its own static __shared__ objects, poisoned,
    // as a programmatic or cluster launch's; one at a time they may share the process's)
    blocks[b].own_statics = nb > 1;
    lease.take(blocks[b], smem);
  }
  run(blocks, threads, body, nb > 1 ? "a cooperative launch" : "a launch with dynamic shared memory");
}

inline void launch_cooperative(dim3 grid, unsigned threads, std::size_t smem, const std::function<void()>& body,
                               const void* kernel = nullptr) {
  if (grid.x == 0 || grid.y != 1 || grid.z != 1 || threads == 0 || threads > 1024)
    throw std::runtime_error("bad cooperative launch config");
  if (int(grid.x) > g_emu_sm_count) throw std::runtime_error("cooperative launch too large");
  begin_launch(grid, threads, kernel);
  ++g_emu_cooperative_launches;
  Barrier grid_barrier;
  grid_barrier.expected = grid.x * threads;
  grid_barrier.what = "this_grid().sync()";
  g_emu_grid_barrier = &grid_barrier;
  try {
    run_blocks(0, grid.x, threads, smem, body);
  } catch (...) {
    g_emu_grid_barrier = nullptr;
    throw;
  }
  g_emu_grid_barrier = nullptr;
}

// The dynamic shared memory each kernel was allowed by cudaFuncSetAttribute (default 48 KB).
inline std::map<const void*, int>& max_dynamic_smem() {
  static std::map<const void*, int> m;
  return m;
}

// The launch checks the device makes: the block size, a 1D or 2D grid, and dynamic shared memory
// above 48 KB only where cudaFuncSetAttribute allowed it (227 KB at most).
inline void check_dynamic_launch(dim3 grid, unsigned threads, std::size_t smem, const void* kernel) {
  const auto allowed = max_dynamic_smem().find(kernel);
  if (smem > 48 * 1024 && (allowed == max_dynamic_smem().end() || std::size_t(allowed->second) < smem))
    throw std::runtime_error("launch with more than 48 KB of dynamic shared memory, not allowed by cudaFuncSetAttribute");
  if (grid.x == 0 || grid.y == 0 || grid.z != 1 || threads == 0 || threads > 1024)
    throw std::runtime_error("bad launch config");
  if (smem > 227 * 1024) throw std::runtime_error("dynamic shared memory above the device's 227 KB");
}

// An ordinary launch with dynamic shared memory (transform.py emits it for `<<<g, b, smem, s>>>` in
// a file that uses `extern __shared__`): blocks one after another, as emu::launch (in the order
// emu::g_block_order says), over a 1D or 2D grid, each block's shared memory poisoned as above. As
// on the GPU, more than 48 KB fails unless cudaFuncSetAttribute(kernel,
// cudaFuncAttributeMaxDynamicSharedMemorySize, >= smem) came first.
inline void launch_dynamic(dim3 grid, unsigned threads, std::size_t smem, const void* kernel,
                           const std::function<void()>& body) {
  check_dynamic_launch(grid, threads, smem, kernel);
  begin_launch(grid, threads, kernel);
  for (const dim3 blk : block_sequence(grid))
    run_blocks(blk.y * grid.x + blk.x, blk.y * grid.x + blk.x + 1, threads, smem, body);
}

// ---- Cluster launches (kernels/pdl.cuh's launch_kernel_in_clusters; kernels/cluster.cuh) ----
// Clusters of cluster_y consecutive blocks along y, one cluster after another (in the order
// g_block_order gives the grid of clusters), the blocks of a cluster all at once as a cooperative
// launch's: each with its own __syncthreads barrier, static and dynamic shared memory (poisoned),
// and cluster_sync a barrier over every thread of the cluster. A launch in clusters is ordinary
// (the launch before it has ended, none runs beside it) also inside a ProgrammaticLaunches scope:
// the early start is modelled for launch_kernel's launches only. g_emu_clusters = false: a device
// that launches no clusters (cluster_capacity 0, cudaDevAttrClusterLaunch 0).
inline bool g_emu_clusters = true;
// The kernels given allow_nonportable_clusters (ov/kernels/pdl.cuh): clusters of up to 16 blocks.
inline std::set<const void*> g_emu_nonportable;
inline long long g_emu_cluster_launches = 0;

inline void launch_cluster(dim3 grid, unsigned cluster_y, unsigned threads, std::size_t smem, const void* kernel,
                           const std::function<void()>& body) {
  check_dynamic_launch(grid, threads, smem, kernel);
  if (!g_emu_clusters) throw std::runtime_error("emu: a cluster launch on a device without clusters");
  const unsigned most = g_emu_nonportable.count(kernel) ? 16u : 8u;  // (allow_nonportable_clusters)
  if (cluster_y == 0 || cluster_y > most || grid.y % cluster_y != 0)
    throw std::runtime_error("emu: clusters of more than 8 blocks (16 for a kernel allowed the non-portable sizes), "
                             "or a grid.y that is not a multiple of the cluster's");
  begin_launch(grid, threads, kernel);
  ++g_emu_cluster_launches;
  for (const dim3 c : block_sequence(dim3(grid.x, grid.y / cluster_y))) {
    std::vector<Block> blocks(cluster_y);
    BlockMemoryLease lease;
    Cluster cluster;
    cluster.sync.expected = cluster_y * threads;
    cluster.sync.what = "cluster_sync()";
    for (unsigned r = 0; r < cluster_y; ++r) {
      Block& b = blocks[r];
      b.bx = c.x;
      b.by = c.y * cluster_y + r;
      b.sync.expected = threads;
      b.sync.what = "__syncthreads";
      b.own_statics = true;
      b.cluster = &cluster;
      b.cluster_rank = r;
      lease.take(b, smem);
      cluster.blocks.push_back(&b);
    }
    run(blocks, threads, body, "a cluster launch");
  }
}

// ---- Programmatic launches (kernels/pdl.cuh's launch_kernel inside a ProgrammaticLaunches scope) ----
// The order modelled is the earliest the device allows under the contract of kernels/pdl.cuh: the
// launch's threads run up to their pdl_wait() BEFORE the rest of the launch before it (that one
// may have triggered at its own wait), and their rest only after that launch's end. So a read
// before pdl_wait() of what the previous launch writes sees the value before it (or the poison of
// a fresh buffer), and a write there is overwritten or seen by that launch: the results differ from
// the ordinary launches' and the tests that compare them fail. A thread that ends without
// pdl_wait(), or triggers before it, stops the run (rules 1 and 2).
// All blocks are in flight at once (own shared memory, static and dynamic); a grid of more than
// kEarlyThreads threads runs kEarlyThreads / threads blocks early, spread evenly over the grid (in
// g_block_order: a 428-block optimizer launch runs every 14th block early, so the blocks that hold
// the tail's elements are among them), and the others after: two launches in flight (the pending
// one and the next one's early part) stay within the process's 65,530 mappings (a fiber stack is
// two; a 428-block optimizer launch alone would be 219,000).
// g_programmatic_early = false (the bank model, which pairs a warp's accesses per launch) runs
// each launch to its end at once, ordinary launch semantics.
constexpr std::size_t kEarlyThreads = 8192;
inline bool g_programmatic_early = true;

inline void launch_programmatic(dim3 grid, unsigned threads, std::size_t smem, const void* kernel,
                                std::function<void()> body) {
  check_dynamic_launch(grid, threads, smem, kernel);
  if (!g_programmatic_early) {
    launch_dynamic(grid, threads, smem, kernel, body);
    return;
  }
  ++g_emu_launches;
  ++g_emu_programmatic_launches;
  auto fl = std::make_unique<Flight>();
  fl->body = std::move(body);
  fl->threads = threads;
  std::vector<dim3> order = block_sequence(grid);
  fl->blocks.resize(order.size());
  fl->fibers.resize(order.size() * threads);
  fl->early_blocks = std::max<std::size_t>(1, std::min(order.size(), kEarlyThreads / threads));
  if (fl->early_blocks < order.size()) {  // the early blocks spread over the grid (the rest after them)
    std::vector<dim3> spread, rest;
    std::size_t next = 0, taken = 0;
    for (std::size_t b = 0; b < order.size(); ++b) {
      if (b == next && taken < fl->early_blocks) {
        spread.push_back(order[b]);
        next = ++taken * order.size() / fl->early_blocks;
      } else {
        rest.push_back(order[b]);
      }
    }
    spread.insert(spread.end(), rest.begin(), rest.end());
    order = std::move(spread);
  }
  auto lease = std::make_shared<BlockMemoryLease>();  // (each block's, as launch_dynamic's)
  for (std::size_t b = 0; b < order.size(); ++b) {
    Block& blk = fl->blocks[b];
    blk.bx = order[b].x;
    blk.by = order[b].y;
    blk.sync.expected = threads;
    blk.sync.what = "__syncthreads";
    blk.threads = threads;
    blk.grid = grid;
    blk.kernel = kernel;
    blk.own_statics = true;
    blk.programmatic = true;
    blk.parked = &fl->parked;
    lease->take(blk, smem);
  }
  fl->memory = lease;
  run_early(*fl);    // this launch up to its waits ...
  flush_pending();   // ... then the rest of the launch before it ...
  pending_flight() = std::move(fl);  // ... and its own rest when the next launch has run early
}

template <class... A, std::size_t... I>
void call_with_args(void (*f)(A...), void** args, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}
}  // namespace emu

namespace cooperative_groups {
struct grid_group {
  void sync() const { emu::wait(*g_emu_grid_barrier); }
};
inline grid_group this_grid() { return {}; }
}  // namespace cooperative_groups

enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrCooperativeLaunch = 95, cudaDevAttrClusterLaunch = 120 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? g_emu_sm_count : a == cudaDevAttrClusterLaunch ? int(emu::g_emu_clusters) : 1;
  return cudaSuccess;
}
template <class F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute, int bytes) {
  if (bytes > 227 * 1024) return cudaErrorUnknown;
  emu::max_dynamic_smem()[reinterpret_cast<const void*>(kernel)] = bytes;
  return cudaSuccess;
}
template <class F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F*, int threads, std::size_t smem) {
  *blocks = threads <= 1024 && smem <= 227 * 1024 ? 1 : 0;
  return cudaSuccess;
}
template <class... A>
cudaError_t cudaLaunchCooperativeKernel(void (*f)(A...), dim3 grid, dim3 block, void** args, std::size_t smem,
                                        cudaStream_t) {
  if (block.y != 1 || block.z != 1) return cudaErrorUnknown;
  emu::launch_cooperative(grid, block.x, smem, [&] { emu::call_with_args(f, args, std::index_sequence_for<A...>{}); },
                          emu::kernel_key(f));
  return cudaSuccess;
}
