// libFuzzer target: the IDX reader (read_idx, load_image_set), raw and gzip. Built by run.sh.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mnist::fuzz::idx_input(data, size);
  return 0;
}
