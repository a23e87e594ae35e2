// Shared test helpers: seeded random data (never zeros), one normalised-error comparison, a
// temporary directory that cleans up after itself, and which shared libraries the process maps.
#pragma once

#include <doctest/doctest.h>
#include <link.h>

#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace mnist::test {

// How many of the process's loaded objects have a path containing `part` (a library loaded on
// first use is not among them before that use).
inline int loaded_objects(const char* part) {
  struct Search {
    const char* part;
    int n;
  } s{part, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_name && std::string(info->dlpi_name).find(s->part) != std::string::npos) ++s->n;
        return 0;
      },
      &s);
  return s.n;
}

// n values uniform in [lo, hi), from a fixed seed so failures reproduce.
template <class T = float>
std::vector<T> random_vector(std::size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(dist(gen));
  return v;
}

// ‖out − ref‖₂ / max(‖ref‖₂, tiny): one number that is meaningful whatever the tensor's scale.
template <class A, class B>
double rel_error(const std::vector<A>& out, const std::vector<B>& ref) {
  REQUIRE(out.size() == ref.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Checks every element is finite and the normalised error is within `tol`; names the tensor.
template <class A, class B>
void expect_close(const std::vector<A>& out, const std::vector<B>& ref, double tol, const std::string& what) {
  INFO(what);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(double(out[i]))) {
      FAIL_CHECK(what << ": element " << i << " is not finite (" << out[i] << ")");
      return;
    }
  }
  const double err = rel_error(out, ref);
  CHECK_MESSAGE(err <= tol, what << ": normalised error " << err << " > tolerance " << tol);
}

// A fresh directory $TMPDIR/mnist_<tag>_XXXXXX, removed with everything in it when the object dies
// (also when a REQUIRE throws out of the test).
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("mnist_" + tag + "_XXXXXX")).string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mnist::test
