// The AVX-512 level of the SIMD kernels (simd/kernels.h): generic.h over 16-float registers.
// GCC 12 warns that the AVX-512 intrinsics' deliberately undefined sources (_mm512_undefined_ps
// and the like) are used uninitialized, wherever they are inlined (GCC bug 105593). The same code
// compiled for AVX2 (x86_avx2.cpp) keeps these warnings on.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "simd/generic.h"

namespace pyllama {
namespace {

struct Avx512 {
    using reg = __m512;
    static constexpr int N = 16;
    // 32 registers: 8 rows x 1 register of scores (a key block) + 1 key + 1 query;
    // 4 rows x 4 registers of output (64 dimensions) + 4 values + 1 weight.
    static constexpr int kScoreRows = 8;
    static constexpr int kAccRows = 4, kAccVecs = 4;

    static reg zero() { return _mm512_setzero_ps(); }
    static reg set1(float x) { return _mm512_set1_ps(x); }
    static reg load(const float* p) { return _mm512_loadu_ps(p); }
    static reg load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
    static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
    static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
    static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
    static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
    static reg round(reg x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static reg pow2(reg n) {
        const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
    }
    static reg select_lt(reg a, reg b, reg x, reg y) {
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
    }
    static float reduce_max(reg x) { return _mm512_reduce_max_ps(x); }
    static float reduce_add(reg x) { return _mm512_reduce_add_ps(x); }
    static float first(reg x) { return _mm512_cvtss_f32(x); }
    static float to_float(uint16_t h) { return _cvtsh_ss(h); }
};

}  // namespace

extern const SimdKernels kAvx512SimdKernels = simd_kernel_table<Avx512>();

}  // namespace pyllama
