// cuRAND's Philox against mnist::rng (bitwise), and the dropout kernels against the CPU twins
// (bitwise: same mask, and out = in * scale is one float multiply on both sides), their keep-rate
// and scaling statistics, and their determinism.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/curand_draw.cuh"
#include "kernels/dropout.cuh"
#include "kernels/philox.hpp"
#include "layers/cpu_ops.hpp"
#include "runtime/launch_check.cuh"
#include "tests/gpu/gpu_test.cuh"

namespace mnist::test {
namespace {

__global__ void curand_philox_kernel(uint4* out, const uint4* ctr, const uint2* key, int n) {
  const int i = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = curand_Philox4x32_10(ctr[i], key[i]);
}

struct DrawArgs {
  uint64_t seed, i, ctr;
  uint32_t stream, sub;
};

__global__ void draw_kernel(uint32_t* out, const DrawArgs* args, int n) {
  const int i = int(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = cuda::philox_draw(args[i].seed, args[i].stream, args[i].sub, args[i].i, args[i].ctr);
}

TEST_CASE("curand_Philox4x32_10 equals rng::philox4x32_10 bitwise") {
  const int n = 1 << 16;
  std::mt19937_64 gen(1234);
  std::vector<uint4> ctr(n);
  std::vector<uint2> key(n);
  for (int i = 0; i < n; ++i) {
    ctr[i] = make_uint4(uint32_t(gen()), uint32_t(gen()), uint32_t(gen()), uint32_t(gen()));
    key[i] = make_uint2(uint32_t(gen()), uint32_t(gen()));
  }
  ctr[0] = make_uint4(0, 0, 0, 0);  // the all-zero corner
  key[0] = make_uint2(0, 0);
  auto d_ctr = to_device(ctr);
  auto d_key = to_device(key);
  auto d_out = poisoned<uint4>(n);
  curand_philox_kernel<<<(n + 255) / 256, 256>>>(d_out.data(), d_ctr.data(), d_key.data(), n);
  MNIST_LAUNCH_CHECK(nullptr);
  const std::vector<uint4> got = to_host(d_out);
  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    const rng::U4 ref = rng::philox4x32_10(rng::U4{ctr[i].x, ctr[i].y, ctr[i].z, ctr[i].w}, key[i].x, key[i].y);
    mismatches += got[i].x != ref.x || got[i].y != ref.y || got[i].z != ref.z || got[i].w != ref.w;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("philox_draw equals rng::draw bitwise on every stream") {
  std::mt19937_64 gen(99);
  std::vector<DrawArgs> args;
  for (uint32_t stream : {uint32_t(rng::kDropout), uint32_t(rng::kShuffle), uint32_t(rng::kInit), uint32_t(rng::kSplit)})
    for (int k = 0; k < 4096; ++k)
      args.push_back({gen(), gen() % (uint64_t(1) << 36), k % 3 == 0 ? gen() : gen() % 100000, stream,
                      uint32_t(gen() % 70000)});
  const int n = int(args.size());
  auto d_args = to_device(args);
  auto d_out = poisoned<uint32_t>(args.size());
  draw_kernel<<<(n + 255) / 256, 256>>>(d_out.data(), d_args.data(), n);
  MNIST_LAUNCH_CHECK(nullptr);
  const std::vector<uint32_t> got = to_host(d_out);
  int mismatches = 0;
  for (int i = 0; i < n; ++i)
    mismatches += got[i] != rng::draw(args[i].seed, args[i].stream, args[i].sub, args[i].i, args[i].ctr);
  CHECK(mismatches == 0);
}

TEST_CASE("dropout_forward / dropout_backward equal the CPU twins bitwise") {
  Stream stream;
  for (const cases::OpCase& c : test_cases(cases::Op::Dropout)) {
    for (float p : {0.2f, 0.5f}) {
      const std::size_t n = std::size_t(c.rows) * std::size_t(c.out);
      INFO(c.name(), " p=", p);
      const std::vector<float> in = random_vector(n, 11 + n, -2.0, 2.0);
      std::vector<float> ref(n), ref_back(n);
      cpu::dropout_forward(ref.data(), in.data(), n, p, 42, 7, 1);
      cpu::dropout_backward(ref_back.data(), in.data(), n, p, 42, 7, 1);
      auto d_in = to_device(in);
      auto d_out = poisoned<float>(n);
      auto d_back = poisoned<float>(n);
      cuda::dropout_forward(d_out.data(), d_in.data(), n, p, 42, 7, 1, stream.get());
      cuda::dropout_backward(d_back.data(), d_in.data(), n, p, 42, 7, 1, stream.get());
      CHECK(bitwise_equal(to_host(d_out), ref));
      CHECK(bitwise_equal(to_host(d_back), ref_back));
    }
  }
}

TEST_CASE("dropout: the step read from TrainCounters gives the host step's mask; in place works") {
  Stream stream;
  const std::size_t n = 128 * 64 + 3;
  const std::vector<float> in = random_vector(n, 5, 0.1, 1.0);
  std::vector<float> ref(n);
  cpu::dropout_forward(ref.data(), in.data(), n, 0.3f, 9, 12345678901ull, 2);
  cuda::TrainCounters c;
  c.step = 12345678901ll;
  auto d_ctr = to_device(std::vector<cuda::TrainCounters>{c});
  auto d_buf = to_device(in);
  cuda::dropout_forward(d_buf.data(), d_buf.data(), n, cuda::DropoutSpec{0.3f, 9, 0, 2, d_ctr.data()}, stream.get());
  CHECK(bitwise_equal(to_host(d_buf), ref));
}

TEST_CASE("dropout keep rate and scaling statistics") {
  // With in = 1 everywhere, out is 1/(1-p) where kept and 0 where dropped. The kept fraction is a
  // binomial proportion: mean 1-p, standard deviation sqrt(p(1-p)/n); 5 sigma bounds a correct
  // generator's deviation with probability 1 - 6e-7 per check. E[out] = 1 (inverted dropout keeps
  // the expected activation), within 5 sigma of mean(out), whose deviation is scale * that of the
  // kept fraction.
  Stream stream;
  const std::size_t n = std::size_t(1) << 22;
  auto d_in = to_device(std::vector<float>(n, 1.0f));
  for (float p : {0.1f, 0.2f, 0.5f, 0.9f}) {
    INFO("p=", p);
    auto d_out = poisoned<float>(n);
    cuda::dropout_forward(d_out.data(), d_in.data(), n, p, 2024, 1, 0, stream.get());
    const std::vector<float> out = to_host(d_out);
    const float scale = 1.0f / (1.0f - p);
    std::size_t kept = 0, bad = 0;
    double sum = 0;
    for (float x : out) {
      if (x == scale)
        ++kept;
      else if (x != 0.0f)
        ++bad;
      sum += x;
    }
    CHECK(bad == 0);
    const double q = 1.0 - p, sigma = std::sqrt(p * q / double(n));
    CHECK(std::fabs(double(kept) / double(n) - q) < 5 * sigma);
    CHECK(std::fabs(sum / double(n) - 1.0) < 5 * scale * sigma);
  }
}

TEST_CASE("dropout masks are deterministic and change with the step, the layer and the seed") {
  Stream stream;
  const std::size_t n = 100000;
  const std::vector<float> in = random_vector(n, 3, 0.5, 1.5);
  auto d_in = to_device(in);
  auto run = [&](uint64_t seed, uint64_t step, uint32_t layer) {
    auto d_out = poisoned<float>(n);
    cuda::dropout_forward(d_out.data(), d_in.data(), n, 0.5f, seed, step, layer, stream.get());
    return to_host(d_out);
  };
  const std::vector<float> a = run(42, 3, 0);
  CHECK(bitwise_equal(a, run(42, 3, 0)));
  // Independent masks at p = 0.5 differ in about half the elements.
  for (const std::vector<float>& other : {run(42, 4, 0), run(42, 3, 1), run(43, 3, 0)}) {
    std::size_t differ = 0;
    for (std::size_t i = 0; i < n; ++i) differ += (a[i] == 0.0f) != (other[i] == 0.0f);
    CHECK(double(differ) / double(n) == doctest::Approx(0.5).epsilon(0.05));
  }
}

TEST_CASE("relu_dropout_backward equals the CPU composition dropout_backward + ReLU mask") {
  Stream stream;
  const std::size_t n = 1000 * 33;
  const float p = 0.2f;
  // D as the forward produces it: ReLU then dropout of a random pre-activation.
  const std::vector<float> z = random_vector(n, 21);
  std::vector<float> h(n), D(n), dD = random_vector(n, 22), dH(n), ref(n);
  for (std::size_t i = 0; i < n; ++i) h[i] = z[i] > 0 ? z[i] : 0.0f;
  cpu::dropout_forward(D.data(), h.data(), n, p, 5, 6, 0);
  cpu::dropout_backward(dH.data(), dD.data(), n, p, 5, 6, 0);
  for (std::size_t i = 0; i < n; ++i) ref[i] = h[i] > 0 ? dH[i] : 0.0f;
  auto d_dD = to_device(dD);
  auto d_D = to_device(D);
  auto d_out = poisoned<float>(n);
  cuda::relu_dropout_backward(d_out.data(), d_dD.data(), d_D.data(), n, cuda::dropout_scale(p), stream.get());
  CHECK(bitwise_equal(to_host(d_out), ref));
}

}  // namespace
}  // namespace mnist::test
