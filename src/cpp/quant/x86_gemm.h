// x86 GEMM kernels over repacked tiles (repack.h, gemm.h), shared by the AVX2 and AVX-512 levels:
// x86_avx2_gemm.cpp and x86_avx512_gemm.cpp include this file, each compiled with its own flags,
// and differ only in the Dot policy (AVX2's maddubs+madd, or AVX-512 VNNI's dpbusd/dpwssd):
//   dpbusd4(acc, u, p): acc + per int32 lane, the 4 unsigned bytes of u times the 4 signed bytes at p
//   dpwssd2(acc, x, p): acc + per int32 lane, the 2 int16 of x times the 2 int16 at p
// As in x86_kernels.h, everything here has internal linkage and calls no inline function of the
// shared headers (see that file's header comment: ISA code must never leak into baseline code).
//
// One call computes a tile of 8 rows for kTokens tokens at a time: each 32-byte weight register
// (4 elements of each of the 8 rows) is unpacked once and multiplied against each token's 4
// activation bytes broadcast to all lanes, so the lanes are the 8 rows. Per sub-block the int32
// lane sums are multiplied by the rows' scales (vector of 8) and summed; the mins (Q4_K) and the
// -32 offset (Q6_K) come from the Q8_K block sums, as in the vec_dots. Integer parts are exact, and
// since each lane is one row, the per-super-block float steps are vec_dot_scalar.cpp's own, in its
// order and without FMA: every level's GEMM returns the scalar vec_dot's results bit for bit (a
// few more float operations per 64 multiply-adds, and logits that never depend on the level: a
// different rounding of one output can flip the 8-bit rounding of the next layer's activations,
// which moved tiny-llama's logits by 0.05 when these steps used FMA).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "quant/blocks.h"
#include "quant/gemm.h"
#include "quant/gemm_token_loop.h"
#include "quant/repack.h"

namespace pyllama {
namespace {

__m256i gemm_load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 8 fp16 at p as floats.
__m256 load_halves(const Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// Per-sub-block scales of the 8 rows as int32 lanes.
__m256i scales_u8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }

template <class Dot>
struct Q4KTile {
    // d8 d sum_j sc_j (q . q8)_j - d8 dmin sum_j mn_j (bsums_2j + bsums_2j+1), kT tokens at a time.
    template <int kT>
    struct K {
        static void run(const BlockQ4_Kx8* w, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* sums32,
                        float* const* y) {
            const __m256i low4 = _mm256_set1_epi8(0x0f);
            __m256 acc[kT];
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps();
            for (int64_t i = 0; i < nb; ++i) {
                const BlockQ4_Kx8& b = w[i];
                __m256i sums[kT];
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) sums[t] = _mm256_setzero_si256();
                // Quarter q: sub-blocks 2q (low nibbles) and 2q + 1 (high) together, so each token
                // has two independent vpdpbusd chains (2 kT in flight hide its latency) and each
                // 32-byte load serves both. A loop, not unrolled: unrolled, GCC interleaved the
                // quarters and spilled accumulators (271 -> 292 GOP/s on one core).
#pragma GCC unroll 1
                for (int q = 0; q < 4; ++q) {
                    __m256i lo[kT], hi[kT];
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t) lo[t] = hi[t] = _mm256_setzero_si256();
                    PYLLAMA_UNROLL
                    for (int g = 0; g < 8; ++g) {
                        const __m256i bytes = gemm_load256(b.qs + 256 * q + 32 * g);
                        const __m256i wl = _mm256_and_si256(bytes, low4);
                        const __m256i wh = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
                        PYLLAMA_UNROLL
                        for (int t = 0; t < kT; ++t) {
                            lo[t] = Dot::dpbusd4(lo[t], wl, a[t][i].qs + 64 * q + 4 * g);
                            hi[t] = Dot::dpbusd4(hi[t], wh, a[t][i].qs + 64 * q + 32 + 4 * g);
                        }
                    }
                    const __m256i sl = scales_u8(b.scales + 16 * q), sh = scales_u8(b.scales + 16 * q + 8);
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t)
                        sums[t] = _mm256_add_epi32(_mm256_add_epi32(sums[t], _mm256_mullo_epi32(lo[t], sl)),
                                                   _mm256_mullo_epi32(hi[t], sh));
                }
                __m256i mins[4];  // (mn_2k, mn_2k+1) int16 pairs, one pair per row
                PYLLAMA_UNROLL
                for (int k = 0; k < 4; ++k)
                    mins[k] = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.mins + 16 * k)));
                const __m256 d = load_halves(b.d), dmin = load_halves(b.dmin);
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) {
                    // M = sum_j mn_j B_j, B_j the sum of activations 32j .. 32j+31, two j at a time
                    __m256i m = _mm256_setzero_si256();
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 4; ++k) m = Dot::dpwssd2(m, mins[k], sums32[t] + 8 * i + 2 * k);
                    // vec_dot_scalar.cpp's float steps, lane by lane: (d d8) S - (dmin d8) M, added to the sum
                    const __m256 d8 = _mm256_set1_ps(a[t][i].d);
                    const __m256 scaled = _mm256_mul_ps(_mm256_mul_ps(d, d8), _mm256_cvtepi32_ps(sums[t]));
                    const __m256 mins_part = _mm256_mul_ps(_mm256_mul_ps(dmin, d8), _mm256_cvtepi32_ps(m));
                    acc[t] = _mm256_add_ps(acc[t], _mm256_sub_ps(scaled, mins_part));
                }
            }
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) _mm256_storeu_ps(y[t], acc[t]);
        }
    };
};

