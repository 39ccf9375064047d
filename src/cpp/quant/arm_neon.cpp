// The NEON level for aarch64 (NEON is baseline there; this file also uses the dotprod extension's
// sdot, which dispatch.cpp checks for). Compiled with -march=armv8.2-a+dotprod; like the x86
// files (x86_kernels.h), everything has internal linkage and no inline function of the shared
// headers is called, so no code built for dotprod can leak into the baseline core.
//
// Within a block the integer sums are exact (sdot into int32 lanes, then across lanes), and each
// block's float value is formed and added in block order exactly as the scalar kernels do, so
// these results equal the scalar ones except where vec_dot_scalar.cpp's own int -> float
// conversions round. Float rows (F32, F16, BF16) keep the scalar kernel's partial sums and their
// order, so they equal it bit for bit. The activation quantizers produce the scalar ones' bytes.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "quant/blocks.h"
#include "quant/isa_kernels.h"
#include "quant/k_scales_simd.h"
#include "quant/scalar_kernels.h"

namespace pyllama {
namespace {

float half_to_float(const Half& h) {
    __fp16 f;
    std::memcpy(&f, h.bytes, 2);
    return static_cast<float>(f);
}
Half float_to_half(float f) {
    const __fp16 h = static_cast<__fp16>(f);  // round to nearest even, as fp32_to_fp16
    Half out;
    std::memcpy(out.bytes, &h, 2);
    return out;
}

// Sum of 32 int8 products.
int32_t dot32(int8x16_t x0, int8x16_t x1, const int8_t* y) {
    return vaddvq_s32(vdotq_s32(vdotq_s32(vdupq_n_s32(0), x0, vld1q_s8(y)), x1, vld1q_s8(y + 16)));
}

// The quants of one 32-element block: elements 0-15 and 16-31, signed for the types without a
// min (Q4_0: q - 8, Q5_0: q - 16, Q8_0: q), unsigned for those with one (Q4_1, Q5_1: 0..31).
struct Quants {
    int8x16_t lo, hi;
};

// 16 bytes of packed nibbles: low nibbles (elements 0-15) and high nibbles (16-31).
Quants unpack_nibbles(const uint8_t* qs) {
    const uint8x16_t b = vld1q_u8(qs);
    return {vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(b, 4))};
}

// Bits 0-15 of `bits` as 16 bytes, 0xff where the bit is set: byte j tests bit j % 8 of byte j / 8.
uint8x16_t spread_bits16(uint32_t bits) {
    const uint8x16_t bytes = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(bits)), vdup_n_u8(static_cast<uint8_t>(bits >> 8)));
    return vtstq_u8(bytes, vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull)));
}

// Q5_0/Q5_1: the nibbles with their fifth bits (bit j of qh for element j) as 0x10, or for Q5_0
// with 0xf0 where the bit is clear, which reads as nibble - 16 in int8.
template <bool kSigned>
Quants unpack_5bit(const uint8_t qh_bytes[4], const uint8_t* qs) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, 4);
    Quants q = unpack_nibbles(qs);
    const uint8x16_t m_lo = spread_bits16(qh), m_hi = spread_bits16(qh >> 16);
    const uint8x16_t high_lo = kSigned ? vbicq_u8(vdupq_n_u8(0xf0), m_lo) : vandq_u8(m_lo, vdupq_n_u8(0x10));
    const uint8x16_t high_hi = kSigned ? vbicq_u8(vdupq_n_u8(0xf0), m_hi) : vandq_u8(m_hi, vdupq_n_u8(0x10));
    q.lo = vorrq_s8(q.lo, vreinterpretq_s8_u8(high_lo));
    q.hi = vorrq_s8(q.hi, vreinterpretq_s8_u8(high_hi));
    return q;
}

