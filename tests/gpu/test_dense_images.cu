// Layer 0's X read in place from the uint8 images (DenseInput::images_by_index, kernels/dense.cuh)
// instead of the batch gather_batch scales into floats: every GEMM that takes X (forward, relu +
// dropout forward, weight, weight pieces, the fused backward) must give bit for bit what it gives
// on the gathered floats, at every precision and for every tile the tests can force, since both
// read the same floats (pixel_value, kernels/gather.cuh) in the same order. The gathered path is
// itself checked against the CPU twins (test_dense.cu, test_dense_tc.cu, test_gather.cu), so
// equality here makes the in-place path as right as that one; bitwise is the only tolerance that
// holds the two to the same operand values.
//
// Rows come through a shuffled index with a first offset and the training step's device counter
// (idx[first + counters->batch · stride + r]), or consecutively (evaluation), so a wrong base, a
// missed index or a row read twice gives other operands and other bits. The wgmma tiles (forward
// WgmmaTile, weight WgmmaWeightTile) have a case of their own: they are not bitwise the other
// tensor-core tiles (dense.cuh: the tensor core sums in its own order), so each is compared with
// itself, forced on the gathered floats and on the images; in the emulation the wgmma operations
// each launch performs must be the same count both ways and not zero where the tile must have run
// (the images did not push a launch onto another tile). On a GPU without sm_90a the forced wgmma
// falls back to PipeTile by design (dense_wgmma_available) on both runs: like is still compared
// with like, and no images fallback is counted either way.
//
// That the pipelined tensor-core tile (PipeTile) itself reads the images, rather than the launcher
// falling back to MmaTile, is checked in the host emulation (tests/gpu/emu), whose cp.async model
// counts the copies it performs: a launcher whose float-X run copies by cp.async (it ran on a
// PipeTile) must copy 4-byte chunks (cp_async4: 4 pixels) when X is the images, one whose float
// run does not must copy none; and with a Pipe tile forced and every leading dimension a multiple
// of 4 (TF32/BF16), every launcher must. Built by nvcc for the GPU, these counts do not exist and
// only the bitwise checks run.
//
// Equal bits alone cannot tell a forced tile from the fallback the launchers take when a tile does
// not read the images (SimtVecTile and SimtTile give the same bits by contract): for the tiles that
// read them (every FP32 and tensor-core choice here), cuda::dense_images_fallbacks() must not move,
// so the forced tile itself ran on the images.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/dense.cuh"
#include "kernels/gather.cuh"
#include "runtime/stream.cuh"
#include "tests/gpu/gpu_test.cuh"

#ifdef MNIST_HOST_EMULATION  // the host emulation: this is its cp.async model (tests/gpu/emu/ov/kernels)
#include "kernels/cp_async.cuh"
#include "kernels/wgmma.cuh"  // (the emulation's model: its operation count)
#define MNIST_TEST_CP_ASYNC_COUNTS 1
#endif