template <class Dot>
struct Q6KTile {
    // d8 d (sum_j sc_j (q . q8)_j - 32 sum_j sc_j bsums_j), kT tokens at a time.
    template <int kT>
    struct K {
        static void run(const BlockQ6_Kx8* w, int64_t nb, const BlockQ8_K* const* a, const int16_t* const*,
                        float* const* y) {
            const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
            __m256 acc[kT];
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps();
            for (int64_t i = 0; i < nb; ++i) {
                const BlockQ6_Kx8& b = w[i];
                // (sc_2k, sc_2k+1) int16 pairs, one pair per row. Loaded again where used rather
                // than kept: 8 more live registers made GCC spill the accumulators.
                auto scale_pairs = [&b](int64_t k) {
                    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales + 16 * k)));
                };
                __m256i sums[kT];
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) {  // -32 sum_j sc_j bsums_j
                    __m256i off = _mm256_setzero_si256();
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 8; ++k) off = Dot::dpwssd2(off, scale_pairs(k), a[t][i].bsums + 2 * k);
                    sums[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
                }
                // Part p: half p/2, groups 4 (p%2) .. 4 (p%2) + 3. A loop, not unrolled, so that only
                // one part's 4 kT sub-block sums are live at a time.
#pragma GCC unroll 1
                for (int64_t part = 0; part < 4; ++part) {
                    const int64_t half = part / 2, odd = part % 2;
                    const BlockQ6_Kx8::Half128& h128 = b.halves[half];
                    // s[k]: elements 32k + 4g + e of the half, g in 4 odd .. 4 odd + 3: sub-block 8 half + 2k + odd
                    __m256i s[4][kT];
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 4; ++k)
                        PYLLAMA_UNROLL
                        for (int t = 0; t < kT; ++t) s[k][t] = _mm256_setzero_si256();
                    PYLLAMA_UNROLL
                    for (int gi = 0; gi < 4; ++gi) {
                        const int64_t g = 4 * odd + gi;
                        const __m256i l0 = gemm_load256(h128.ql + 32 * g);        // elements 4g+e, 64+4g+e
                        const __m256i l1 = gemm_load256(h128.ql + 32 * (g + 8));  // 32+4g+e, 96+4g+e
                        const __m256i h = gemm_load256(h128.qh + 32 * g);
                        const __m256i wq[4] = {
                            _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(h, 4), bits45)),
                            _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(h, 2), bits45)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(h, bits45)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                            _mm256_and_si256(_mm256_srli_epi16(h, 2), bits45)),
                        };
                        PYLLAMA_UNROLL
                        for (int k = 0; k < 4; ++k)
                            PYLLAMA_UNROLL
                            for (int t = 0; t < kT; ++t)
                                s[k][t] = Dot::dpbusd4(s[k][t], wq[k], a[t][i].qs + 128 * half + 32 * k + 4 * g);
                    }
                    // The pair's low int16 (odd = 0) or high one, sign-extended.
                    const __m128i to_high = _mm_cvtsi64_si128(16 - 16 * odd);
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 4; ++k) {  // sub-block 8 half + 2k + odd: pair 4 half + k
                        const __m256i sc = _mm256_srai_epi32(_mm256_sll_epi32(scale_pairs(4 * half + k), to_high), 16);
                        PYLLAMA_UNROLL
                        for (int t = 0; t < kT; ++t) sums[t] = _mm256_add_epi32(sums[t], _mm256_mullo_epi32(s[k][t], sc));
                    }
                }
                const __m256 d = load_halves(b.d);
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t)
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(a[t][i].d)),
                                                                 _mm256_cvtepi32_ps(sums[t])));
            }
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) _mm256_storeu_ps(y[t], acc[t]);
        }
    };
};

// The table of one x86 level. kTokensQ4K, kTokensQ6K: how many tokens share each unpacked weight
// register (as many as the level's registers hold accumulators for).
template <class Dot, int kTokensQ4K, int kTokensQ6K>
struct X86Gemms {
    static void q4_K(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t* sums,
                     int64_t n_tokens, float* y, int64_t y_stride) {
        gemm_token_blocks<kTokensQ4K, Q4KTile<Dot>::template K, BlockQ4_Kx8>(n_in, w, n_tiles, act, sums, n_tokens, y, y_stride);
    }
    static void q6_K(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t* sums,
                     int64_t n_tokens, float* y, int64_t y_stride) {
        gemm_token_blocks<kTokensQ6K, Q6KTile<Dot>::template K, BlockQ6_Kx8>(n_in, w, n_tiles, act, sums, n_tokens, y, y_stride);
    }
    static constexpr GemmKernel table[] = {
        {GGMLType::Q4_K, q4_K},
        {GGMLType::Q6_K, q6_K},
    };
};

}  // namespace
}  // namespace pyllama
