// libFuzzer target: the checkpoint loader (decode_safetensors + tensors_to_params). Built by run.sh.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mnist::fuzz::checkpoint_input(data, size);
  return 0;
}
