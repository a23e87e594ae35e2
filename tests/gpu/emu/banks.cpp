// The shared-memory bank model of the host emulation: how many shared-memory wavefronts each
// shared load and store of the emulated kernels would take on the device, and how many it would
// take without bank conflicts. run.sh's `banks` part compiles the kernels with GCC's ThreadSanitizer
// instrumentation (-fsanitize=thread, compile only) and links them with this file instead of the
// sanitizer's runtime: every load and store of the kernels calls a __tsan_* hook below, which keeps
// those that fall in shared memory (a static __shared__ object, ov/cuda_runtime.h, or a block's
// dynamic shared memory, ov/cooperative_groups.h) with the instruction that made them (the hook's
// return address) and the CUDA thread. When a launch ends (emu::g_after_run) the accesses of each
// warp are lined up per instruction: the k-th execution of an instruction by each lane of the warp
// is one warp-wide request, as on the device, where a warp's lanes run an instruction together.
//
// The model of a request (the bank rule of Volta to Hopper): shared memory is 32 banks of 4-byte
// words, and a wavefront serves at most one word per bank; lanes reading the same word share it
// (broadcast). A request takes max over banks of (distinct words it touches in that bank)
// wavefronts; without conflicts it would take ceil(distinct words / 32). An 8- or 16-byte access
// touches 2 or 4 consecutive words, so a warp's contiguous float4 load is 4 wavefronts and no
// conflict. What the model leaves out: the device splits some 64/128-bit requests into half- or
// quarter-warp phases, which can cost a wavefront more than the rule where a phase is partly
// broadcast; lanes that diverge at an instruction (counted here by execution index, so a lane that
// skipped an execution shifts the pairing after it); and the host compiler's own choices, which can
// differ from nvcc's (a float4 it copies as four floats shows as four 4-byte requests with a
// stride of 16 bytes: 4 words per bank, reported as a 4-way conflict though the device's LDS.128
// has none; run.sh compiles with -fno-tree-sra, which keeps most vector copies whole).
//
// Report (stdout, at exit, or emu::banks_report()): per kernel (the outermost function of the
// instruction's inline chain) and per source line, requests, wavefronts and the conflict-free
// wavefronts, most excess first.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <stdexcept>
#include <tuple>
#include <string>
#include <unordered_map>
#include <vector>

#include <cuda_runtime.h>

