// NvtxRange: an RAII NVTX range (header-only NVTX 3), so that an Nsight Systems timeline shows
// the engine's epoch / step / forward / backward / optimizer phases by name. Costs a few ns when
// no profiler is attached.
#pragma once

#include <nvtx3/nvToolsExt.h>

namespace mnist {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace mnist
