#pragma once
namespace mnist { class NvtxRange { public: explicit NvtxRange(const char*) {} }; }
