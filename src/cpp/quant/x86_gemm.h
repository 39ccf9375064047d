// x86 GEMM kernels over repacked tiles (repack.h, gemm.h), shared by the AVX2 and AVX-512 levels:
// x86_avx2_gemm.cpp and x86_avx512_gemm.cpp include this file, each compiled with its own flags.
// The kernels are written once over a vector policy V (Ymm8 below: one tile, 256-bit registers;
// x86_avx512_gemm.cpp's Zmm16: two tiles in 512-bit registers), whose Dot-like members are
//   dpbusd4(acc, u, p): acc + per int32 lane, the 4 unsigned bytes of u times the 4 signed bytes at p
//   dpwssd2(acc, x, p): acc + per int32 lane, the 2 int16 of x times the 2 int16 at p
// (AVX2's maddubs+madd, or AVX-512 VNNI's dpbusd/dpwssd). As in x86_kernels.h, everything here
// has internal linkage and calls no inline function of the shared headers (see that file's header
// comment: ISA code must never leak into baseline code).
//
// One call computes a tile of 8 rows (or V's tiles) for kTokens tokens at a time: each weight register
// (4 elements of each row) is unpacked once and multiplied against each token's 4
// activation bytes broadcast to all lanes, so the lanes are the rows. Per sub-block the int32
// lane sums are multiplied by the rows' scales and summed; the mins (Q4_K) and the
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

// The vector policy of a level's GEMM over one tile of 8 rows: 256-bit registers, one lane per row.
// x86_avx512_gemm.cpp adds a 512-bit one that takes two tiles at once (16 rows, the second tile's
// bytes `stride` on from the first's), so the kernels below read every tile field through it.
// Dot supplies the byte and int16 multiply-adds (dpbusd4, dpwssd2 above).
template <class Dot>
struct Ymm8 {
    using reg = __m256i;
    using freg = __m256;
    static constexpr int kTiles = 1;

