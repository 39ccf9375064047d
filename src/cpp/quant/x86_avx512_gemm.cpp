// The AVX-512 level's GEMM (x86_gemm.h): VNNI's dpbusd (4 byte products per int32 lane) and
// dpwssd (2 int16 products), on 256-bit registers (AVX512VL), which also gives 32 of them.
//
// 512-bit registers were not used: Zen 4 splits them in two, and a loop of nothing but independent
// vpdpbusd measured 446 GOP/s on ymm against 464 on zmm (+4%), while a zmm operand would need
// either 16-row tiles or two groups of 4 bytes per row with a non-embeddable activation broadcast
// and a cross-lane reduction per sub-block; the 512-bit vec_dot variants were slower already
// (x86_avx512.cpp). For reference, single-threaded (CPU time): Q4_K 4096x4096 x 64 tokens
// 292 GOP/s, Q6_K 194 GOP/s (vec_dot: about 78 and 50), against the 446 of vpdpbusd alone.
#include "quant/isa_gemm.h"
#include "quant/x86_gemm.h"

namespace pyllama {
namespace {
struct VnniGemmDot {
    // The activation bytes as a memory operand with embedded broadcast ({1to8}): one instruction
    // where a separate broadcast would double the instructions of the inner loop. GCC 12 does not
    // fold _mm256_set1_epi32 of a load into vpdpbusd by itself.
    static __m256i dpbusd4(__m256i acc, __m256i u, const int8_t* p) {
        __asm__("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*reinterpret_cast<const int32_t*>(p)));
        return acc;
    }
    static __m256i dpwssd2(__m256i acc, __m256i x, const int16_t* p) {
        __asm__("vpdpwssd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*reinterpret_cast<const int32_t*>(p)));
        return acc;
    }
};
// Q4_K: 8 tokens at a time (3 x 8 accumulators), ~5% faster than 4; Q6_K keeps 4 sub-block sums
// per token, so 4 tokens (8 spill).
using Gemms = X86Gemms<VnniGemmDot, 8, 4>;
}  // namespace

const GemmTable kAvx512GemmTable{Gemms::table, sizeof Gemms::table / sizeof Gemms::table[0]};

}  // namespace pyllama