namespace {

struct Access {
  const void* kernel;  // the launch's (emu::g_launch_kernel)
  const void* site;
  const emu::Block* block;
  std::uintptr_t addr;
  unsigned tid;
  unsigned char size;
  bool write;
  bool global;  // device (global) memory, else shared
};

struct SiteStats {
  unsigned long long requests = 0, wavefronts = 0, ideal = 0;
  unsigned size = 0;
  bool write = false;
  bool global = false;
};

std::vector<Access>& log() {
  static std::vector<Access> v;
  return v;
}
// by (kernel, instruction, global)
std::map<std::tuple<const void*, const void*, bool>, SiteStats>& stats() {
  static std::map<std::tuple<const void*, const void*, bool>, SiteStats> m;
  return m;
}
// Blocks of each launch whose accesses are modelled (the first ones by index): the kernels' blocks
// do the same work on other rows, and the model is the slow part of the run. EMU_BANK_BLOCKS.
unsigned blocks_modelled() {
  static const unsigned n = [] {
    const char* e = std::getenv("EMU_BANK_BLOCKS");
    return e ? unsigned(std::strtoul(e, nullptr, 10)) : 4u;
  }();
  return n;
}

// Global accesses modelled too (sectors per request): EMU_BANK_GLOBAL=1 (run.sh --full banks sets
// it). It doubles the run, so the ctest (shared memory against its budgets) leaves it off.
bool global_modelled() {
  static const bool on = [] {
    const char* e = std::getenv("EMU_BANK_GLOBAL");
    return e && std::strcmp(e, "0") != 0;
  }();
  return on;
}

bool in_shared(std::uintptr_t a, const emu::Block& b) {
  const auto s = std::uintptr_t(b.smem);
  if (b.smem_bytes && a >= s && a < s + b.smem_bytes) return true;
  const emu::SharedRanges& r = emu::static_shared_ranges();
  if (a < r.lo || a >= r.hi) return false;
  for (unsigned i = 0; i < r.count; ++i)
    if (a >= r.begin[i] && a < r.end[i]) return true;
  return false;
}

inline void record(const void* site, const void* p, unsigned size, bool write) {
  emu::Fiber* f = emu::scheduler().current;
  if (!f) return;  // host code
  const emu::Block& b = *f->block;
  if (b.by * gridDim.x + b.bx >= blocks_modelled()) return;
  const auto a = std::uintptr_t(p);
  bool global = false;
  if (!in_shared(a, b)) {
    if (!global_modelled()) return;
    const auto stack = std::uintptr_t(f->stack);  // the thread's own locals: registers on the device
    if (a >= stack && a < stack + emu::kStackBytes + emu::kGuardBytes) return;
    global = true;
  }
  log().push_back({emu::g_launch_kernel, site, &b, a, f->tid, static_cast<unsigned char>(size), write, global});
}

// The distinct values of a small list (a request's words, bytes or sectors: 32 lanes of at most 16
// bytes), in place: sorted and unique. (A hash set a request was most of the model's time.)
std::size_t distinct(std::uintptr_t* v, std::size_t n) {
  std::sort(v, v + n);
  return std::size_t(std::unique(v, v + n) - v);
}

// One warp-wide request to global memory: the 32-byte sectors it touches against the fewest its
// distinct bytes could take (what ncu calls sectors per request; L1 and L2 move sectors).
void model_global(const std::vector<const Access*>& lanes, SiteStats& st) {
  std::uintptr_t bytes[32 * 16], sectors[32 * 16];  // 32 lanes of at most 16 bytes
  std::size_t n = 0;
  for (const Access* a : lanes)
    for (std::uintptr_t x = a->addr; x < a->addr + a->size; ++x) {
      if (n == std::size(bytes)) throw std::runtime_error("banks: a request wider than 32 lanes of 16 bytes");
      bytes[n] = x;
      sectors[n++] = x / 32;
    }
  st.requests += 1;
  st.wavefronts += distinct(sectors, n);
  st.ideal += (distinct(bytes, n) + 31) / 32;
}

// One warp-wide request to shared memory: the lanes' accesses of one execution of one instruction.
void model(const std::vector<const Access*>& lanes, SiteStats& st) {
  if (lanes.front()->global) return model_global(lanes, st);
  std::uintptr_t words[32 * 5];  // 32 lanes of at most 16 bytes, 5 words where one is unaligned
  std::size_t n = 0;
  for (const Access* a : lanes)
    for (std::uintptr_t w = a->addr / 4; w <= (a->addr + a->size - 1) / 4; ++w) {
      if (n == std::size(words)) throw std::runtime_error("banks: a request wider than 32 lanes of 16 bytes");
      words[n++] = w;
    }
  n = distinct(words, n);
  unsigned per_bank[32] = {};
  unsigned worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, ++per_bank[words[i] % 32]);
  st.requests += 1;
  st.wavefronts += worst;
  st.ideal += (n + 31) / 32;
}

// A number for each distinct pointer, in order of first appearance.
struct Numbering {
  std::unordered_map<const void*, std::uint64_t> no;
  std::uint64_t operator()(const void* p) {
    const auto it = no.find(p);
    return it != no.end() ? it->second : no.emplace(p, no.size()).first->second;
  }
};

// The bits an unsigned value below n takes.
int bits_for(std::uint64_t n) {
  int b = 0;
  while (b < 64 && (std::uint64_t(1) << b) < n) ++b;
  return b;
}