    static reg zero() { return _mm256_setzero_si256(); }
    static reg bytes(char b) { return _mm256_set1_epi8(b); }
    // 32 bytes at p.
    static reg load(const uint8_t* p, size_t) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
    // 8 bytes at p as unsigned int32 lanes; 16 bytes at p as unsigned or signed int16.
    static reg u8_i32(const uint8_t* p, size_t) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
    static reg u8_i16(const uint8_t* p, size_t) { return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
    static reg i8_i16(const int8_t* p, size_t) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
    // 8 fp16 at p as floats.
    static freg halves(const Half* p, size_t) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

    static reg and_(reg a, reg b) { return _mm256_and_si256(a, b); }
    static reg or_(reg a, reg b) { return _mm256_or_si256(a, b); }
    static reg add(reg a, reg b) { return _mm256_add_epi32(a, b); }
    static reg sub(reg a, reg b) { return _mm256_sub_epi32(a, b); }
    static reg mullo(reg a, reg b) { return _mm256_mullo_epi32(a, b); }
    template <int n> static reg srli16(reg x) { return _mm256_srli_epi16(x, n); }
    template <int n> static reg slli16(reg x) { return _mm256_slli_epi16(x, n); }
    template <int n> static reg slli32(reg x) { return _mm256_slli_epi32(x, n); }
    template <int n> static reg srai32(reg x) { return _mm256_srai_epi32(x, n); }
    static reg sll32(reg x, __m128i n) { return _mm256_sll_epi32(x, n); }
    static reg dpbusd4(reg acc, reg u, const int8_t* p) { return Dot::dpbusd4(acc, u, p); }
    static reg dpwssd2(reg acc, reg x, const int16_t* p) { return Dot::dpwssd2(acc, x, p); }

    static freg fzero() { return _mm256_setzero_ps(); }
    static freg fset1(float x) { return _mm256_set1_ps(x); }
    static freg fadd(freg a, freg b) { return _mm256_add_ps(a, b); }
    static freg fsub(freg a, freg b) { return _mm256_sub_ps(a, b); }
    static freg fmul(freg a, freg b) { return _mm256_mul_ps(a, b); }
    static freg to_float(reg x) { return _mm256_cvtepi32_ps(x); }
    static void store(float* p, freg x) { _mm256_storeu_ps(p, x); }
};

template <class V>
struct Q4KTile {
    // d8 d sum_j sc_j (q . q8)_j - d8 dmin sum_j mn_j (bsums_2j + bsums_2j+1), kT tokens at a time.
    template <int kT>
    struct K {
        static void run(const BlockQ4_Kx8* w, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* sums32,
                        float* const* y) {
            using reg = typename V::reg;
            using freg = typename V::freg;
            const size_t stride = nb * sizeof(BlockQ4_Kx8);  // to the next tile's block
            const reg low4 = V::bytes(0x0f);
            freg acc[kT];
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) acc[t] = V::fzero();
            for (int64_t i = 0; i < nb; ++i) {
                const BlockQ4_Kx8& b = w[i];
                reg sums[kT];
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) sums[t] = V::zero();
                // Quarter q: sub-blocks 2q (low nibbles) and 2q + 1 (high) together, so each token
                // has two independent vpdpbusd chains (2 kT in flight hide its latency) and each
                // 32-byte load serves both. A loop, not unrolled: unrolled, GCC interleaved the
                // quarters and spilled accumulators (271 -> 292 GOP/s on one core).
#pragma GCC unroll 1
                for (int q = 0; q < 4; ++q) {
                    reg lo[kT], hi[kT];
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t) lo[t] = hi[t] = V::zero();
                    PYLLAMA_UNROLL
                    for (int g = 0; g < 8; ++g) {
                        const reg bytes = V::load(b.qs + 256 * q + 32 * g, stride);
                        const reg wl = V::and_(bytes, low4);
                        const reg wh = V::and_(V::template srli16<4>(bytes), low4);
                        PYLLAMA_UNROLL
                        for (int t = 0; t < kT; ++t) {
                            lo[t] = V::dpbusd4(lo[t], wl, a[t][i].qs + 64 * q + 4 * g);
                            hi[t] = V::dpbusd4(hi[t], wh, a[t][i].qs + 64 * q + 32 + 4 * g);
                        }
                    }
                    const reg sl = V::u8_i32(b.scales + 16 * q, stride), sh = V::u8_i32(b.scales + 16 * q + 8, stride);
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t)
                        sums[t] = V::add(V::add(sums[t], V::mullo(lo[t], sl)), V::mullo(hi[t], sh));
                }
                reg mins[4];  // (mn_2k, mn_2k+1) int16 pairs, one pair per row
                PYLLAMA_UNROLL
                for (int k = 0; k < 4; ++k) mins[k] = V::u8_i16(b.mins + 16 * k, stride);
                const freg d = V::halves(b.d, stride), dmin = V::halves(b.dmin, stride);
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) {
                    // M = sum_j mn_j B_j, B_j the sum of activations 32j .. 32j+31, two j at a time
                    reg m = V::zero();
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 4; ++k) m = V::dpwssd2(m, mins[k], sums32[t] + 8 * i + 2 * k);
                    // vec_dot_scalar.cpp's float steps, lane by lane: (d d8) S - (dmin d8) M, added to the sum
                    const freg d8 = V::fset1(a[t][i].d);
                    const freg scaled = V::fmul(V::fmul(d, d8), V::to_float(sums[t]));
                    const freg mins_part = V::fmul(V::fmul(dmin, d8), V::to_float(m));
                    acc[t] = V::fadd(acc[t], V::fsub(scaled, mins_part));
                }
            }
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) V::store(y[t], acc[t]);
        }
    };
};

