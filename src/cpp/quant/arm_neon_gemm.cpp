// The NEON level's GEMM over repacked tiles (repack.h, gemm.h), with the dotprod extension: as on
// x86, each 32 bytes of a tile hold 4 elements of each of 8 rows, here two 128-bit registers (rows
// 0-3 and 4-7), and sdot against one token's 4 activation bytes loaded into every lane (ld1r)
// adds 4 products to each row's int32 lane. sdot multiplies signed bytes, so Q6_K's quants are
// shifted to q - 32 after unpacking and need no offset term. Integer sums are exact and each lane
// takes vec_dot_scalar.cpp's float steps in its order (no fused multiply-add), so the results equal
// the scalar vec_dot's bit for bit. Compiled with -march=armv8.2-a+dotprod; internal linkage only
// (see arm_neon.cpp).
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "quant/gemm_token_loop.h"
#include "quant/isa_gemm.h"

namespace pyllama {
namespace {

// 4 fp16 as floats.
float32x4_t load_halves4(const Half* p) {
    uint16x4_t bits;
    std::memcpy(&bits, p, 8);
    return vcvt_f32_f16(vreinterpret_f16_u16(bits));
}

// The 4 activation bytes at p in every int32 lane.
int8x16_t broadcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

// 8 unsigned bytes as int32 for rows 0-3 and 4-7.
void widen_u8(const uint8_t* p, int32x4_t out[2]) {
    const uint16x8_t w = vmovl_u8(vld1_u8(p));
    out[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w)));
    out[1] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(w)));
}

template <int kT>
struct Q4KTile {
    // d8 d sum_j sc_j (q . q8)_j - d8 dmin sum_j mn_j B_j, B_j the sums of 32 activations.
    static void run(const BlockQ4_Kx8* w, int64_t nb, const BlockQ8_K* const* a, const int16_t* const* sums32,
                    float* const* y) {
        const uint8x16_t low4 = vdupq_n_u8(0x0f);
        float32x4_t acc[kT][2];
        PYLLAMA_UNROLL
        for (int t = 0; t < kT; ++t) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < nb; ++i) {
            const BlockQ4_Kx8& b = w[i];
            int32x4_t sums[kT][2], mins_part[kT][2];
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) sums[t][0] = sums[t][1] = mins_part[t][0] = mins_part[t][1] = vdupq_n_s32(0);
            PYLLAMA_UNROLL
            for (int j = 0; j < 8; ++j) {  // sub-block j: low (j even) or high nibbles of quarter j/2
                int32x4_t part[kT][2];
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) part[t][0] = part[t][1] = vdupq_n_s32(0);
                PYLLAMA_UNROLL
                for (int g = 0; g < 8; ++g) {
                    const uint8_t* q = b.qs + 256 * (j / 2) + 32 * g;
                    int8x16_t wq[2];
                    PYLLAMA_UNROLL
                    for (int h = 0; h < 2; ++h) {
                        const uint8x16_t bytes = vld1q_u8(q + 16 * h);
                        wq[h] = vreinterpretq_s8_u8(j % 2 ? vshrq_n_u8(bytes, 4) : vandq_u8(bytes, low4));
                    }
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t) {
                        const int8x16_t act = broadcast4(a[t][i].qs + 32 * j + 4 * g);
                        part[t][0] = vdotq_s32(part[t][0], wq[0], act);
                        part[t][1] = vdotq_s32(part[t][1], wq[1], act);
                    }
                }
                int32x4_t sc[2], mn[2];
                widen_u8(b.scales + 8 * j, sc);
                // mn_j of rows 0..7: every other byte of the (mn_2k, mn_2k+1) pairs, from j%2
                const uint8x16_t pairs = vld1q_u8(b.mins + 16 * (j / 2));
                const uint8x16_t picked = j % 2 ? vuzp2q_u8(pairs, pairs) : vuzp1q_u8(pairs, pairs);
                widen_u8(reinterpret_cast<const uint8_t*>(&picked), mn);
                PYLLAMA_UNROLL
                for (int t = 0; t < kT; ++t) {
                    const int32_t sum32 = sums32[t][8 * i + j];
                    PYLLAMA_UNROLL
                    for (int h = 0; h < 2; ++h) {
                        sums[t][h] = vmlaq_s32(sums[t][h], part[t][h], sc[h]);
                        mins_part[t][h] = vmlaq_n_s32(mins_part[t][h], mn[h], sum32);
                    }
                }
            }
            float32x4_t d[2] = {load_halves4(b.d), load_halves4(b.d + 4)};
            float32x4_t dmin[2] = {load_halves4(b.dmin), load_halves4(b.dmin + 4)};
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t)
                PYLLAMA_UNROLL
                for (int h = 0; h < 2; ++h) {  // vec_dot_scalar.cpp's steps: (d d8) S - (dmin d8) M, added
                    const float32x4_t scaled = vmulq_f32(vmulq_n_f32(d[h], a[t][i].d), vcvtq_f32_s32(sums[t][h]));
                    const float32x4_t minus = vmulq_f32(vmulq_n_f32(dmin[h], a[t][i].d), vcvtq_f32_s32(mins_part[t][h]));
                    acc[t][h] = vaddq_f32(acc[t][h], vsubq_f32(scaled, minus));
                }
        }
        PYLLAMA_UNROLL
        for (int t = 0; t < kT; ++t) {
            vst1q_f32(y[t], acc[t][0]);
            vst1q_f32(y[t] + 4, acc[t][1]);
        }
    }
};