namespace mnist::test {
namespace {

struct ImageShape {
  int B, K, N;
  int offset = 0;  // the images start this many bytes into their allocation
};

// The shapes: tails in every dimension (129 x 33 -> 7), layer 0 of the model with its forward K
// split (784 -> 128 at 300 rows; 40 rows in quick mode), and a weight GEMM whose rows split in
// pieces (600 x 100 -> 10: 2 slices of 320 rows). 40 x 784 -> 20 again with the images 1 byte off
// 4-byte alignment: no 4-byte copies are legal, PipeTile loads every chunk of X by hand.
std::vector<ImageShape> image_shapes() {
  if (quick_tests()) return {{129, 33, 7}, {40, 784, 20}, {600, 100, 10}, {40, 784, 20, 1}};
  return {{129, 33, 7}, {300, 784, 128}, {600, 100, 10}, {1100, 100, 30}, {4096, 784, 128}, {300, 784, 128, 1}};
}

struct TileForce {
  const char* name;
  cuda::SimtTileChoice simt;
  cuda::GemmTileChoice tc;
  bool reads_images = true;  // the tile (or every tile auto may pick) reads X from the images: no fallback
};

std::vector<TileForce> forced_tiles(GemmPrecision prec) {
  using cuda::GemmTile;
  using cuda::SimtTileKind;
  if (prec == GemmPrecision::FP32)
    return {{"auto", {}, {}},
            {"scalar", {SimtTileKind::Scalar, false}, {}},
            {"vec32", {SimtTileKind::Vec32, false}, {}},
            {"vec64 fold", {SimtTileKind::Vec64, true}, {}},
            {"vec128", {SimtTileKind::Vec128, false}, {}}};
  return {{"auto", {}, {}},
          {"mma", {}, {GemmTile::Mma, false}},
          {"pipe64", {}, {GemmTile::Pipe64, false}},
          {"pipe64x8 fold", {}, {GemmTile::Pipe64x8, true}},
          {"pipe128", {}, {GemmTile::Pipe128, false}}};
}

void force(const TileForce& f) {
  cuda::dense_force_simt_tile(f.simt);
  cuda::dense_force_tile(f.tc);
}

// The wgmma tiles forced (both precisions, with and without the folded forward split).
std::vector<TileForce> wgmma_tiles(GemmPrecision) {
  using cuda::GemmTile;
  return {{"wgmma", {}, {GemmTile::Wgmma, false}},
          {"wgmma fold", {}, {GemmTile::Wgmma, true}},
          {"wgmma128", {}, {GemmTile::Wgmma128, false}},
          {"wgmma128 fold", {}, {GemmTile::Wgmma128, true}},
          {"wgmma2wg", {}, {GemmTile::WgmmaWide, false}},
          {"wgmma2wg fold", {}, {GemmTile::WgmmaWide, true}}};
}

// The cp.async copies the emulation has performed so far: {all, the 4-byte ones}, and its wgmma
// operations ({0, 0, 0} on the GPU).
struct CopyCount {
  long long all = 0, four = 0, wgmma = 0;
};
CopyCount copies_so_far() {
#ifdef MNIST_TEST_CP_ASYNC_COUNTS
  return {cuda::g_emu_cp_async_copies.load(), cuda::g_emu_cp_async4_copies.load(), cuda::g_emu_wgmma_ops.load()};
#else
  return {};
#endif
}

// Runs every X-taking launcher once with `in` as X; returns all their outputs, in a fixed order,
// and in `copies` (emulation) each of the 7 launches' cp.async copies.
std::vector<std::vector<float>> run_all(const cuda::DenseInput& in, const ImageShape& s, const DeviceBuffer<float>& W,
                                        const DeviceBuffer<float>& b, const DeviceBuffer<float>& dZ,
                                        const DeviceBuffer<float>& mask, const DeviceBuffer<cuda::TrainCounters>& counters,
                                        GemmPrecision prec, cudaStream_t stream, std::vector<CopyCount>& copies) {
  copies.clear();
  CopyCount last = copies_so_far();
  auto count = [&] {  // after a launch's to_host (which waits for it)
    const CopyCount now = copies_so_far();
    copies.push_back({now.all - last.all, now.four - last.four, now.wgmma - last.wgmma});
    last = now;
  };
  const std::size_t ws_n = std::max<std::size_t>(1, cuda::dense_workspace_floats(s.B, s.K, s.N));
  const std::size_t tk_n = std::max<std::size_t>(1, cuda::dense_ticket_count(s.B, s.K, s.N));
  auto ws = poisoned<float>(ws_n);
  DeviceBuffer<unsigned> tickets(tk_n);
  CUDA_CHECK(cudaMemset(tickets.data(), 0, tickets.bytes()));
  std::vector<std::vector<float>> out;

  auto Y = poisoned<float>(std::size_t(s.B) * s.N);
  cuda::dense_forward(Y.data(), in, W.data(), b.data(), s.B, s.K, s.N, false, stream, prec);
  out.push_back(to_host(Y));
  count();
  cuda::dense_forward(Y.data(), in, W.data(), b.data(), s.B, s.K, s.N, true, stream, prec, ws.data());
  out.push_back(to_host(Y));
  count();
  cuda::DropoutSpec drop;
  drop.p = 0.2f;
  drop.seed = 77;
  drop.counters = counters.data();
  drop.layer = 0;
  cuda::dense_relu_dropout_forward(Y.data(), in, W.data(), b.data(), s.B, s.K, s.N, drop, stream, prec, ws.data(),
                                   tickets.data());
  out.push_back(to_host(Y));
  count();

  auto dW = poisoned<float>(std::size_t(s.N) * s.K), db = poisoned<float>(std::size_t(s.N));
  cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), in, s.B, s.K, s.N, stream, prec);
  out.push_back(to_host(dW));
  out.push_back(to_host(db));
  count();
  cuda::dense_backward_weights(dW.data(), db.data(), dZ.data(), in, s.B, s.K, s.N, stream, prec, ws.data(),
                               tickets.data());
  out.push_back(to_host(dW));
  out.push_back(to_host(db));
  count();

  auto part = poisoned<float>(cuda::dense_weight_partial_floats(s.B, s.K, s.N));
  cuda::dense_weight_partials(part.data(), dZ.data(), in, s.B, s.K, s.N, stream, prec);
  out.push_back(to_host(part));
  count();

