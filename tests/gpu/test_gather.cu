// Batch gather and the device shuffle against the CPU twins. Both are exact: the gather is one
// float multiply per pixel on both sides, the shuffle is a sort of the same Philox keys.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/gather.cuh"
#include "kernels/train_counters.cuh"
#include "layers/cpu_ops.hpp"
#include "tests/gpu/gpu_test.cuh"
#include "tests/gpu/shuffle_ref.hpp"

namespace mnist::test {
namespace {

TEST_CASE("gather_batch equals cpu::gather_batch bitwise") {
  Stream stream;
  const int n = 1500;  // images in the dataset
  for (const cases::OpCase& c : test_cases(cases::Op::Gather)) {
    INFO(c.name());
    const int B = c.rows, D = c.in;
    const std::vector<uint8_t> images = random_bytes(std::size_t(n) * D, 3 + D);
    const std::vector<uint8_t> labels = random_bytes(std::size_t(n), 4, 0, 9);
    std::vector<int32_t> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), std::mt19937(5 + B));
    idx.resize(std::size_t(B));
    std::vector<float> X(std::size_t(B) * D);
    std::vector<uint8_t> y(static_cast<std::size_t>(B));
    cpu::gather_batch(X.data(), y.data(), images.data(), labels.data(), idx.data(), B, D);
    auto d_images = to_device(images), d_labels = to_device(labels);
    auto d_idx = to_device(idx);
    auto gX = poisoned<float>(X.size());
    auto gy = poisoned<uint8_t>(y.size());
    cuda::gather_batch(gX.data(), gy.data(), d_images.data(), d_labels.data(), d_idx.data(), B, D, stream.get());
    CHECK(bitwise_equal(to_host(gX), X));
    CHECK(bitwise_equal(to_host(gy), y));
  }
}

TEST_CASE("gather_batch (and the overlapped gather) from TrainCounters and gather_rows pick the right rows") {
  Stream stream;
  const int n = 1000, D = 784, stride = 128;
  const std::vector<uint8_t> images = random_bytes(std::size_t(n) * D, 8);
  const std::vector<uint8_t> labels = random_bytes(std::size_t(n), 9, 0, 9);
  std::vector<int32_t> order(static_cast<std::size_t>(n));
  cpu::shuffle_order(order.data(), n, 1, 2);
  auto d_images = to_device(images), d_labels = to_device(labels);
  auto d_order = to_device(order);
  for (int batch : {0, 3, 7}) {
    const int B = std::min(stride, n - batch * stride);  // batch 7 is the short last one (104 rows)
    INFO("batch ", batch, " rows ", B);
    std::vector<float> X(std::size_t(B) * D);
    std::vector<uint8_t> y(static_cast<std::size_t>(B));
    cpu::gather_batch(X.data(), y.data(), images.data(), labels.data(), order.data() + batch * stride, B, D);
    cuda::TrainCounters c;
    c.batch = batch;
    auto ctr = to_device(std::vector<cuda::TrainCounters>{c});
    auto gX = poisoned<float>(X.size());
    auto gy = poisoned<uint8_t>(y.size());
    cuda::gather_batch(gX.data(), gy.data(), d_images.data(), d_labels.data(), d_order.data(), ctr.data(), stride, B,
                       D, stream.get());
    CHECK(bitwise_equal(to_host(gX), X));
    CHECK(bitwise_equal(to_host(gy), y));
    // The tail path's overlapped gather (X only, grid-stride): the same X, every element. Also at an
    // odd width (the scalar loop), against the CPU twin on the first 783 pixels of each row's image
    // read as rows of 783.
    auto oX = poisoned<float>(X.size());
    cuda::gather_batch_overlapped(oX.data(), d_images.data(), d_order.data(), ctr.data(), stride, B, D, stream.get());
    CHECK(bitwise_equal(to_host(oX), X));
    const int D1 = D - 1;
    std::vector<float> X1(std::size_t(B) * D1);
    cpu::gather_batch(X1.data(), y.data(), images.data(), labels.data(), order.data() + batch * stride, B, D1);
    auto oX1 = poisoned<float>(X1.size());
    cuda::gather_batch_overlapped(oX1.data(), d_images.data(), d_order.data(), ctr.data(), stride, B, D1, stream.get());
    CHECK(bitwise_equal(to_host(oX1), X1));
    // Rounded to a GEMM precision (the tail path, for dense_weight_partials' x_rounded): every
    // element round_input of the CPU's, at both widths; TF32 and BF16 round most of them (k/255).
    for (const GemmPrecision prec : {GemmPrecision::TF32, GemmPrecision::BF16}) {
      INFO("rounded to ", prec == GemmPrecision::TF32 ? "tf32" : "bf16");
      for (const int w : {D, D1}) {
        const std::vector<float>& ref = w == D ? X : X1;
        std::vector<float> want(ref.size());
        cpu::round_gemm_inputs(want.data(), ref.data(), ref.size(), prec);
        std::size_t moved = 0;
        for (std::size_t e = 0; e < ref.size(); ++e) moved += want[e] != ref[e];
        CHECK(moved > ref.size() / 2);
        auto rX = poisoned<float>(ref.size());
        cuda::gather_batch_overlapped(rX.data(), d_images.data(), d_order.data(), ctr.data(), stride, B, w,
                                      stream.get(), prec);
        CHECK(bitwise_equal(to_host(rX), want));
      }
    }
  }
  const int first = 900, B = 100;
  std::vector<int32_t> seq(static_cast<std::size_t>(B));
  std::iota(seq.begin(), seq.end(), first);
  std::vector<float> X(std::size_t(B) * D);
  std::vector<uint8_t> y(static_cast<std::size_t>(B));
  cpu::gather_batch(X.data(), y.data(), images.data(), labels.data(), seq.data(), B, D);
  auto gX = poisoned<float>(X.size());
  auto gy = poisoned<uint8_t>(y.size());
  cuda::gather_rows(gX.data(), gy.data(), d_images.data(), d_labels.data(), first, B, D, stream.get());
  CHECK(bitwise_equal(to_host(gX), X));
  CHECK(bitwise_equal(to_host(gy), y));
}