Quants block_quants(const BlockQ4_0& b) {
    const Quants q = unpack_nibbles(b.qs);
    return {vsubq_s8(q.lo, vdupq_n_s8(8)), vsubq_s8(q.hi, vdupq_n_s8(8))};
}
Quants block_quants(const BlockQ4_1& b) { return unpack_nibbles(b.qs); }
Quants block_quants(const BlockQ5_0& b) { return unpack_5bit<true>(b.qh, b.qs); }
Quants block_quants(const BlockQ5_1& b) { return unpack_5bit<false>(b.qh, b.qs); }
Quants block_quants(const BlockQ8_0& b) { return {vld1q_s8(b.qs), vld1q_s8(b.qs + 16)}; }

// Q4_0, Q5_0, Q8_0 against Q8_0.
template <class Block>
float dot_scaled_q8_0(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_0*>(va);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK; ++i) {
        const Quants q = block_quants(w[i]);
        const int32_t sumi = dot32(q.lo, q.hi, a[i].qs);
        sum += (half_to_float(w[i].d) * half_to_float(a[i].d)) * static_cast<float>(sumi);
    }
    return sum;
}

// Q4_1, Q5_1 against Q8_1.
template <class Block>
float dot_scaled_min_q8_1(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_1*>(va);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK; ++i) {
        const Quants q = block_quants(w[i]);
        const int32_t sumi = dot32(q.lo, q.hi, a[i].qs);
        sum += (half_to_float(w[i].d) * half_to_float(a[i].d)) * static_cast<float>(sumi) +
               half_to_float(w[i].m) * half_to_float(a[i].s);
    }
    return sum;
}

// Q4_K and Q5_K against Q8_K.
template <class Block>
float dot_k_with_mins_q8_K(int64_t n, const void* vw, const void* va) {
    constexpr bool kFifthBit = std::is_same<Block, BlockQ5_K>::value;
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_K*>(va);
    const uint8x16_t low4 = vdupq_n_u8(0x0f), bit4 = vdupq_n_u8(0x10);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sc[8], mn[8];
        decode_k_scales(w[i].scales, sc, mn);
        // bsums of each 32-element sub-block (pairs of 16), times the mins
        const int16x8_t pair_sums = vpaddq_s16(vld1q_s16(a[i].bsums), vld1q_s16(a[i].bsums + 8));
        const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
        const int32x4_t m = vaddq_s32(vmull_s16(vget_low_s16(pair_sums), vget_low_s16(mins)),
                                      vmull_s16(vget_high_s16(pair_sums), vget_high_s16(mins)));
        const int32_t summ = vaddvq_s32(m);
        // Q5_K: bits 2 pair and 2 pair + 1 of byte l are element l's fifth bits
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        if constexpr (kFifthBit) {
            qh0 = vld1q_u8(w[i].qh);
            qh1 = vld1q_u8(w[i].qh + 16);
        }
        int32_t sumq = 0;
        for (int pair = 0; pair < 4; ++pair) {  // 32 bytes: low nibbles then high nibbles
            const uint8x16_t b0 = vld1q_u8(w[i].qs + 32 * pair), b1 = vld1q_u8(w[i].qs + 32 * pair + 16);
            uint8x16_t lo0 = vandq_u8(b0, low4), lo1 = vandq_u8(b1, low4);
            uint8x16_t hi0 = vshrq_n_u8(b0, 4), hi1 = vshrq_n_u8(b1, 4);
            if constexpr (kFifthBit) {  // bits 0 and 1 moved to bit 4
                lo0 = vorrq_u8(lo0, vandq_u8(vshlq_n_u8(qh0, 4), bit4));
                lo1 = vorrq_u8(lo1, vandq_u8(vshlq_n_u8(qh1, 4), bit4));
                hi0 = vorrq_u8(hi0, vandq_u8(vshlq_n_u8(qh0, 3), bit4));
                hi1 = vorrq_u8(hi1, vandq_u8(vshlq_n_u8(qh1, 3), bit4));
                qh0 = vshrq_n_u8(qh0, 2);
                qh1 = vshrq_n_u8(qh1, 2);
            }
            const int8_t* y = a[i].qs + 64 * pair;
            sumq += sc[2 * pair] * dot32(vreinterpretq_s8_u8(lo0), vreinterpretq_s8_u8(lo1), y);
            sumq += sc[2 * pair + 1] * dot32(vreinterpretq_s8_u8(hi0), vreinterpretq_s8_u8(hi1), y + 32);
        }
        const float d = half_to_float(w[i].d) * a[i].d;
        const float dmin = half_to_float(w[i].dmin) * a[i].d;
        sum += d * static_cast<float>(sumq) - dmin * static_cast<float>(summ);
    }
    return sum;
}

