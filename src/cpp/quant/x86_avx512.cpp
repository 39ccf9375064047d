// The AVX-512 level (F, BW, VL, VNNI on top of AVX2/FMA/F16C). Compiled with those flags only;
// see x86_kernels.h. VNNI's dpbusd multiplies and sums four byte pairs into int32 in one
// instruction, on 256-bit registers (AVX512VL).
#include "quant/isa_kernels.h"
#include "quant/x86_kernels.h"

namespace pyllama {
namespace {
struct VnniDot {
    static __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
};
}  // namespace

const KernelTable kAvx512KernelTable{kX86Kernels<VnniDot>, kX86KernelCount};

}  // namespace pyllama