// A launch's accesses, by block, warp, instruction, global/shared, lane; a lane's executions stay in
// their order. As 64-bit keys (block and instruction numbered in order of first appearance, each
// field as wide as this launch needs, ~24 bits in all) with the access's index, in a stable LSD
// radix sort of two or three passes: a stable sort of the 40-byte records with a five-field
// comparison was a quarter of the model's run time.
void analyse() {
  auto& v = log();
  if (v.empty()) return;
  if (v.size() >= (std::size_t(1) << 32)) throw std::runtime_error("banks: more than 2^32 accesses in one launch");
  struct Sorted {
    std::uint64_t key;
    std::uint32_t index;
  };
  static std::vector<Sorted> order, scratch;  // (kept: their pages are touched once, not every launch)
  order.resize(v.size());
  scratch.resize(v.size());
  Numbering block_no, site_no;
  unsigned warps = 1;
  for (std::size_t i = 0; i < v.size(); ++i) {
    order[i] = {(block_no(v[i].block) << 32) | site_no(v[i].site), std::uint32_t(i)};
    warps = std::max(warps, v[i].tid / 32 + 1);
  }
  const int site_bits = bits_for(site_no.no.size()), warp_bits = bits_for(warps),
            block_bits = bits_for(block_no.no.size());
  const int used = 5 + 1 + site_bits + warp_bits + block_bits;  // lane, global, site, warp, block (low to high)
  if (used > 64) throw std::runtime_error("banks: a launch with more blocks, instructions or threads than a key holds");
  for (Sorted& x : order) {
    const Access& a = v[x.index];
    const std::uint64_t blk = x.key >> 32, site = x.key & 0xffffffffu;
    x.key = (((blk << warp_bits | a.tid / 32) << site_bits | site) << 1 | std::uint64_t(a.global)) << 5 | (a.tid % 32);
  }
  constexpr int kDigit = 12;
  std::vector<std::size_t> start((std::size_t(1) << kDigit) + 1);
  for (int shift = 0; shift < used; shift += kDigit) {
    const std::uint64_t mask = (std::uint64_t(1) << kDigit) - 1;
    std::fill(start.begin(), start.end(), 0);
    for (const Sorted& x : order) ++start[((x.key >> shift) & mask) + 1];
    for (std::size_t d = 1; d < start.size(); ++d) start[d] += start[d - 1];
    for (const Sorted& x : order) scratch[start[(x.key >> shift) & mask]++] = x;
    order.swap(scratch);
  }
  std::vector<std::vector<const Access*>> per_lane(32);
  std::vector<const Access*> request;
  for (std::size_t i = 0; i < order.size();) {
    const std::uint64_t group = order[i].key >> 5;  // all but the lane
    std::size_t j = i;
    for (auto& l : per_lane) l.clear();
    std::size_t most = 0;
    for (; j < order.size() && (order[j].key >> 5) == group; ++j) {
      auto& l = per_lane[order[j].key & 31];
      l.push_back(&v[order[j].index]);
      most = std::max(most, l.size());
    }
    const Access& first = v[order[i].index];
    SiteStats& st = stats()[{first.kernel, first.site, first.global}];
    st.size = first.size;
    st.write = first.write;
    st.global = first.global;
    for (std::size_t e = 0; e < most; ++e) {
      request.clear();
      for (auto& l : per_lane)
        if (e < l.size()) request.push_back(l[e]);
      model(request, st);
    }
    i = j;
  }
  v.clear();
}

struct Line {
  std::string kernel, function, where;
};

// A demangled name made short: no return type, namespaces, parameter list or enum casts.
std::string short_name(std::string n) {
  for (const char* drop : {"(anonymous namespace)::", "mnist::cuda::", "dense_impl::", "mnist::", "std::"}) {
    for (std::size_t p; (p = n.find(drop)) != std::string::npos;) n.erase(p, std::strlen(drop));
  }
  for (const auto& [from, to] : {std::pair<const char*, const char*>{"(GemmPrecision)0", "FP32"},
                                 {"(GemmPrecision)1", "TF32"}, {"(GemmPrecision)2", "BF16"}}) {
    for (std::size_t p; (p = n.find(from)) != std::string::npos;) n.replace(p, std::strlen(from), to);
  }
  // cut at the parameter list: the last '(' outside template arguments and lambda names
  // ("X::{lambda(int)#1}::operator()(int) const")
  int depth = 0;
  std::size_t cut = std::string::npos;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (n[i] == '<' || n[i] == '{') ++depth;
    if (n[i] == '>' || n[i] == '}') --depth;
    if (n[i] == '(' && depth == 0 && i > 0 && n[i - 1] != '(' && n.compare(i > 8 ? i - 8 : 0, 8, "operator") != 0)
      cut = i;
  }
  if (cut != std::string::npos) n.resize(cut);
  const auto space = n.find(' ');
  if (space != std::string::npos && space < n.find('<')) n.erase(0, space + 1);  // "void f<...>"
  return n;
}

