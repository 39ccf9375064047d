// The kernel tables of the ISA-specific files, each compiled with its own instruction-set flags.
// They are plain data (no code runs to read them), and kernels.cpp only hands their entries out
// when dispatch.h says the CPU supports that level. Each lists the weight types it speeds up;
// the others fall back to the scalar table.
#pragma once
#include <cstddef>

#include "quant/quant.h"

namespace pyllama {

struct KernelTable {
    const MatmulKernel* entries;
    size_t count;
};

#if defined(__x86_64__) || defined(_M_X64)
extern const KernelTable kAvx2KernelTable;    // quant/x86_avx2.cpp
extern const KernelTable kAvx512KernelTable;  // quant/x86_avx512.cpp
#elif defined(__aarch64__)
extern const KernelTable kNeonKernelTable;    // quant/arm_neon.cpp
#endif

}  // namespace pyllama