float dot_q6_K(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const BlockQ6_K*>(vw);
    const auto* a = static_cast<const BlockQ8_K*>(va);
    const uint8x16_t low4 = vdupq_n_u8(0x0f), low2 = vdupq_n_u8(3);
    const int8x16_t offset = vdupq_n_s8(32);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int32_t sumq = 0;
        for (int half = 0; half < 2; ++half) {
            const uint8_t* ql = w[i].ql + 64 * half;
            const uint8_t* qh = w[i].qh + 32 * half;
            for (int part = 0; part < 2; ++part) {  // elements l = 16 part .. 16 part + 15 of each quarter
                const uint8x16_t l0 = vld1q_u8(ql + 16 * part), l1 = vld1q_u8(ql + 32 + 16 * part);
                const uint8x16_t h = vld1q_u8(qh + 16 * part);
                const uint8x16_t q[4] = {
                    vorrq_u8(vandq_u8(l0, low4), vshlq_n_u8(vandq_u8(h, low2), 4)),
                    vorrq_u8(vandq_u8(l1, low4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 2), low2), 4)),
                    vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 4), low2), 4)),
                    vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(h, 6), 4)),
                };
                for (int k = 0; k < 4; ++k) {  // quarter k: 32 elements at 128 half + 32 k
                    const int8x16_t qs = vsubq_s8(vreinterpretq_s8_u8(q[k]), offset);
                    const int8_t* y = a[i].qs + 128 * half + 32 * k + 16 * part;
                    const int32_t dot = vaddvq_s32(vdotq_s32(vdupq_n_s32(0), qs, vld1q_s8(y)));
                    sumq += w[i].scales[8 * half + 2 * k + part] * dot;
                }
            }
        }
        sum += (half_to_float(w[i].d) * a[i].d) * static_cast<float>(sumq);
    }
    return sum;
}

// Float rows of F32, F16 or BF16 elements, widened to float exactly. The same 32 partial sums as
// vec_dot_scalar.cpp's dot_float_row (eight vectors of four), multiplied and added separately
// (no FMA) and reduced in the same order, so the result equals the scalar one bit for bit.
struct F32Elements {
    static constexpr int kBytes = 4;
    static float32x4_t load4(const uint8_t* p) { return vld1q_f32(reinterpret_cast<const float*>(p)); }
};
struct F16Elements {
    static constexpr int kBytes = 2;
    static float32x4_t load4(const uint8_t* p) { return vcvt_f32_f16(vld1_f16(reinterpret_cast<const float16_t*>(p))); }
};
struct BF16Elements {  // a bfloat16 is the top half of a float's bits
    static constexpr int kBytes = 2;
    static float32x4_t load4(const uint8_t* p) {
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
    }
};

