#include "kernels/autotune.cuh"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>

#include "kernels/precision.hpp"
#include "runtime/cuda_check.cuh"
#include "runtime/device_buffer.cuh"
#include "runtime/error.hpp"
#include "runtime/launch_check.cuh"
#include "runtime/stream.cuh"

namespace mnist::cuda::autotune {
namespace {

TestHooks g_hooks;

// Step 1's comparison, on the device (no copy of the outputs to the host): over every element i
// whose reference r is finite, the largest |r| (scale), the largest |c - r| with its index, and the
// first index where c is not finite. Keys pack (float bits of a non-negative value) << 32 | index,
// so that one 64-bit atomicMax keeps the largest difference with its index (the bits of a
// non-negative float order as the value does). Indices are < 2^32 (outputs of a GEMM).
struct Agreement {
  unsigned long long scale = 0;  // float bits of max |r| (low 32 bits)
  unsigned long long worst = 0;  // (bits of max |c - r|) << 32 | its index
  unsigned long long bad = ~0ull;  // first index with c non-finite where r is finite
};

constexpr int kCompareThreads = 256;

__device__ __forceinline__ unsigned long long larger(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
__device__ __forceinline__ unsigned long long smaller(unsigned long long a, unsigned long long b) { return a < b ? a : b; }

__global__ void __launch_bounds__(kCompareThreads)
agreement_kernel(const float* __restrict__ r, const float* __restrict__ c, std::size_t n, std::size_t base,
                 Agreement* out) {
  __shared__ unsigned long long scale_s[kCompareThreads];
  __shared__ unsigned long long worst_s[kCompareThreads];
  __shared__ unsigned long long bad_s[kCompareThreads];
  unsigned long long scale = 0, worst = 0, bad = ~0ull;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const float ri = r[i], ci = c[i];
    if (!isfinite(ri)) continue;
    scale = larger(scale, float_bits(fabsf(ri)));
    if (!isfinite(ci)) {
      bad = smaller(bad, base + i);
      continue;
    }
    worst = larger(worst, (unsigned long long)float_bits(fabsf(ci - ri)) << 32 | (base + i));
  }
  scale_s[threadIdx.x] = scale, worst_s[threadIdx.x] = worst, bad_s[threadIdx.x] = bad;
  __syncthreads();
  for (int half = kCompareThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) {
      scale_s[threadIdx.x] = larger(scale_s[threadIdx.x], scale_s[threadIdx.x + half]);
      worst_s[threadIdx.x] = larger(worst_s[threadIdx.x], worst_s[threadIdx.x + half]);
      bad_s[threadIdx.x] = smaller(bad_s[threadIdx.x], bad_s[threadIdx.x + half]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    atomicMax(&out->scale, scale_s[0]);
    atomicMax(&out->worst, worst_s[0]);
    atomicMin(&out->bad, bad_s[0]);
  }
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The reference outputs (a device copy of candidate 0's) and the comparison of a candidate's.
class Reference {
 public:
  Reference(const std::vector<Output>& outputs, cudaStream_t stream) : outputs_(outputs), stream_(stream) {
    std::size_t total = 0;
    for (const Output& o : outputs) total += o.count;
    copy_.resize(std::max<std::size_t>(total, 1));
    std::size_t at = 0;
    for (const Output& o : outputs) {
      if (o.count)
        CUDA_CHECK(cudaMemcpyAsync(copy_.data() + at, o.data, o.count * sizeof(float), cudaMemcpyDeviceToDevice, stream));
      at += o.count;
    }
    result_.resize(1);
  }

  // Why the outputs now on the device disagree with the reference ("" when they agree).
  std::string disagreement() {
    const Agreement a = compare();
    const double scale = from_bits(uint32_t(a.scale));
    if (a.bad != ~0ull) return cat("output ", a.bad, " is ", value(a.bad, false), " where the reference has ", value(a.bad, true));
    const double worst = from_bits(uint32_t(a.worst >> 32));
    if (worst > kAgreement * scale)
      return cat("output ", a.worst & 0xFFFFFFFFull, " differs by ", worst, " (", worst / std::max(scale, 1e-30),
                 " of the largest reference magnitude ", scale, ")");
    return {};
  }

  // The outputs, flattened, on the host (the corrupt hook), and back onto the device.
  std::vector<float> download() {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<float> host;
    for (const Output& o : outputs_) {
      const std::size_t at = host.size();
      host.resize(at + o.count);
      if (o.count) CUDA_CHECK(cudaMemcpy(host.data() + at, o.data, o.count * sizeof(float), cudaMemcpyDeviceToHost));
    }
    return host;
  }
  void upload(const std::vector<float>& host) {
    std::size_t at = 0;
    for (const Output& o : outputs_) {
      if (o.count)
        CUDA_CHECK(cudaMemcpy(const_cast<float*>(o.data), host.data() + at, o.count * sizeof(float), cudaMemcpyHostToDevice));
      at += o.count;
    }
  }

 private:
  Agreement compare() {
    Agreement init;
    CUDA_CHECK(cudaMemcpyAsync(result_.data(), &init, sizeof init, cudaMemcpyHostToDevice, stream_));
    std::size_t at = 0;
    for (const Output& o : outputs_) {
      if (o.count) {
        const unsigned blocks = unsigned(std::min<std::size_t>((o.count + kCompareThreads - 1) / kCompareThreads, 64));
        agreement_kernel<<<blocks, kCompareThreads, 0, stream_>>>(copy_.data() + at, o.data, o.count, at, result_.data());
        MNIST_LAUNCH_CHECK(stream_);
      }
      at += o.count;
    }
    Agreement a;
    CUDA_CHECK(cudaMemcpyAsync(&a, result_.data(), sizeof a, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return a;
  }
  // Element i of the flattened outputs (reference: of the copy), read back alone.
  float value(unsigned long long i, bool reference) {
    std::size_t at = 0;
    for (const Output& o : outputs_) {
      if (i < at + o.count) {
        float v = 0;
        const float* p = reference ? copy_.data() + i : o.data + (i - at);
        CUDA_CHECK(cudaMemcpy(&v, p, sizeof v, cudaMemcpyDeviceToHost));
        return v;
      }
      at += o.count;
    }
    return 0;
  }

  std::vector<Output> outputs_;
  cudaStream_t stream_;
  DeviceBuffer<float> copy_;
  DeviceBuffer<Agreement> result_;
};

// Median µs per launch of c: kReps rounds of kLaunches back-to-back launches between two events.
double time_us(const Candidate& c, cudaStream_t stream) {
  if (g_hooks.time_us) return g_hooks.time_us(c.label);
  Event start, stop;
  std::vector<double> us;
  for (int r = 0; r < kReps; ++r) {
    start.record(stream);
    for (int i = 0; i < kLaunches; ++i) c.launch();
    stop.record(stream);
    stop.synchronize();
    us.push_back(1000.0 * double(Event::elapsed_ms(start, stop)) / kLaunches);
  }
  std::nth_element(us.begin(), us.begin() + kReps / 2, us.end());
  return us[kReps / 2];
}

}  // namespace

std::string Record::line() const {
  if (!timed) {
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1f", seconds * 1e3);
    std::string s = cat(op, ": ", chosen, ", ", candidates, " checked, not timed, in ", ms, " ms");
    for (const std::string& r : rejected) s += cat("; REJECTED ", r);
    return s;
  }
  char kept[128];
  std::snprintf(kept, sizeof kept, "%.1f µs (%s: %.1f µs), %d tried in %.1f ms", chosen_us, model.c_str(), model_us,
                candidates, seconds * 1e3);
  std::string s = cat(op, ": ", chosen, ", ", kept, " [");
  for (std::size_t i = 0; i < times.size(); ++i) {
    char t[64];
    std::snprintf(t, sizeof t, "%s%s %.1f", i ? ", " : "", times[i].first.c_str(), times[i].second);
    s += t;
  }
  s += "]";
  for (const std::string& r : rejected) s += cat("; REJECTED ", r);
  return s;
}

int tune(const std::vector<Candidate>& candidates, const std::vector<Output>& outputs, cudaStream_t stream,
         Record& rec, bool timed) {
  MNIST_CHECK(!candidates.empty(), "autotune: no candidate");
  const auto t0 = std::chrono::steady_clock::now();
  rec.candidates = int(candidates.size());
  rec.model = candidates[0].label;
  rec.rejected.clear();
  rec.times.clear();
  rec.timed = timed;
  candidates[0].launch();  // the reference (its errors are the caller's: no fallback below it)
  Reference reference(outputs, stream);
  std::vector<double> us(candidates.size(), -1.0);  // -1: rejected
  us[0] = timed ? time_us(candidates[0], stream) : 0.0;
  for (std::size_t i = 1; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    std::string why;
    try {
      c.launch();
      if (g_hooks.corrupt) {
        std::vector<float> out = reference.download();
        g_hooks.corrupt(c.label, out);
        reference.upload(out);
      }
      why = reference.disagreement();
    } catch (const std::exception& e) {  // a launch the device refuses (resources): not this tile here
      (void)cudaGetLastError();
      why = cat("launch failed: ", e.what());
    }
    if (!why.empty()) {
      rec.rejected.push_back(cat(c.label, ": ", why));
      continue;
    }
    us[i] = timed ? time_us(c, stream) : 0.0;
  }
  for (std::size_t i = 0; i < candidates.size(); ++i)
    if (us[i] >= 0) rec.times.emplace_back(candidates[i].label, us[i]);
  std::size_t best = 0;
  for (std::size_t i = 1; timed && i < candidates.size(); ++i) {
    if (us[i] < 0) continue;
    const bool beats = best == 0 ? us[i] < (1.0 - kMargin) * us[0] : us[i] < us[best];
    if (beats) best = i;
  }
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rec.chosen = candidates[best].label;
  rec.chosen_us = us[best];
  rec.model_us = us[0];
  return int(best);
}

void set_test_hooks(TestHooks hooks) { g_hooks = std::move(hooks); }

}  // namespace mnist::cuda::autotune
