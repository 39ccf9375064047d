// x86 SIMD kernels shared by the AVX2 and AVX-512 levels. Only x86_avx2.cpp and x86_avx512.cpp
// include this file, each compiled with its own instruction-set flags; the two differ in the few
// operations of the Dot policy: how they multiply-add bytes (AVX2's maddubs+madd or AVX-512
// VNNI's dpbusd) and how they turn a 32-bit mask into bytes (a shuffle and compare, or an
// AVX-512BW masked move).
//
// Everything here has internal linkage (anonymous namespace), and these files call no inline
// function of the shared headers (blocks.h's helpers, the standard library): an inline function
// compiled with AVX flags would be a weak symbol the linker could pick for the baseline code
// too, which would then fault on older CPUs. tests/cpp/run_kernel_tests.sh checks the objects.
//
// The integer parts are exact, as in the scalar kernels (vec_dot_scalar.cpp): per block, lanes of
// int32 sums of int8 products. Only the float accumulation of the per-block values differs in
// order (and uses FMA). The activation quantizers produce the scalar ones' bytes exactly.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "quant/blocks.h"
#include "quant/k_scales_simd.h"
#include "quant/quant.h"
#include "quant/scalar_kernels.h"

namespace pyllama {
namespace {

// ---- small helpers ----

float half_to_float(const Half& h) {
    uint16_t u;
    std::memcpy(&u, h.bytes, 2);
    return _cvtsh_ss(u);
}
Half float_to_half(float f) {
    const uint16_t u = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    return Half{{static_cast<uint8_t>(u & 0xff), static_cast<uint8_t>(u >> 8)}};
}

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
__m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0-15), then high (16-31).
__m256i unpack_nibbles(const uint8_t* qs) {
    const __m128i b = load128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
}

// Signed x signed byte dot products through the unsigned x signed instruction: |x| times y with
// x's sign moved onto y. Exact for x in [-128, 127] and y in [-127, 127] (activations never
// hold -128).
template <class Dot>
__m256i dot_s8(__m256i x, __m256i y) {
    return Dot::dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// ---- vec_dot ----

// The quants of one 32-element block as 32 bytes in element order: signed for the types without
// a min (Q4_0: q - 8, Q5_0: q - 16, Q8_0: q), unsigned for those with one (Q4_1, Q5_1: 0..31).
template <class Dot>
__m256i block_quants(const BlockQ4_0& b) {
    return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8));
}
template <class Dot>
__m256i block_quants(const BlockQ4_1& b) {
    return unpack_nibbles(b.qs);
}
template <class Dot>
__m256i block_quants(const BlockQ8_0& b) {
    return load256(b.qs);
}
uint32_t load_qh(const uint8_t qh[4]) {
    uint32_t u;
    std::memcpy(&u, qh, 4);
    return u;
}
// Q5_0: the nibble with 0xf0 or-ed in where the fifth bit is clear, i.e. nibble - 16 as int8.
template <class Dot>
__m256i block_quants(const BlockQ5_0& b) {
    return _mm256_or_si256(unpack_nibbles(b.qs), Dot::spread_bits(~load_qh(b.qh), _mm256_set1_epi8(int8_t(0xf0))));
}
template <class Dot>
__m256i block_quants(const BlockQ5_1& b) {
    return _mm256_or_si256(unpack_nibbles(b.qs), Dot::spread_bits(load_qh(b.qh), _mm256_set1_epi8(0x10)));
}

// Q4_0, Q5_0, Q8_0 (x = d q, q signed) against Q8_0: d d8 (q . q8) per block.
template <class Dot, class Block>
float dot_scaled_q8_0(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_0*>(va);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK; ++i) {
        const __m256 d = _mm256_set1_ps(half_to_float(w[i].d) * half_to_float(a[i].d));
        const __m256i sums = dot_s8<Dot>(block_quants<Dot>(w[i]), load256(a[i].qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc);
    }
    return hsum(acc);
}

// Q4_1, Q5_1 (x = d q + m, q unsigned) against Q8_1: d d8 (q . q8) + m s per block.
template <class Dot, class Block>
float dot_scaled_min_q8_1(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_1*>(va);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / kQK; ++i) {
        const __m256 d = _mm256_set1_ps(half_to_float(w[i].d) * half_to_float(a[i].d));
        const __m256i sums = Dot::dot_u8s8(block_quants<Dot>(w[i]), load256(a[i].qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc);
        mins += half_to_float(w[i].m) * half_to_float(a[i].s);
    }
    return hsum(acc) + mins;
}

