// Replays the committed fuzz corpus and every crash input ever found (regressions/) through the
// same entry points as the fuzzers, with the normal compiler and no libFuzzer:
//   fuzz_replay idx|checkpoint DIR...
// Exit 0 when every file is either accepted or rejected with InputError. Another exception fails
// the run naming the file; an invariant failure or a crash aborts it (ctest reports the signal).
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/entries.hpp"

namespace {

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;  // an empty regressions/ directory may not exist in a checkout
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    const std::string p = dir + "/" + name;
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out.push_back(p);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s idx|checkpoint DIR...\n", argv[0]);
    return 2;
  }
  const std::string target = argv[1];
  void (*entry)(const uint8_t*, std::size_t) = nullptr;
  if (target == "idx") entry = mnist::fuzz::idx_input;
  if (target == "checkpoint") entry = mnist::fuzz::checkpoint_input;
  if (!entry) {
    std::fprintf(stderr, "%s: unknown target '%s' (idx | checkpoint)\n", argv[0], argv[1]);
    return 2;
  }
  int count = 0, failed = 0;
  for (int a = 2; a < argc; ++a) {
    for (const std::string& path : files_in(argv[a])) {
      std::ifstream in(path, std::ios::binary);
      const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::fprintf(stderr, "%s\n", path.c_str());  // the last name printed before a crash is the culprit
      try {
        entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "FAIL %s: unexpected exception: %s\n", path.c_str(), e.what());
        ++failed;
      }
      ++count;
    }
  }
  std::printf("fuzz_replay %s: %d inputs, %d failed\n", target.c_str(), count, failed);
  if (count == 0) {
    std::fprintf(stderr, "fuzz_replay %s: no inputs found\n", target.c_str());
    return 1;
  }
  return failed ? 1 : 0;
}
