// The GEMM tables of each level (gemm.h), defined in files compiled with that level's flags
// (plain data: nothing runs to read them; gemm.cpp hands out an entry only when dispatch.h says
// the CPU has the level).
#pragma once
#include "quant/gemm.h"

namespace pyllama {

extern const GemmTable kScalarGemmTable;     // quant/gemm_scalar.cpp
#if defined(__x86_64__) || defined(_M_X64)
extern const GemmTable kAvx2GemmTable;       // quant/x86_avx2_gemm.cpp
extern const GemmTable kAvx512GemmTable;     // quant/x86_avx512_gemm.cpp
#elif defined(__aarch64__)
extern const GemmTable kNeonGemmTable;       // quant/arm_neon_gemm.cpp
#endif

}  // namespace pyllama