// Q4_K and Q5_K against Q8_K: d d8 sum_j sc_j (q . q8)_j - dmin d8 sum_j mn_j sum(q8)_j.
template <class Block>
float dot_k_with_mins_q8_K(int64_t n, const void* vw, const void* va) {
    constexpr bool kFifthBit = std::is_same<Block, BlockQ5_K>::value;
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_K*>(va);
    const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sc[8], mn[8];
        decode_k_scales(w[i].scales, sc, mn);
        // mn_j * (bsums[2j] + bsums[2j+1]) in lane j
        const __m128i mn8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
        const __m256i min_sums = _mm256_madd_epi16(load256(a[i].bsums), mn16);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[i].dmin) * a[i].d),
                                  _mm256_cvtepi32_ps(min_sums), acc_min);
        __m256i qh = _mm256_setzero_si256();  // Q5_K: bits 2 pair, 2 pair + 1 of byte l: element l's fifth bits
        if constexpr (kFifthBit) qh = load256(w[i].qh);
        __m256i sums = _mm256_setzero_si256();
        for (int pair = 0; pair < 4; ++pair) {  // 64 elements: 32 bytes of low, then high nibbles
            const __m256i bytes = load256(w[i].qs + 32 * pair);
            __m256i lo = _mm256_and_si256(bytes, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
            if constexpr (kFifthBit) {  // qh's bits 0 and 1 (of each byte) moved to bit 4
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
                qh = _mm256_srli_epi16(qh, 2);
            }
            const __m256i p_lo = _mm256_maddubs_epi16(lo, load256(a[i].qs + 64 * pair));
            const __m256i p_hi = _mm256_maddubs_epi16(hi, load256(a[i].qs + 64 * pair + 32));
            sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p_lo, _mm256_set1_epi16(sc[2 * pair])));
            sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p_hi, _mm256_set1_epi16(sc[2 * pair + 1])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[i].d) * a[i].d), _mm256_cvtepi32_ps(sums), acc);
    }
    return hsum(acc) - hsum(acc_min);
}

// Q6_K against Q8_K: d d8 sum_j sc_j ((q - 32) . q8)_j over 16 sub-blocks of 16. The -32 offset
// is applied once per block through the activation sums: 32 sum_j sc_j bsums_j.
float dot_q6_K_q8_K(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const BlockQ6_K*>(vw);
    const auto* a = static_cast<const BlockQ8_K*>(va);
    const __m256i low4 = _mm256_set1_epi8(0x0f), low2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const int8_t* sc = w[i].scales;
        const __m256i offset_sums = _mm256_madd_epi16(_mm256_cvtepi8_epi16(load128(sc)), load256(a[i].bsums));
        __m256i sums = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset_sums, 5));
        for (int half = 0; half < 2; ++half) {
            const __m256i ql0 = load256(w[i].ql + 64 * half), ql1 = load256(w[i].ql + 64 * half + 32);
            const __m256i qh = load256(w[i].qh + 32 * half);
            auto high2 = [&](int shift) {  // 2 bits of qh moved to bits 4-5
                return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), low2), 4);
            };
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low4), high2(0)),
                _mm256_or_si256(_mm256_and_si256(ql1, low4), high2(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), high2(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), high2(6)),
            };
            for (int k = 0; k < 4; ++k) {  // 32 elements, two sub-blocks of 16
                const int j = 8 * half + 2 * k;
                const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[j + 1]), _mm_set1_epi16(sc[j]));
                const __m256i p = _mm256_maddubs_epi16(q[k], load256(a[i].qs + 128 * half + 32 * k));
                sums = _mm256_add_epi32(sums, _mm256_madd_epi16(p, scales));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[i].d) * a[i].d), _mm256_cvtepi32_ps(sums), acc);
    }
    return hsum(acc);
}