template <class Elements>
float dot_float(int64_t n, const void* vw, const void* va) {
    constexpr int kBytes = Elements::kBytes;
    const auto* w = static_cast<const uint8_t*>(vw);
    const auto* a = static_cast<const uint8_t*>(va);
    float32x4_t acc[8];
    for (auto& v : acc) v = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; ++k) {
            const int64_t at = kBytes * (i + 4 * k);
            acc[k] = vaddq_f32(acc[k], vmulq_f32(Elements::load4(w + at), Elements::load4(a + at)));
        }
    float lanes[32];
    for (int k = 0; k < 8; ++k) vst1q_f32(lanes + 4 * k, acc[k]);
    if (i < n) {  // the last n % 32 into lanes 0, 1, ... through padded copies
        // Padding: weights -0 (only the sign bit, the last byte of each element), activations
        // +0. Their product -0 leaves every lane as it is, a lane holding -0 included.
        uint8_t wt[32 * kBytes] = {}, at[32 * kBytes] = {};
        const int tail = static_cast<int>(n - i);
        std::memcpy(wt, w + kBytes * i, static_cast<size_t>(kBytes * tail));
        std::memcpy(at, a + kBytes * i, static_cast<size_t>(kBytes * tail));
        for (int e = tail; e < 32; ++e) wt[kBytes * e + kBytes - 1] = 0x80;
        for (int k = 0; k < 8; ++k) {
            const float32x4_t prod = vmulq_f32(Elements::load4(wt + kBytes * 4 * k), Elements::load4(at + kBytes * 4 * k));
            vst1q_f32(lanes + 4 * k, vaddq_f32(vld1q_f32(lanes + 4 * k), prod));
        }
    }
    for (int width = 16; width > 0; width /= 2)
        for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
    return lanes[0];
}

// ---- activation quantizers ----

// Four int32 vectors -> 16 int8, each truncated to its low byte as C's conversion does.
int8x16_t narrow_truncating(const int32x4_t v[4]) {
    const int16x8_t lo = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
    const int16x8_t hi = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
    return vcombine_s8(vmovn_s16(lo), vmovn_s16(hi));
}

struct Q8Block {
    float d;
    int32_t sum;
};
// One 32-element block of Q8_0/Q8_1 (quantize_act.cpp's reference rules): writes qs.
Q8Block quantize_q8_block(const float* x, int8_t* qs) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; ++k) {
        v[k] = vld1q_f32(x + 4 * k);
        amax = vmaxq_f32(amax, vabsq_f32(v[k]));
    }
    const float d = vmaxvq_f32(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t q[8], sum = vdupq_n_s32(0);
    for (int k = 0; k < 8; ++k) {
        const float32x4_t r = vrndaq_f32(vmulq_f32(v[k], vdupq_n_f32(id)));  // roundf: ties away from 0
        // round_to_int8 maps inf/nan (and |r| >= 2^31, never reached) to 0
        const uint32x4_t finite = vcaltq_f32(r, vdupq_n_f32(2147483648.0f));
        q[k] = vandq_s32(vcvtq_s32_f32(r), vreinterpretq_s32_u32(finite));
        q[k] = vshrq_n_s32(vshlq_n_s32(q[k], 24), 24);  // int8_t conversion of the value
        sum = vaddq_s32(sum, q[k]);
    }
    vst1q_s8(qs, narrow_truncating(q));
    vst1q_s8(qs + 16, narrow_truncating(q + 4));
    return {d, vaddvq_s32(sum)};
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
        float32x4_t vmax = vdupq_n_f32(0.0f);  // maxnm ignores NaN, as the scalar `ax > amax` does
        for (int j = 0; j < kQK_K; j += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + j)));
        const float amax = vmaxnmvq_f32(vmax);
        if (amax == 0.0f) {
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float max = 0.0f;  // the first element of largest magnitude, with its sign
        for (int j = 0; j < kQK_K; ++j)
            if (__builtin_fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        const float iscale = -127.0f / max;
        for (int j = 0; j < kQK_K; j += 16) {
            int32x4_t q[4];
            for (int k = 0; k < 4; ++k) {
                // ggml's nearest_int: add 1.5 * 2^23 and read the low mantissa bits
                const float32x4_t shifted = vaddq_f32(vmulq_f32(vdupq_n_f32(iscale), vld1q_f32(x + j + 4 * k)),
                                                      vdupq_n_f32(12582912.0f));
                const int32x4_t v = vsubq_s32(vandq_s32(vreinterpretq_s32_f32(shifted), vdupq_n_s32(0x007fffff)),
                                              vdupq_n_s32(0x00400000));
                q[k] = vminq_s32(v, vdupq_n_s32(127));
            }
            const int8x16_t qs = narrow_truncating(q);
            vst1q_s8(b[i].qs + j, qs);
            b[i].bsums[j / 16] = static_cast<int16_t>(vaddlvq_s8(qs));
        }
        b[i].d = 1.0f / iscale;
    }
}

