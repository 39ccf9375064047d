// Weight quantizers of the K-quant super-blocks Q4_K, Q5_K and Q6_K: ports of ggml-quants.c's
// quantize_row_q{4,5,6}_K_ref with their helpers make_qkx2_quants (Q4_K/Q5_K sub-block scale
// and min search) and make_qx_quants (Q6_K sub-block scale search, rmse_type 1, no weights).
// Without an importance matrix quantize_q{4,5,6}_K call exactly these; the quantize_row_*_impl
// variants (make_qkx3_quants, make_qp_quants) run only with one.
// The searches compare errors between candidate scales, so every product and sum below is
// written in ggml's order: a different rounding could pick a different candidate.
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/rounding.h"
#include "quant/weight_quantizers.h"

namespace pyllama {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // ggml's GROUP_MAX_EPS: below it a group counts as all zero
constexpr int kSubBlocks = kQK_K / 32;  // Q4_K/Q5_K: 8 sub-blocks of 32 with a scale and a min each

int clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// make_qkx2_quants with use_mad = false: quants L in [0, nmax] and a scale and min (returned as
// -min, non-negative) for x ~ scale * L - (-min), minimizing the weighted squared error over
// nstep + 1 candidate scales (rmin + rdelta * is + nmax) / (max - min) around the plain one.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(clamp(l, 0, nmax));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// The 12 scale bytes of a Q4_K/Q5_K super-block from 6-bit sub-block scales and mins
// (the layout blocks.h's unpack_k_scales reads).
void pack_k_scales(const uint8_t ls[kSubBlocks], const uint8_t lm[kSubBlocks], uint8_t s[12]) {
    for (int j = 0; j < 4; ++j) {
        s[j] = ls[j];
        s[j + 4] = lm[j];
    }
    for (int j = 4; j < kSubBlocks; ++j) {
        s[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
        s[j - 4] = static_cast<uint8_t>(s[j - 4] | ((ls[j] >> 4) << 6));
        s[j] = static_cast<uint8_t>(s[j] | ((lm[j] >> 4) << 6));
    }
}

// The common part of quantize_row_q4_K_ref and quantize_row_q5_K_ref for one super-block:
// fills d, dmin and the scale bytes, and L[256] with quants in [0, nmax]. The make_qkx2_quants
// parameters differ by type: (rmin, rdelta, nstep) = (-1, 0.1, 20) for Q4_K, (-0.5, 0.1, 15) for Q5_K.
void quantize_k_super_block(const float* x, int nmax, float rmin, float rdelta, int nstep, Half& d_out,
                            Half& dmin_out, uint8_t scale_bytes[12], uint8_t L[kQK_K]) {
    float scales[kSubBlocks], mins[kSubBlocks], weights[32];
    uint8_t Laux[32];
    float max_scale = 0;  // as the min is subtracted, scales are never negative
    float max_min = 0;
    for (int j = 0; j < kSubBlocks; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        const float av_x = std::sqrt(sum_x2 / 32.0f);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
        scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }

    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[kSubBlocks], lm[kSubBlocks];
    for (int j = 0; j < kSubBlocks; ++j) {
        // uint8_t ls = nearest_int(...); ls = MIN(63, ls): the int is cut to 8 bits first
        const uint8_t s = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        const uint8_t m = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        ls[j] = s < 63 ? s : 63;
        lm[j] = m < 63 ? m : 63;
    }
    pack_k_scales(ls, lm, scale_bytes);
    d_out = to_half(max_scale / 63.0f);
    dmin_out = to_half(max_min / 63.0f);

    // Requantize against the stored (6-bit, fp16-rounded) scales and mins. A sub-block whose
    // scale rounds to zero keeps the quants make_qkx2_quants chose.
    uint8_t sc[kSubBlocks], mn[kSubBlocks];
    unpack_k_scales(scale_bytes, sc, mn);
    for (int j = 0; j < kSubBlocks; ++j) {
        const float d = to_float(d_out) * static_cast<float>(sc[j]);
        if (d == 0.0f) continue;
        const float dm = to_float(dmin_out) * static_cast<float>(mn[j]);
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(clamp(l, 0, nmax));
        }
    }
}

// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL): quants L in [0, 2 * nmax) for
// x ~ scale * (L - nmax), weighting each element by x^2, trying 18 scales around nmax / max.
float make_qx_quants_rmse1(int n, int nmax, const float* x, int8_t* L) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    // The weighted sums of x * l and l * l for the quants l that iscale gives.
    auto sums = [&](float iscale, float& sumlx, float& suml2) {
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const float l = static_cast<float>(clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
    };
    auto set_quants = [&](float iscale) {
        for (int i = 0; i < n; ++i)
            L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx, suml2;
    sums(iscale, sumlx, suml2);
    set_quants(iscale);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sums(iscale, sumlx, suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            set_quants(iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

}  // namespace

void quantize_weights_q4_K(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ4_K*>(y);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        quantize_k_super_block(x, 15, -1.0f, 0.1f, 20, b[i].d, b[i].dmin, b[i].scales, L);
        // 32 bytes per pair of sub-blocks: the first's quants in the low nibbles, the second's high
        for (int pair = 0; pair < kQK_K / 64; ++pair) {
            const uint8_t* Lp = L + 64 * pair;
            for (int l = 0; l < 32; ++l) b[i].qs[32 * pair + l] = static_cast<uint8_t>(Lp[l] | (Lp[l + 32] << 4));
        }
    }
}

void quantize_weights_q5_K(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ5_K*>(y);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        quantize_k_super_block(x, 31, -0.5f, 0.1f, 15, b[i].d, b[i].dmin, b[i].scales, L);
        // As Q4_K for the low 4 bits; bit 4 of element l of sub-block j goes to bit j of qh[l].
        std::memset(b[i].qh, 0, sizeof b[i].qh);
        for (int pair = 0; pair < kQK_K / 64; ++pair) {
            const uint8_t* Lp = L + 64 * pair;
            const uint8_t lo_bit = static_cast<uint8_t>(1u << (2 * pair));
            const uint8_t hi_bit = static_cast<uint8_t>(2u << (2 * pair));
            for (int l = 0; l < 32; ++l) {
                int l1 = Lp[l], l2 = Lp[l + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    b[i].qh[l] |= lo_bit;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    b[i].qh[l] |= hi_bit;
                }
                b[i].qs[32 * pair + l] = static_cast<uint8_t>(l1 | (l2 << 4));
            }
        }
    }
}

void quantize_weights_q6_K(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ6_K*>(y);
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max_scale = 0;
        float max_abs_scale = 0;
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            scales[ib] = make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib);
            const float abs_scale = std::fabs(scales[ib]);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < kGroupMaxEps) {  // all zero: an all-zero block
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }

        const float iscale = -128.0f / max_scale;
        b[i].d = to_half(1 / iscale);
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            const int s = nearest_int(iscale * scales[ib]);
            b[i].scales[ib] = static_cast<int8_t>(s < 127 ? s : 127);
        }
        // Requantize against the stored scales; a sub-block whose scale is zero keeps the
        // quants make_qx_quants chose.
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = to_float(b[i].d) * static_cast<float>(b[i].scales[j]);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = static_cast<int8_t>(clamp(l, -32, 31) + 32);
            }
        }

        // The layout unpack_q6_k reads: per half of 128, quarters q1..q4 of 32 elements; ql
        // holds q1|q3<<4 then q2|q4<<4, qh the four 2-bit high parts.
        for (int half = 0; half < 2; ++half) {
            const int8_t* Lh = L + 128 * half;
            uint8_t* ql = b[i].ql + 64 * half;
            uint8_t* qh = b[i].qh + 32 * half;
            for (int l = 0; l < 32; ++l) {
                const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

}  // namespace pyllama