  // The fused backward with a data GEMM beside the weight GEMM (layer 0 has none in the engine;
  // the launcher must still route its weight half correctly). W here is [N,K] = the data GEMM's B.
  auto dX = poisoned<float>(std::size_t(s.B) * s.K);
  cuda::dense_backward_fused(dW.data(), db.data(), dX.data(), dZ.data(), in, W.data(), mask.data(), 1.25f, s.B, s.K,
                             s.N, stream, prec, ws.data());
  out.push_back(to_host(dW));
  out.push_back(to_host(db));
  out.push_back(to_host(dX));
  count();
  return out;
}

// Every X-taking launcher with X from the images (s.offset bytes into their allocation: a base that
// is not 4-byte aligned must take the element loads) against the same launcher on the gathered
// floats, bit for bit, at each precision and forced tile; no fallback off a tile that reads the
// images; and, in the emulation, which tile copied what (header).
// tiles: the tiles forced (forced_tiles, or wgmma_tiles: then, in the emulation, every launch's
// wgmma operation count must be the same on the images as on the floats, and the forward and weight
// launches must have run on wgmma where their leading dimensions allow the pipelined tiles).
void check_images(const ImageShape& s, const std::vector<GemmPrecision>& precisions, cudaStream_t stream,
                  std::vector<TileForce> (*tiles)(GemmPrecision) = forced_tiles) {
  // Images: more than the rows, so that the index picks some; the index a shuffled permutation.
  const int first = 5, n_images = 2 * s.B + first + 3;
  const auto h_images = random_bytes(std::size_t(n_images) * s.K + std::size_t(s.offset), 3000 + s.B + s.K);
  std::vector<int32_t> h_idx(static_cast<std::size_t>(n_images));
  std::iota(h_idx.begin(), h_idx.end(), 0);
  std::shuffle(h_idx.begin(), h_idx.end(), std::mt19937(unsigned(s.B)));
  auto images_alloc = to_device(h_images);
  const uint8_t* const images = images_alloc.data() + s.offset;
  auto idx = to_device(h_idx);
  cuda::TrainCounters hc;
  hc.step = 3;
  hc.batch = 1;  // rows idx[first + 1·B + r]
  DeviceBuffer<cuda::TrainCounters> counters(1);
  counters.upload(&hc, 1);

  auto W = to_device(random_vector(std::size_t(s.N) * s.K, 11 + s.K, -0.5, 0.5));
  auto b = to_device(random_vector(std::size_t(s.N), 12 + s.N, -0.5, 0.5));
  auto dZ = to_device(random_vector(std::size_t(s.B) * s.N, 13 + s.B));
  auto mask = to_device(random_vector(std::size_t(s.B) * s.K, 14 + s.B));

  // The gathered floats of both row orders (the step's, through idx; evaluation's, consecutive).
  auto X_step = poisoned<float>(std::size_t(s.B) * s.K), X_rows = poisoned<float>(std::size_t(s.B) * s.K);
  cuda::gather_batch(X_step.data(), nullptr, images, nullptr, idx.data() + first, counters.data(), s.B, s.B, s.K,
                     stream);
  cuda::gather_rows(X_rows.data(), nullptr, images, nullptr, first, s.B, s.K, stream);
  const auto in_step = cuda::DenseInput::images_by_index(images, idx.data(), first, counters.data(), s.B);
  const auto in_rows = cuda::DenseInput::images_by_index(images, nullptr, first);

  for (const GemmPrecision prec : precisions) {
    for (const TileForce& f : tiles(prec)) {
      INFO(s.B, "x", s.K, "->", s.N, " images offset ", s.offset, " precision ", int(prec), " tile ",
           std::string(f.name));
      force(f);
      std::vector<CopyCount> want_copies, got_copies, ignored;
      const auto want_step = run_all(X_step.data(), s, W, b, dZ, mask, counters, prec, stream, want_copies);
      const long long fallbacks = cuda::dense_images_fallbacks();
      const auto got_step = run_all(in_step, s, W, b, dZ, mask, counters, prec, stream, got_copies);
      const auto want_rows = run_all(X_rows.data(), s, W, b, dZ, mask, counters, prec, stream, ignored);
      const auto got_rows = run_all(in_rows, s, W, b, dZ, mask, counters, prec, stream, ignored);
      if (f.reads_images) CHECK_MESSAGE(cuda::dense_images_fallbacks() == fallbacks, "the forced tile fell back");
#ifdef MNIST_TEST_CP_ASYNC_COUNTS
      // Which tile read the images (header): the float run's tile choice (it copies by cp.async
      // on a PipeTile, only there), 4-byte copies for X where the images are 4-byte aligned.
      const bool forced_pipe = f.tc.tile != cuda::GemmTile::Auto && f.tc.tile != cuda::GemmTile::Mma;
      const bool all_pipe = forced_pipe && prec != GemmPrecision::FP32 && s.K % 4 == 0 && s.N % 4 == 0;
      const bool aligned = s.offset % 4 == 0;
      REQUIRE(want_copies.size() == 7);
      REQUIRE(got_copies.size() == 7);
      for (std::size_t i = 0; i < want_copies.size(); ++i) {
        const bool pipe = want_copies[i].all > 0;
        CHECK_MESSAGE(want_copies[i].four == 0, "launch ", i, ": 4-byte copies without the images");
        CHECK_MESSAGE((got_copies[i].four > 0) == (pipe && aligned), "launch ", i, ": ", got_copies[i].four,
                      " 4-byte copies on the images, ", want_copies[i].all, " copies on the floats");
        CHECK_MESSAGE((got_copies[i].all > 0) == pipe, "launch ", i, ": the images ran on another tile");
        if (all_pipe) CHECK_MESSAGE(pipe, "launch ", i, ": the forced Pipe tile did not run");
        CHECK_MESSAGE(got_copies[i].wgmma == want_copies[i].wgmma, "launch ", i, ": ", got_copies[i].wgmma,
                      " wgmma operations on the images, ", want_copies[i].wgmma, " on the floats");
        // launches 0-2 forward (lda = ldb = K), 3-5 weight (lda = N, ldb = K): pipelined_ok
        const bool wgmma_must = tiles == wgmma_tiles && s.K % 4 == 0 && (i < 3 || (i < 6 && s.N % 4 == 0));
        if (wgmma_must) CHECK_MESSAGE(got_copies[i].wgmma > 0, "launch ", i, ": the forced wgmma tile did not run");
      }
#endif
      REQUIRE(want_step.size() == got_step.size());
      for (std::size_t i = 0; i < want_step.size(); ++i) {
        CHECK_MESSAGE(bitwise_equal(want_step[i], got_step[i]), "output ", i, " (step rows)");
        CHECK_MESSAGE(bitwise_equal(want_rows[i], got_rows[i]), "output ", i, " (consecutive rows)");
      }
      // The two row orders are different operands: a test that cannot tell them apart proves nothing.
      CHECK_FALSE(bitwise_equal(want_step[0], want_rows[0]));
    }
  }
  force({"auto", {}, {}});
}