// Float rows of F32, F16 or BF16 elements, each widened to float exactly (so for the half types
// the products are exact too, and FMA rounds as a multiply and an add would). 32 elements a step
// into four vector accumulators, as two load16s of each row: sixteen elements as two vectors, in
// an order that only has to be the same for both rows (BF16: the even and the odd elements, one
// shift or mask each, cheaper than widening eight at a time); then eight at a time, then the
// tail one element at a time.
struct F32Elements {
    static constexpr int kBytes = 4;
    static __m256 load8(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
    static void load16(const uint8_t* p, __m256& lo, __m256& hi) { lo = load8(p); hi = load8(p + 32); }
    static float load1(const uint8_t* p) {
        float f;
        std::memcpy(&f, p, 4);
        return f;
    }
};
struct F16Elements {
    static constexpr int kBytes = 2;
    static __m256 load8(const uint8_t* p) { return _mm256_cvtph_ps(load128(p)); }
    static void load16(const uint8_t* p, __m256& lo, __m256& hi) { lo = load8(p); hi = load8(p + 16); }
    static float load1(const uint8_t* p) { return half_to_float(Half{{p[0], p[1]}}); }
};
// A bfloat16 is the top half of a float's bits. (AVX-512 BF16's vdpbf16ps, which Zen 4 has, was
// measured at 1.5-2x this speed on rows in L1 but the same on rows streamed from memory, as
// matmul's weights are; it flushes subnormals and would need a CPU check of its own.)
struct BF16Elements {
    static constexpr int kBytes = 2;
    static __m256 load8(const uint8_t* p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
    }
    static void load16(const uint8_t* p, __m256& even, __m256& odd) {
        const __m256i v = load256(p);
        even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
    }
    static float load1(const uint8_t* p) {
        const uint32_t u = static_cast<uint32_t>(p[0] | (p[1] << 8)) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};

template <class Elements>
float dot_float(int64_t n, const void* vw, const void* va) {
    constexpr int kBytes = Elements::kBytes;
    const auto* w = static_cast<const uint8_t*>(vw);
    const auto* a = static_cast<const uint8_t*>(va);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 2; ++k) {
            const int64_t at = kBytes * (i + 16 * k);
            __m256 w0, w1, a0, a1;
            Elements::load16(w + at, w0, w1);
            Elements::load16(a + at, a0, a1);
            acc[2 * k] = _mm256_fmadd_ps(w0, a0, acc[2 * k]);
            acc[2 * k + 1] = _mm256_fmadd_ps(w1, a1, acc[2 * k + 1]);
        }
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(Elements::load8(w + kBytes * i), Elements::load8(a + kBytes * i), acc[0]);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += Elements::load1(w + kBytes * i) * Elements::load1(a + kBytes * i);
    return sum;
}

// ---- activation quantizers (byte-identical to quantize_act.cpp for finite inputs) ----

// (A function, not a namespace-scope constant: a dynamic initializer would run AVX code at load time.)
__m256 abs_mask() { return _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)); }

// C's roundf (halves away from zero), exactly: truncate, then step away from zero when the
// dropped fraction (exact in float) is at least one half.
__m256 round_half_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_and_ps(_mm256_sub_ps(v, t), abs_mask());
    const __m256 one = _mm256_or_ps(_mm256_andnot_ps(abs_mask(), v), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
}

// int32 lanes truncated to their low byte, sign-extended (C's conversion to int8_t), so the
// saturating packs below keep them unchanged.
__m256i truncate_to_i8(__m256i v) { return _mm256_srai_epi32(_mm256_slli_epi32(v, 24), 24); }

// Four vectors of int32 in [-128, 127] -> 32 int8 in element order.
__m256i pack_i32_to_i8(const __m256i v[4]) {
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One 32-element block of Q8_0/Q8_1: writes qs, returns the float scale d and the sum of qs.
struct Q8Block {
    float d;
    int32_t sum;
};
Q8Block quantize_q8_block(const float* x, int8_t* qs) {
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], abs_mask()));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    const __m256 limit = _mm256_set1_ps(2147483648.0f);
    __m256i q[4], sum = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
        __m256 r = round_half_away(_mm256_mul_ps(v[k], id));
        // quantize_act.cpp's round_to_int8 maps inf/nan (and the never-reached |r| >= 2^31) to 0
        r = _mm256_and_ps(r, _mm256_cmp_ps(_mm256_and_ps(r, abs_mask()), limit, _CMP_LT_OQ));
        q[k] = truncate_to_i8(_mm256_cvtps_epi32(r));
        sum = _mm256_add_epi32(sum, q[k]);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_i32_to_i8(q));
    return {d, hsum_i32(sum)};
}

void quantize_q8_0(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ8_0*>(y);
    for (int64_t i = 0; i < n / kQK; ++i) b[i].d = float_to_half(quantize_q8_block(x + kQK * i, b[i].qs).d);
}

void quantize_q8_1(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ8_1*>(y);
    for (int64_t i = 0; i < n / kQK; ++i) {
        const Q8Block q = quantize_q8_block(x + kQK * i, b[i].qs);
        b[i].d = float_to_half(q.d);
        b[i].s = float_to_half(static_cast<float>(q.sum) * q.d);
    }
}