// Four floats -> IEEE halves (the hardware conversion: round to nearest even, as fp32_to_fp16).
uint16x4_t floats_to_f16(float32x4_t v) { return vreinterpret_u16_f16(vcvt_f16_f32(v)); }

// quantize_act.cpp's fp32_to_bf16, four at a time: round to nearest even on the top 16 bits; a
// NaN keeps its top bits with the quiet bit set (no rounding carry into the exponent).
uint16x4_t floats_to_bf16(float32x4_t v) {
    const uint32x4_t u = vreinterpretq_u32_f32(v);
    const uint32x4_t is_nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), odd));
    const uint32x4_t quiet = vorrq_u32(u, vdupq_n_u32(0x00400000));
    return vshrn_n_u32(vbslq_u32(is_nan, quiet, rounded), 16);
}

// n floats -> n little-endian 16-bit values, four at a time; the last n % 4 through a padded vector.
template <uint16x4_t (*Convert)(float32x4_t)>
void quantize_16bit(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(reinterpret_cast<uint16_t*>(out + 2 * i), Convert(vld1q_f32(x + i)));
    if (i < n) {
        float tail[4] = {};
        uint16_t halves[4];
        std::memcpy(tail, x + i, sizeof(float) * static_cast<size_t>(n - i));
        vst1_u16(halves, Convert(vld1q_f32(tail)));
        std::memcpy(out + 2 * i, halves, 2 * static_cast<size_t>(n - i));
    }
}

const MatmulKernel kNeonKernels[] = {
    {GGMLType::F32, GGMLType::F32, pyllama::quantize_act_f32, dot_float<F32Elements>},
    {GGMLType::F16, GGMLType::F16, quantize_16bit<floats_to_f16>, dot_float<F16Elements>},
    {GGMLType::BF16, GGMLType::BF16, quantize_16bit<floats_to_bf16>, dot_float<BF16Elements>},
    {GGMLType::Q4_0, GGMLType::Q8_0, quantize_q8_0, dot_scaled_q8_0<BlockQ4_0>},
    {GGMLType::Q4_1, GGMLType::Q8_1, quantize_q8_1, dot_scaled_min_q8_1<BlockQ4_1>},
    {GGMLType::Q5_0, GGMLType::Q8_0, quantize_q8_0, dot_scaled_q8_0<BlockQ5_0>},
    {GGMLType::Q5_1, GGMLType::Q8_1, quantize_q8_1, dot_scaled_min_q8_1<BlockQ5_1>},
    {GGMLType::Q8_0, GGMLType::Q8_0, quantize_q8_0, dot_scaled_q8_0<BlockQ8_0>},
    {GGMLType::Q4_K, GGMLType::Q8_K, quantize_q8_K, dot_k_with_mins_q8_K<BlockQ4_K>},
    {GGMLType::Q5_K, GGMLType::Q8_K, quantize_q8_K, dot_k_with_mins_q8_K<BlockQ5_K>},
    {GGMLType::Q6_K, GGMLType::Q8_K, quantize_q8_K, dot_q6_K},
};

}  // namespace

const KernelTable kNeonKernelTable{kNeonKernels, sizeof kNeonKernels / sizeof kNeonKernels[0]};

}  // namespace pyllama
