// OpenBLAS, the CPU path's GEMMs (layers/cpu_ops.cpp), loaded on first use (layers/cpu_blas.cpp):
// a process that runs no CPU GEMM (a GPU run, `--help`) neither maps it nor starts its threads.
#pragma once

#include <string>

namespace mnist::cpu {

// Whether this build's CPU GEMMs are OpenBLAS's (else cpu_ops.cpp's own loops).
bool blas_built();

// Whether OpenBLAS is loaded (false before the first CPU GEMM, and in builds without it).
bool blas_loaded();

// The kernels OpenBLAS runs ("Haswell", "SkylakeX", "Cooperlake", ...: its own pick for the CPU, or
// OPENBLAS_CORETYPE's); loads it; "" in builds without OpenBLAS.
std::string blas_corename();

}  // namespace mnist::cpu