// addr2line's lines for many addresses of this program at once: for want[i], pairs of function and
// file:line, innermost first (-i). One addr2line a binary for all of them (-a prints each address
// before its lines): it reads the binary's debug information once, where one process an address
// read it for every site (≈ 140 s of the ci set's report, 2026-11-28). The address of an instruction
// (a hook's return address) is looked up one byte back, in the call instruction; a kernel's entry as is.
struct Lookup {
  const void* a;
  bool call_site;
};
std::vector<std::vector<std::string>> addr2line(const std::vector<Lookup>& want) {
  std::vector<std::vector<std::string>> out(want.size());
  std::map<std::string, std::vector<std::size_t>> by_file;  // binary: the lookups in it, in order
  std::vector<unsigned long> offset(want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    Dl_info info{};
    if (!want[i].a || !dladdr(want[i].a, &info) || !info.dli_fname) continue;
    offset[i] = static_cast<unsigned long>(std::uintptr_t(want[i].a) - (want[i].call_site ? 1 : 0) -
                                           std::uintptr_t(info.dli_fbase));
    by_file[info.dli_fname].push_back(i);
  }
  for (const auto& [file, lookups] : by_file) {
    char list[] = "/tmp/emu_banks_addrXXXXXX";
    const int fd = mkstemp(list);
    if (fd < 0) continue;
    FILE* f = fdopen(fd, "w");
    for (const std::size_t i : lookups) std::fprintf(f, "0x%lx\n", offset[i]);
    std::fclose(f);
    FILE* p = popen(("addr2line -a -C -f -i -e '" + file + "' < " + list).c_str(), "r");
    std::size_t k = 0;  // the lookups whose address line has been read
    char buf[8192];
    while (p && std::fgets(buf, sizeof buf, p)) {
      std::string l(buf);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (l.rfind("0x", 0) == 0)  // the next address (function names never start so)
        ++k;
      else if (k >= 1 && k <= lookups.size())
        out[lookups[k - 1]].push_back(l);
    }
    if (p) pclose(p);
    std::remove(list);
  }
  return out;
}

// The kernel's name (from the lines of its entry address), and for an instruction the innermost
// function and its source line.
std::string kernel_name(const std::vector<std::string>& lines) {
  return lines.empty() ? std::string("?") : short_name(lines[0]);
}
Line site_line(const std::vector<std::string>& lines) {
  Line r{"", "?", "?"};
  if (lines.size() < 2) return r;
  r.function = short_name(lines[0]);
  r.where = lines[1];
  for (const char* root : {"/tests/", "/kernels/", "/layers/"}) {  // (the models: tests/gpu/emu/ov/kernels)
    const auto at = r.where.find(root);
    if (at != std::string::npos) {
      r.where = r.where.substr(at + 1);
      break;
    }
  }
  const auto disc = r.where.find(" (discriminator");
  if (disc != std::string::npos) r.where.resize(disc);
  return r;
}

}  // namespace

namespace emu {

// Per kernel (the report's names): the wavefronts the model counted and the conflict-free count.
std::map<std::string, std::pair<unsigned long long, unsigned long long>> g_bank_kernels;

// Prints the model's totals and lines, most excess first, `top` lines at most: shared memory
// (wavefronts against conflict-free) and global memory (sectors against the fewest for the bytes;
// lines of kernels/ and layers/ only: the emulator's models keep their state in host memory).
// Fills g_bank_kernels (shared).
void banks_report(std::FILE* to, std::size_t top) {
  analyse();
  std::map<const void*, std::string> kernel_names;
  std::map<const void*, Line> lines;
  {
    std::vector<Lookup> want;
    for (const auto& [key, st] : stats()) {
      if (kernel_names.emplace(std::get<0>(key), "").second) want.push_back({std::get<0>(key), false});
      if (lines.emplace(std::get<1>(key), Line{}).second) want.push_back({std::get<1>(key), true});
    }
    const auto found = addr2line(want);
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (want[i].call_site)
        lines[want[i].a] = site_line(found[i]);
      else
        kernel_names[want[i].a] = kernel_name(found[i]);
    }
  }
  struct Row {
    std::string kernel, function, where;
    SiteStats st;
  };
  for (const bool global : {false, true}) {
    std::map<std::string, Row> rows;  // the sites of one line and access (unrolled copies) added up
    for (const auto& [key, st] : stats()) {
      if (std::get<2>(key) != global) continue;
      Line l = lines[std::get<1>(key)];
      // (global: the product's code only; the models' own state, per-lane and per-warp scratch, is
      // host memory too)
      if (global && l.where.rfind("kernels/", 0) != 0 && l.where.rfind("layers/", 0) != 0) continue;
      l.kernel = kernel_names[std::get<0>(key)];
      const std::string what = l.where + (st.write ? "  st." : "  ld.") + std::to_string(st.size * 8);
      Row& r = rows[l.kernel + "|" + l.function + "|" + what];
      r.kernel = l.kernel;
      r.function = l.function;
      r.where = what;
      r.st.requests += st.requests;
      r.st.wavefronts += st.wavefronts;
      r.st.ideal += st.ideal;
    }
    std::vector<Row> sorted;
    std::map<std::string, SiteStats> kernels;
    for (const auto& [k, r] : rows) {
      sorted.push_back(r);
      SiteStats& t = kernels[r.kernel];
      t.requests += r.st.requests;
      t.wavefronts += r.st.wavefronts;
      t.ideal += r.st.ideal;
    }
    if (!global)
      for (const auto& [k, t] : kernels) g_bank_kernels[k] = {t.wavefronts, t.ideal};
    std::sort(sorted.begin(), sorted.end(), [](const Row& a, const Row& b) {
      return a.st.wavefronts - a.st.ideal > b.st.wavefronts - b.st.ideal;
    });
    if (global && !global_modelled()) break;
    const char* what = global ? "global sectors" : "shared wavefronts";
    std::fprintf(to, "%s, per kernel: requests, %s, the fewest possible, excess\n", what, what);
    for (const auto& [k, t] : kernels)
      std::fprintf(to, "  %-64s %10llu %10llu %10llu %7.1f%%\n", k.c_str(), t.requests, t.wavefronts, t.ideal,
                   t.ideal ? 100.0 * double(t.wavefronts - t.ideal) / double(t.ideal) : 0.0);
    std::fprintf(to, "%s, per source line, most excess first: requests, %s and the fewest per request\n", what, what);
    std::size_t n = 0;
    for (const Row& r : sorted) {
      if (n++ == top || r.st.wavefronts == r.st.ideal) break;
      std::fprintf(to, "  %-40s %-24s %-34s %9llu %6.2f %5.2f\n", r.kernel.substr(0, 40).c_str(),
                   r.function.substr(0, 24).c_str(), r.where.c_str(), r.st.requests,
                   double(r.st.wavefronts) / double(r.st.requests), double(r.st.ideal) / double(r.st.requests));
    }
  }
}

}  // namespace emu