void quantize_q8_K(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ8_K*>(y);
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        // max(|x|), ignoring NaN as the scalar loop's `ax > amax` does (max_ps keeps its second
        // operand when either is NaN)
        __m256 vmax = _mm256_setzero_ps();
        for (int j = 0; j < kQK_K; j += 8) vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask()), vmax);
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (amax == 0.0f) {
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        // The signed value of the first element of largest magnitude.
        float max = 0.0f;
        const __m256 vamax = _mm256_set1_ps(amax);
        for (int j = 0; j < kQK_K; j += 8) {
            const int hits = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask()), vamax, _CMP_EQ_OQ));
            if (hits) {
                max = x[j + __builtin_ctz(static_cast<unsigned>(hits))];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 viscale = _mm256_set1_ps(iscale);
        for (int j = 0; j < kQK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; ++k) {
                // ggml's nearest_int: add 1.5 * 2^23 and read the low mantissa bits
                const __m256 shifted = _mm256_add_ps(_mm256_mul_ps(viscale, _mm256_loadu_ps(x + j + 8 * k)),
                                                     _mm256_set1_ps(12582912.0f));
                const __m256i v = _mm256_sub_epi32(
                    _mm256_and_si256(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x007fffff)),
                    _mm256_set1_epi32(0x00400000));
                q[k] = truncate_to_i8(_mm256_min_epi32(v, _mm256_set1_epi32(127)));
            }
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + j), pack_i32_to_i8(q));
        }
        for (int g = 0; g < kQK_K / 16; ++g) {  // sums of 16 int8: widen to int16, add pairs
            const __m256i q16 = _mm256_cvtepi8_epi16(load128(b[i].qs + 16 * g));
            b[i].bsums[g] = static_cast<int16_t>(hsum_i32(_mm256_madd_epi16(q16, _mm256_set1_epi16(1))));
        }
        b[i].d = 1.0f / iscale;
    }
}

// Eight floats -> IEEE halves (the hardware conversion: round to nearest even, as fp32_to_fp16).
__m128i floats_to_f16(__m256 v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }

// quantize_act.cpp's fp32_to_bf16, eight at a time: round to nearest even on the top 16 bits;
// a NaN keeps its top bits with the quiet bit set (no rounding carry into the exponent).
__m128i floats_to_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                              _mm256_set1_epi32(0x7f800000));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
    const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    const __m256i top = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
    // eight values of 0..0xffff: the unsigned-saturating pack keeps them; it works per 128-bit lane
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(top, top), 0x08));
}

// n floats -> n little-endian 16-bit values, eight at a time; the last n % 8 through a padded vector.
template <__m128i (*Convert)(__m256)>
void quantize_16bit(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), Convert(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float tail[8] = {};
        uint8_t bytes[16];
        std::memcpy(tail, x + i, sizeof(float) * static_cast<size_t>(n - i));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes), Convert(_mm256_loadu_ps(tail)));
        std::memcpy(out + 2 * i, bytes, 2 * static_cast<size_t>(n - i));
    }
}

// The table of one x86 level. `Dot` provides dot_u8s8(u, s): unsigned by signed bytes, summed in
// groups of four into int32 lanes; and spread_bits(bits, v): byte j of v where bit j of the
// 32-bit `bits` is set, 0 elsewhere.
template <class Dot>
const MatmulKernel kX86Kernels[] = {
    {GGMLType::F32, GGMLType::F32, pyllama::quantize_act_f32, dot_float<F32Elements>},
    {GGMLType::F16, GGMLType::F16, quantize_16bit<floats_to_f16>, dot_float<F16Elements>},
    {GGMLType::BF16, GGMLType::BF16, quantize_16bit<floats_to_bf16>, dot_float<BF16Elements>},
    {GGMLType::Q4_0, GGMLType::Q8_0, quantize_q8_0, dot_scaled_q8_0<Dot, BlockQ4_0>},
    {GGMLType::Q4_1, GGMLType::Q8_1, quantize_q8_1, dot_scaled_min_q8_1<Dot, BlockQ4_1>},
    {GGMLType::Q5_0, GGMLType::Q8_0, quantize_q8_0, dot_scaled_q8_0<Dot, BlockQ5_0>},
    {GGMLType::Q5_1, GGMLType::Q8_1, quantize_q8_1, dot_scaled_min_q8_1<Dot, BlockQ5_1>},
    {GGMLType::Q8_0, GGMLType::Q8_0, quantize_q8_0, dot_scaled_q8_0<Dot, BlockQ8_0>},
    {GGMLType::Q4_K, GGMLType::Q8_K, quantize_q8_K, dot_k_with_mins_q8_K<BlockQ4_K>},
    {GGMLType::Q5_K, GGMLType::Q8_K, quantize_q8_K, dot_k_with_mins_q8_K<BlockQ5_K>},
    {GGMLType::Q6_K, GGMLType::Q8_K, quantize_q8_K, dot_q6_K_q8_K},
};

}  // namespace
}  // namespace pyllama
