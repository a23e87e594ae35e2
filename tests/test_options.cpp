// The command line's number validators (apps/pipeline/options.cpp) against an independent reading of
// the same strings: a decimal integer is accepted exactly when its value (read here as a 128-bit
// number, so that nothing wraps) lies in the flag's range, and then the option holds that value; a
// float flag takes decimal notation only, never a value strtod would flush to 0. The hostile-input
// audit found integers past int's and uint64's range taken as 0 (--seed 2^64+42 ran with seed 0).
#include <CLI/CLI.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "apps/pipeline/options.hpp"
#include "helpers.hpp"

using namespace mnist;

namespace {

// Parses `mnist_cuda FLAG VALUE` into fresh options; false when CLI11 refuses it (a ParseError).
bool parse(const std::string& flag, const std::string& value, AppOptions& o) {
  o = AppOptions{};
  CLI::App app;
  add_flags(app, o);
  std::vector<std::string> args{value, flag};  // (CLI11 takes a reversed vector)
  try {
    app.parse(args);
    return true;
  } catch (const CLI::ParseError&) {
    return false;
  }
}

// The value of a string of an optional '-' and 1..37 decimal digits, exactly.
__int128 exact(const std::string& s) {
  __int128 v = 0;
  for (std::size_t i = s[0] == '-'; i < s.size(); ++i) v = v * 10 + (s[i] - '0');
  return s[0] == '-' ? -v : v;
}

}  // namespace

TEST_CASE("integer flags: accepted exactly when the value is in range, never wrapped") {
  struct Flag {
    const char* name;
    __int128 lo, hi;
    __int128 (*get)(const AppOptions&);
  };
  const Flag flags[] = {
      {"--epochs", 1, 100000, [](const AppOptions& o) { return __int128(o.epochs); }},
      {"--batch-size", 1, 65536, [](const AppOptions& o) { return __int128(o.batch_size); }},
      {"--threads", 0, 1024, [](const AppOptions& o) { return __int128(o.threads); }},
      {"--patience", 1, 100000, [](const AppOptions& o) { return __int128(o.patience); }},
      {"--graph-steps", 1, 1000, [](const AppOptions& o) { return __int128(o.graph_steps); }},
      {"--seed", 0, __int128(UINT64_MAX), [](const AppOptions& o) { return __int128(o.seed); }},
  };
  // The edges of every range and of int/uint64, their neighbours, and 100 random ones up to 30 digits
  // (each parse builds the whole command line: 14.9 s under ASan at 400).
  std::vector<std::string> values{"0", "1", "-1", "1000", "1001", "1024", "1025", "65536", "65537", "100000",
                                  "100001", "2147483647", "2147483648", "4294967295", "4294967296", "4294967297",
                                  "-2147483648", "-2147483649", "9223372036854775807", "18446744073709551615",
                                  "18446744073709551616", "18446744073709551658", "99999999999999999999",
                                  "-99999999999999999999"};
  std::mt19937_64 rng(2026);
  for (int i = 0; i < 100; ++i) {
    const int digits = 1 + int(rng() % 30);
    std::string s = rng() % 4 == 0 ? "-" : "";
    s += char('1' + rng() % 9);
    for (int d = 1; d < digits; ++d) s += char('0' + rng() % 10);
    values.push_back(s);
  }
  int accepted = 0, refused = 0;
  for (const Flag& f : flags)
    for (const std::string& v : values) {
      AppOptions o;
      const bool ok = parse(f.name, v, o);
      const __int128 want = exact(v);
      const bool in_range = want >= f.lo && want <= f.hi;
      CHECK_MESSAGE(ok == in_range, f.name, " ", v);
      if (ok && in_range) CHECK_MESSAGE(f.get(o) == want, f.name, " ", v);
      (ok ? accepted : refused) += 1;
    }
  CHECK(accepted > 20);  // (both sides of every range were reached)
  CHECK(refused > 20);
}

TEST_CASE("float flags: decimal notation only, and nothing strtod would flush to 0") {
  AppOptions o;
  for (const char* v : {"0x10", "inf", "-inf", "nan", "1e-400", "1e-310", "1e400", " 0.1", "0.1 ", "", "1e", "--1"})
    CHECK_MESSAGE(!parse("--lr", v, o), "--lr '", v, "'");
  for (const char* v : {"1e-400", "4e-320"}) CHECK_MESSAGE(!parse("--dropout", v, o), "--dropout ", v);
  CHECK(!parse("--min-lr", "1e-310", o));
  REQUIRE(parse("--lr", "1e-7", o));
  CHECK(o.lr == 1e-7);
  REQUIRE(parse("--lr", "0.001", o));
  CHECK(o.lr == 0.001);
  REQUIRE(parse("--dropout", "0", o));
  CHECK(o.dropout == 0.0);
  REQUIRE(parse("--min-lr", "2.3e-308", o));  // (normal: above DBL_MIN)
  CHECK(o.min_lr == 2.3e-308);
}