TEST_CASE("shuffle_order equals cpu::shuffle_order exactly, and is deterministic") {
  Stream stream;
  for (int n : {1, 2, 7, 1000, 48000, 60000}) {
    DeviceBuffer<unsigned char> temp(cuda::shuffle_temp_bytes(n));
    CUDA_CHECK(cudaMemset(temp.data(), 0, temp.size()));  // once (kernels/gather.cuh)
    for (uint64_t seed : {uint64_t(42), (uint64_t(1) << 40) + 3})
      for (uint64_t epoch : {uint64_t(0), uint64_t(1), uint64_t(7)}) {
        INFO("n=", n, " seed=", seed, " epoch=", epoch);
        std::vector<int32_t> ref(static_cast<std::size_t>(n));
        cpu::shuffle_order(ref.data(), n, seed, epoch);
        auto order = poisoned<int32_t>(std::size_t(n));
        cuda::shuffle_order(order.data(), temp.data(), temp.size(), n, seed, epoch, stream.get());
        const std::vector<int32_t> got = to_host(order);
        CHECK(got == ref);
        cuda::shuffle_order(order.data(), temp.data(), temp.size(), n, seed, epoch, stream.get());
        CHECK(to_host(order) == got);
      }
  }
}

// Both algorithms (the bucket shuffle, CUB's sort) on keys masked to few bits: equal keys, buckets of
// hundreds or thousands, and a single bucket of n ties, where only the index decides; each against
// the masked keys' stable sort, twice over one scratch (the counts must come back to 0).
TEST_CASE("shuffle_order: crowded buckets and equal keys, bucket shuffle and CUB alike") {
  Stream stream;
  struct Reset {
    ~Reset() { cuda::shuffle_set_test_hooks({}); }
  } reset;
  for (int n : {1, 33, 1000, 4099, 20000}) {
    DeviceBuffer<unsigned char> temp(cuda::shuffle_temp_bytes(n));
    CUDA_CHECK(cudaMemset(temp.data(), 0, temp.size()));
    for (bool cub : {false, true})
      for (uint32_t mask : test::shuffle_test_masks())
        for (uint64_t epoch : {uint64_t(0), uint64_t(5)}) {
          INFO("n=", n, std::string(cub ? " cub" : " buckets"), " mask=", mask, " epoch=", epoch);
          cuda::shuffle_set_test_hooks({cub, mask});
          auto order = poisoned<int32_t>(std::size_t(n));
          cuda::shuffle_order(order.data(), temp.data(), temp.size(), n, 9, epoch, stream.get());
          CHECK(to_host(order) == test::shuffle_reference(n, 9, epoch, mask));
        }
  }
}

TEST_CASE("identity_order") {
  Stream stream;
  const int n = 1001;
  auto order = poisoned<int32_t>(std::size_t(n));
  cuda::identity_order(order.data(), n, stream.get());
  std::vector<int32_t> ref(static_cast<std::size_t>(n));
  std::iota(ref.begin(), ref.end(), 0);
  CHECK(to_host(order) == ref);
}

}  // namespace
}  // namespace mnist::test