// The instrumentation's entry points (GCC 12, -fsanitize=thread). Loads and stores are recorded;
// atomics do what they say, sequentially consistent whatever order is asked; the rest do nothing.
extern "C" {
void __tsan_init() { emu::g_after_run = analyse; }
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
#define EMU_TSAN_ACCESS(n)                                                                                \
  void __tsan_read##n(void* p) { record(__builtin_return_address(0), p, n, false); }                    \
  void __tsan_write##n(void* p) { record(__builtin_return_address(0), p, n, true); }                    \
  void __tsan_unaligned_read##n(void* p) { record(__builtin_return_address(0), p, n, false); }          \
  void __tsan_unaligned_write##n(void* p) { record(__builtin_return_address(0), p, n, true); }          \
  void __tsan_volatile_read##n(void* p) { record(__builtin_return_address(0), p, n, false); }           \
  void __tsan_volatile_write##n(void* p) { record(__builtin_return_address(0), p, n, true); }           \
  void __tsan_unaligned_volatile_read##n(void* p) { record(__builtin_return_address(0), p, n, false); } \
  void __tsan_unaligned_volatile_write##n(void* p) { record(__builtin_return_address(0), p, n, true); }
EMU_TSAN_ACCESS(1)
EMU_TSAN_ACCESS(2)
EMU_TSAN_ACCESS(4)
EMU_TSAN_ACCESS(8)
EMU_TSAN_ACCESS(16)
void __tsan_read_range(void*, unsigned long) {}
void __tsan_write_range(void*, unsigned long) {}
#define EMU_TSAN_ATOMIC(n, T)                                                                                 \
  T __tsan_atomic##n##_load(const volatile T* p, int) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }      \
  void __tsan_atomic##n##_store(volatile T* p, T v, int) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }      \
  T __tsan_atomic##n##_exchange(volatile T* p, T v, int) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##n##_fetch_add(volatile T* p, T v, int) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##n##_fetch_sub(volatile T* p, T v, int) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##n##_fetch_and(volatile T* p, T v, int) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##n##_fetch_or(volatile T* p, T v, int) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }   \
  T __tsan_atomic##n##_fetch_xor(volatile T* p, T v, int) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##n##_fetch_nand(volatile T* p, T v, int) { return __atomic_fetch_nand(p, v, __ATOMIC_SEQ_CST); } \
  int __tsan_atomic##n##_compare_exchange_strong(volatile T* p, T* e, T v, int, int) {                      \
    return __atomic_compare_exchange_n(p, e, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
  }                                                                                                         \
  int __tsan_atomic##n##_compare_exchange_weak(volatile T* p, T* e, T v, int, int) {                        \
    return __atomic_compare_exchange_n(p, e, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
  }                                                                                                         \
  T __tsan_atomic##n##_compare_exchange_val(volatile T* p, T e, T v, int, int) {                            \
    __atomic_compare_exchange_n(p, &e, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                       \
    return e;                                                                                               \
  }
EMU_TSAN_ATOMIC(8, unsigned char)
EMU_TSAN_ATOMIC(16, unsigned short)
EMU_TSAN_ATOMIC(32, unsigned)
EMU_TSAN_ATOMIC(64, unsigned long long)
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
}