template <int kT>
struct Q6KTile {
    // d8 d sum_j sc_j ((q - 32) . q8)_j
    static void run(const BlockQ6_Kx8* w, int64_t nb, const BlockQ8_K* const* a, const int16_t* const*,
                    float* const* y) {
        const uint8x16_t low4 = vdupq_n_u8(0x0f), bits45 = vdupq_n_u8(0x30);
        const int8x16_t offset = vdupq_n_s8(32);
        float32x4_t acc[kT][2];
        PYLLAMA_UNROLL
        for (int t = 0; t < kT; ++t) acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < nb; ++i) {
            const BlockQ6_Kx8& b = w[i];
            int32x4_t sums[kT][2];
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t) sums[t][0] = sums[t][1] = vdupq_n_s32(0);
            PYLLAMA_UNROLL
            for (int part = 0; part < 4; ++part) {  // half part/2, groups 4 (part%2) .. 4 (part%2) + 3
                const BlockQ6_Kx8::Half128& h128 = b.halves[part / 2];
                const int g0 = 4 * (part % 2);
                // s[k]: elements 32k + 4g + e of the half: sub-block 8 (part/2) + 2k + part%2
                int32x4_t s[4][kT][2];
                PYLLAMA_UNROLL
                for (int k = 0; k < 4; ++k)
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t) s[k][t][0] = s[k][t][1] = vdupq_n_s32(0);
                PYLLAMA_UNROLL
                for (int g = g0; g < g0 + 4; ++g) {
                    PYLLAMA_UNROLL
                    for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h+3
                        const uint8x16_t l0 = vld1q_u8(h128.ql + 32 * g + 16 * h);
                        const uint8x16_t l1 = vld1q_u8(h128.ql + 32 * (g + 8) + 16 * h);
                        const uint8x16_t hb = vld1q_u8(h128.qh + 32 * g + 16 * h);
                        const uint8x16_t q[4] = {
                            vorrq_u8(vandq_u8(l0, low4), vandq_u8(vshlq_n_u8(hb, 4), bits45)),
                            vorrq_u8(vandq_u8(l1, low4), vandq_u8(vshlq_n_u8(hb, 2), bits45)),
                            vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, bits45)),
                            vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), bits45)),
                        };
                        PYLLAMA_UNROLL
                        for (int k = 0; k < 4; ++k) {
                            const int8x16_t wq = vsubq_s8(vreinterpretq_s8_u8(q[k]), offset);
                            PYLLAMA_UNROLL
                            for (int t = 0; t < kT; ++t)
                                s[k][t][h] = vdotq_s32(s[k][t][h], wq,
                                                       broadcast4(a[t][i].qs + 128 * (part / 2) + 32 * k + 4 * g));
                        }
                    }
                }
                PYLLAMA_UNROLL
                for (int k = 0; k < 4; ++k) {  // sub-block 8 (part/2) + 2k + part%2: pair 4 (part/2) + k
                    const int8x16_t pairs = vld1q_s8(b.scales + 16 * (4 * (part / 2) + k));
                    const int8x16_t picked = part % 2 ? vuzp2q_s8(pairs, pairs) : vuzp1q_s8(pairs, pairs);
                    const int16x8_t sc16 = vmovl_s8(vget_low_s8(picked));
                    const int32x4_t sc[2] = {vmovl_s16(vget_low_s16(sc16)), vmovl_s16(vget_high_s16(sc16))};
                    PYLLAMA_UNROLL
                    for (int t = 0; t < kT; ++t)
                        PYLLAMA_UNROLL
                        for (int h = 0; h < 2; ++h) sums[t][h] = vmlaq_s32(sums[t][h], s[k][t][h], sc[h]);
                }
            }
            const float32x4_t d[2] = {load_halves4(b.d), load_halves4(b.d + 4)};
            PYLLAMA_UNROLL
            for (int t = 0; t < kT; ++t)
                PYLLAMA_UNROLL
                for (int h = 0; h < 2; ++h)
                    acc[t][h] = vaddq_f32(acc[t][h],
                                          vmulq_f32(vmulq_n_f32(d[h], a[t][i].d), vcvtq_f32_s32(sums[t][h])));
        }
        PYLLAMA_UNROLL
        for (int t = 0; t < kT; ++t) {
            vst1q_f32(y[t], acc[t][0]);
            vst1q_f32(y[t] + 4, acc[t][1]);
        }
    }
};

// Tokens per unpacked weight: Q4_K keeps 3 x 2 vectors per token, Q6_K 5 x 2 (of 32 registers).
void gemm_q4_K(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t* sums,
               int64_t n_tokens, float* y, int64_t y_stride) {
    gemm_token_blocks<4, Q4KTile, BlockQ4_Kx8>(n_in, w, n_tiles, act, sums, n_tokens, y, y_stride);
}
void gemm_q6_K(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t* sums,
               int64_t n_tokens, float* y, int64_t y_stride) {
    gemm_token_blocks<2, Q6KTile, BlockQ6_Kx8>(n_in, w, n_tiles, act, sums, n_tokens, y, y_stride);
}

const GemmKernel kNeonGemms[] = {
    {GGMLType::Q4_K, gemm_q4_K},
    {GGMLType::Q6_K, gemm_q6_K},
};

}  // namespace

const GemmTable kNeonGemmTable{kNeonGemms, sizeof kNeonGemms / sizeof kNeonGemms[0]};

}  // namespace pyllama
