// kernels/pdl_scope.hpp: what the launches of a host thread ask for inside nested
// ProgrammaticLaunches scopes (the overlap, and with it the largest shared-memory carveout), which
// kernels/pdl.cuh's launch_kernel turns into launch attributes. Host-only: the scopes are a
// thread's state; tests/gpu/test_engine.cu checks the attributes a captured launch carries.
#include <doctest/doctest.h>

#include <thread>

#include "kernels/pdl_scope.hpp"

using mnist::cuda::ProgrammaticLaunches;

namespace {
struct Asked {
  bool overlap, max_shared;
};
Asked asked() { return {ProgrammaticLaunches::active(), ProgrammaticLaunches::max_shared()}; }
}  // namespace

TEST_CASE("ProgrammaticLaunches: the carveout comes with the overlap, scopes nest and restore") {
  CHECK((!asked().overlap && !asked().max_shared));
  {
    const ProgrammaticLaunches on(true);  // the default asks for both
    CHECK((asked().overlap && asked().max_shared));
    {
      const ProgrammaticLaunches driver(true, false);  // --carveout driver
      CHECK((asked().overlap && !asked().max_shared));
      {
        const ProgrammaticLaunches off(false, true);  // never the carveout without the overlap
        CHECK((!asked().overlap && !asked().max_shared));
      }
      CHECK((asked().overlap && !asked().max_shared));
    }
    CHECK((asked().overlap && asked().max_shared));
    // Another host thread's launches are its own (the engine's worker threads launch nothing
    // inside a scope they did not open).
    Asked other{true, true};
    std::thread([&other] { other = asked(); }).join();
    CHECK((!other.overlap && !other.max_shared));
  }
  CHECK((!asked().overlap && !asked().max_shared));
}