TEST_CASE("X read from the uint8 images in place: every GEMM bit for bit as on the gathered floats") {
  Stream stream;
  for (const ImageShape s : image_shapes())
    check_images(s, {GemmPrecision::FP32, GemmPrecision::TF32, GemmPrecision::BF16}, stream.get());
}

// The wgmma tiles on the images against themselves on the gathered floats (header), TF32 and BF16:
// tails in rows and columns (130 rows: a partial 64-row tile; 68 outputs: a partial column tile and
// the ones column inside a chunk of 4), layer 0's K of 784 (a half slice at the end, the forward
// split folded or in pieces), a weight GEMM split in pieces of rows, and the images 1 byte off
// 4-byte alignment (every chunk of X stored by hand).
TEST_CASE("X read from the uint8 images in place: the wgmma tiles bit for bit as on the gathered floats") {
  Stream stream;
  const std::vector<ImageShape> shapes =
      quick_tests() ? std::vector<ImageShape>{{130, 100, 68}, {40, 784, 20}, {600, 100, 12}, {40, 784, 20, 1}}
                    : std::vector<ImageShape>{{130, 100, 68}, {300, 784, 128}, {600, 100, 12}, {1100, 100, 30},
                                              {4096, 784, 128}, {300, 784, 128, 1}};
  for (const ImageShape s : shapes)
    check_images(s, {GemmPrecision::TF32, GemmPrecision::BF16}, stream.get(), wgmma_tiles);
}

// The images' base 1 and 2 bytes past a 4-byte boundary (K a multiple of 4, so only the base): the
// FP32 tiles' 4-byte pixel loads would be misaligned (a fault on the GPU; the emulation's alignment
// check stops the run), so they must load element by element, and give the same bits.
TEST_CASE("X read from misaligned images: the FP32 tiles fall to element loads, same bits") {
  Stream stream;
  for (const int offset : {1, 2}) check_images({72, 100, 40, offset}, {GemmPrecision::FP32}, stream.get());
}

}  // namespace
}  // namespace mnist::test
