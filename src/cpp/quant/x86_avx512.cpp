// The AVX-512 level (F, BW, VL, VNNI on top of AVX2/FMA/F16C). Compiled with those flags only;
// see x86_kernels.h. VNNI's dpbusd multiplies and sums four byte pairs into int32 in one
// instruction, on 256-bit registers (AVX512VL). A 512-bit variant (two 32-element blocks per
// register) was measured slower on Zen 4, which splits 512-bit operations in two: Q4_1 15-16 vs
// 17 Gelem/s, Q8_0 23-24 vs 26 Gelem/s for the 256-bit one, single-threaded vec_dot.
#include "quant/isa_kernels.h"
#include "quant/x86_kernels.h"

namespace pyllama {
namespace {
struct VnniDot {
    static __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
    static __m256i spread_bits(uint32_t bits, __m256i v) { return _mm256_maskz_mov_epi8(bits, v); }
};
}  // namespace

const KernelTable kAvx512KernelTable{kX86Kernels<VnniDot>, sizeof kX86Kernels<VnniDot> / sizeof(MatmulKernel)};

}  // namespace pyllama
