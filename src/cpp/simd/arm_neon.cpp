// The NEON level of the SIMD kernels (simd/kernels.h): generic.h over 4-float registers.
#include <arm_neon.h>

#include "simd/generic.h"

namespace pyllama {
namespace {

struct Neon {
    using reg = float32x4_t;
    static constexpr int N = 4;
    // 32 registers: 4 rows x 4 registers of scores (one key block) + 4 keys + 1 query;
    // 4 rows x 4 registers of output + 4 values + 1 weight.
    static constexpr int kScoreRows = 4;
    static constexpr int kAccRows = 4, kAccVecs = 4;

    static reg zero() { return vdupq_n_f32(0.0f); }
    static reg set1(float x) { return vdupq_n_f32(x); }
    static reg load(const float* p) { return vld1q_f32(p); }
    static reg load(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
    static void store(float* p, reg x) { vst1q_f32(p, x); }
    static reg add(reg a, reg b) { return vaddq_f32(a, b); }
    static reg sub(reg a, reg b) { return vsubq_f32(a, b); }
    static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
    static reg div(reg a, reg b) { return vdivq_f32(a, b); }
    static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
    static reg max(reg a, reg b) { return vmaxq_f32(a, b); }
    static reg min(reg a, reg b) { return vminq_f32(a, b); }
    static reg round(reg x) { return vrndnq_f32(x); }
    static reg pow2(reg n) {
        const int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
        return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
    }
    static reg select_lt(reg a, reg b, reg x, reg y) { return vbslq_f32(vcltq_f32(a, b), x, y); }
    static float reduce_max(reg x) { return vmaxvq_f32(x); }
    static float reduce_add(reg x) { return vaddvq_f32(x); }
    static float first(reg x) { return vgetq_lane_f32(x, 0); }
    static float to_float(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }
};

}  // namespace

extern const SimdKernels kNeonSimdKernels = simd_kernel_table<Neon>();

}  // namespace pyllama