template <class V>
struct Q6KTile {
    // d8 d (sum_j sc_j (q . q8)_j - 32 sum_j sc_j bsums_j), kT tokens at a time.
    template <int kT>
    struct K {
        static void run(const BlockQ6_Kx8* w, int64_t nb, const BlockQ8_K* const* a, const int16_t* const*,
                        float* const* y) {
            using reg = typename V::reg;
            using freg = typename V::freg;
            const size_t stride = nb * sizeof(BlockQ6_Kx8);  // to the next tile's block
            const reg low4 = V::bytes(0x0f), bits45 = V::bytes(0x30);
            freg acc[kT];
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) acc[t] = V::fzero();
            for (int64_t i = 0; i < nb; ++i) {
                const BlockQ6_Kx8& b = w[i];
                // (sc_2k, sc_2k+1) int16 pairs, one pair per row. Loaded again where used rather
                // than kept: 8 more live registers made GCC spill the accumulators.
                auto scale_pairs = [&b, stride](int64_t k) { return V::i8_i16(b.scales + 16 * k, stride); };
                reg sums[kT];
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) {  // -32 sum_j sc_j bsums_j
                    reg off = V::zero();
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 8; ++k) off = V::dpwssd2(off, scale_pairs(k), a[t][i].bsums + 2 * k);
                    sums[t] = V::sub(V::zero(), V::template slli32<5>(off));
                }
                // Part p: half p/2, groups 4 (p%2) .. 4 (p%2) + 3. A loop, not unrolled, so that only
                // one part's 4 kT sub-block sums are live at a time.
#pragma GCC unroll 1
                for (int64_t part = 0; part < 4; ++part) {
                    const int64_t half = part / 2, odd = part % 2;
                    const BlockQ6_Kx8::Half128& h128 = b.halves[half];
                    // s[k]: elements 32k + 4g + e of the half, g in 4 odd .. 4 odd + 3: sub-block 8 half + 2k + odd
                    reg s[4][kT];
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 4; ++k)
                        PYLLAMA_UNROLL
                        for (int t = 0; t < kT; ++t) s[k][t] = V::zero();
                    PYLLAMA_UNROLL
                    for (int gi = 0; gi < 4; ++gi) {
                        const int64_t g = 4 * odd + gi;
                        const reg l0 = V::load(h128.ql + 32 * g, stride);        // elements 4g+e, 64+4g+e
                        const reg l1 = V::load(h128.ql + 32 * (g + 8), stride);  // 32+4g+e, 96+4g+e
                        const reg h = V::load(h128.qh + 32 * g, stride);
                        const reg wq[4] = {
                            V::or_(V::and_(l0, low4), V::and_(V::template slli16<4>(h), bits45)),
                            V::or_(V::and_(l1, low4), V::and_(V::template slli16<2>(h), bits45)),
                            V::or_(V::and_(V::template srli16<4>(l0), low4), V::and_(h, bits45)),
                            V::or_(V::and_(V::template srli16<4>(l1), low4), V::and_(V::template srli16<2>(h), bits45)),
                        };
                        PYLLAMA_UNROLL
                        for (int k = 0; k < 4; ++k)
                            PYLLAMA_UNROLL
                            for (int t = 0; t < kT; ++t)
                                s[k][t] = V::dpbusd4(s[k][t], wq[k], a[t][i].qs + 128 * half + 32 * k + 4 * g);
                    }
                    // The pair's low int16 (odd = 0) or high one, sign-extended.
                    const __m128i to_high = _mm_cvtsi64_si128(16 - 16 * odd);
                    PYLLAMA_UNROLL
                    for (int k = 0; k < 4; ++k) {  // sub-block 8 half + 2k + odd: pair 4 half + k
                        const reg sc = V::template srai32<16>(V::sll32(scale_pairs(4 * half + k), to_high));
                        PYLLAMA_UNROLL
                        for (int t = 0; t < kT; ++t) sums[t] = V::add(sums[t], V::mullo(s[k][t], sc));
                    }
                }
                const freg d = V::halves(b.d, stride);
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t)
                    acc[t] = V::fadd(acc[t], V::fmul(V::fmul(d, V::fset1(a[t][i].d)), V::to_float(sums[t])));
            }
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) V::store(y[t], acc[t]);
        }
    };
};

// The table of one x86 level: V's kernels, and One's (a policy over a single tile) for the tile
// left over when V takes two at a time. kTokensQ4K, kTokensQ6K: how many tokens share each
// unpacked weight register (as many as the level's registers hold accumulators for).
template <class V, class One, int kTokensQ4K, int kTokensQ6K>
struct X86Gemms {
    template <template <class> class Tile, class Block, int kTokens>
    static void run(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t* sums,
                    int64_t n_tokens, float* y, int64_t y_stride) {
        // Fewer tokens than a full group make the pass a read of the weights from memory, which
        // goes faster as one stream than as V's two (one-token GEMV on one core, Q6_K: 23 GB/s
        // one tile at a time, 12.5 two at a time).
        const int64_t calls = n_tokens >= kTokens ? n_tiles / V::kTiles : 0, done = calls * V::kTiles;
        gemm_token_blocks<kTokens, Tile<V>::template K, Block, V::kTiles>(n_in, w, calls, act, sums, n_tokens, y, y_stride);
        if (done < n_tiles)
            gemm_token_blocks<kTokens, Tile<One>::template K, Block, 1>(
                n_in, w + done * (n_in / kQK_K) * sizeof(Block), n_tiles - done, act, sums, n_tokens,
                y + done * kTileRows, y_stride);
    }
    static constexpr GemmKernel table[] = {
        {GGMLType::Q4_K, run<Q4KTile, BlockQ4_Kx8, kTokensQ4K>},
        {GGMLType::Q6_K, run<Q6KTile, BlockQ6_Kx8, kTokensQ6K>},
    };
};

}  // namespace
}  // namespace pyllama
