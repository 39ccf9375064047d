// The AVX-512 level's GEMM (x86_gemm.h): VNNI's dpbusd (4 byte products per int32 lane) and
// dpwssd (2 int16 products).
//
// With 8 or more tokens, two tiles at a time in 512-bit registers (Zmm16 below); the tile left
// over, and fewer tokens (generation, where the weights stream from memory), one tile at a time
// in 256-bit registers (Ymm8 over VnniGemmDot). Zen 4 splits 512-bit operations in two, and a loop
// of nothing but vpdpbusd peaks at about 460 GOP/s on one core either way; what the wide
// registers save is the instructions around it: single-threaded (CPU time), Q4_K 4096x4096 x 64
// tokens 348 GOP/s against 321 with one tile in ymm, Q6_K 235 against 202 (vec_dot: about 78
// and 50).
// GCC 12 warns that the AVX-512 intrinsics' deliberately undefined sources (_mm512_undefined_epi32
// and the like) are used uninitialized, wherever they are inlined (GCC bug 105593), as in
// simd/x86_avx512.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
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

// Two tiles at once, rows 0-7 of the first in the low 256 bits of each register and those of the
// second (`stride` bytes on) in the high ones: the kernels' every vector instruction then does
// the work of two, and the per-token work of each super-block (scales, mins, the float steps)
// is half the instructions.
struct Zmm16 {
    using reg = __m512i;
    using freg = __m512;
    static constexpr int kTiles = 2;

    static __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
    static __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
    static __m256i two128(const void* p, size_t stride) {
        return _mm256_inserti128_si256(_mm256_castsi128_si256(load128(p)), load128(static_cast<const uint8_t*>(p) + stride), 1);
    }

    static reg zero() { return _mm512_setzero_si512(); }
    static reg bytes(char b) { return _mm512_set1_epi8(b); }
    static reg load(const uint8_t* p, size_t stride) {
        return _mm512_inserti64x4(_mm512_castsi256_si512(load256(p)), load256(p + stride), 1);
    }
    static reg u8_i32(const uint8_t* p, size_t stride) {
        return _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)),
                                                       _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + stride))));
    }
    static reg u8_i16(const uint8_t* p, size_t stride) { return _mm512_cvtepu8_epi16(two128(p, stride)); }
    static reg i8_i16(const int8_t* p, size_t stride) { return _mm512_cvtepi8_epi16(two128(p, stride)); }
    static freg halves(const Half* p, size_t stride) { return _mm512_cvtph_ps(two128(p, stride)); }

    static reg and_(reg a, reg b) { return _mm512_and_si512(a, b); }
    static reg or_(reg a, reg b) { return _mm512_or_si512(a, b); }
    static reg add(reg a, reg b) { return _mm512_add_epi32(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_epi32(a, b); }
    static reg mullo(reg a, reg b) { return _mm512_mullo_epi32(a, b); }
    template <int n> static reg srli16(reg x) { return _mm512_srli_epi16(x, n); }
    template <int n> static reg slli16(reg x) { return _mm512_slli_epi16(x, n); }
    template <int n> static reg slli32(reg x) { return _mm512_slli_epi32(x, n); }
    template <int n> static reg srai32(reg x) { return _mm512_srai_epi32(x, n); }
    static reg sll32(reg x, __m128i n) { return _mm512_sll_epi32(x, n); }
    static reg dpbusd4(reg acc, reg u, const int8_t* p) {
        __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*reinterpret_cast<const int32_t*>(p)));
        return acc;
    }
    static reg dpwssd2(reg acc, reg x, const int16_t* p) {
        __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*reinterpret_cast<const int32_t*>(p)));
        return acc;
    }

    static freg fzero() { return _mm512_setzero_ps(); }
    static freg fset1(float x) { return _mm512_set1_ps(x); }
    static freg fadd(freg a, freg b) { return _mm512_add_ps(a, b); }
    static freg fsub(freg a, freg b) { return _mm512_sub_ps(a, b); }
    static freg fmul(freg a, freg b) { return _mm512_mul_ps(a, b); }
    static freg to_float(reg x) { return _mm512_cvtepi32_ps(x); }
    static void store(float* p, freg x) { _mm512_storeu_ps(p, x); }
};

// Q4_K: 8 tokens at a time (2 x 8 sub-block accumulators and 8 sums), 4% faster than 6 and 7%
// than 4; Q6_K keeps 4 sub-block sums per token, so 4 tokens.
using Gemms = X86Gemms<Zmm16, Ymm8<VnniGemmDot>, 8, 4>;
}  // namespace

const GemmTable kAvx512GemmTable{Gemms::table, sizeof Gemms::table / sizeof Gemms::table[0]};

}  // namespace pyllama
