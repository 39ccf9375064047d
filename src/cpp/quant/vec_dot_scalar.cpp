// Portable dot-product kernels, one per weight type, each paired with the activation type
// llama.cpp uses for it. Within a block everything is integer (exact, so the order is free);
// the per-block float results are summed in block order. The inner loops are fixed-length
// loops over int8 arrays, which -O3 vectorizes without intrinsics.
#include <cstring>

#include "quant/blocks.h"
#include "quant/scalar_kernels.h"

namespace pyllama {

namespace {

// Sum of x[i] * y[i] over n int8 pairs.
inline int32_t dot_i8(const int8_t* x, const int8_t* y, int n) {
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) sum += static_cast<int32_t>(x[i]) * static_cast<int32_t>(y[i]);
    return sum;
}

// Block families of 32 with a scale only (x = d * q): Q4_0, Q5_0, Q8_0 against Q8_0.
template <typename Block, void (*Unpack)(const Block&, int8_t*)>
float dot_scaled_q8_0(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_0*>(va);
    int8_t q[kQK];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK; ++i) {
        Unpack(w[i], q);
        const int32_t sumi = dot_i8(q, a[i].qs, kQK);
        sum += (to_float(w[i].d) * to_float(a[i].d)) * static_cast<float>(sumi);
    }
    return sum;
}

// Block families of 32 with scale and min (x = d * q + m): Q4_1, Q5_1 against Q8_1.
// sum_j (d q_j + m) (d8 q8_j) = d d8 sum_j q_j q8_j + m s, with s = d8 sum_j q8_j from the Q8_1 block.
template <typename Block, void (*Unpack)(const Block&, int8_t*)>
float dot_scaled_min_q8_1(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_1*>(va);
    int8_t q[kQK];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK; ++i) {
        Unpack(w[i], q);
        const int32_t sumi = dot_i8(q, a[i].qs, kQK);
        sum += (to_float(w[i].d) * to_float(a[i].d)) * static_cast<float>(sumi) +
               to_float(w[i].m) * to_float(a[i].s);
    }
    return sum;
}

void unpack_q4_0(const BlockQ4_0& b, int8_t* q) { unpack_nibbles_32(b.qs, 8, q); }
void unpack_q4_1(const BlockQ4_1& b, int8_t* q) { unpack_nibbles_32(b.qs, 0, q); }
void unpack_q5_0(const BlockQ5_0& b, int8_t* q) { unpack_5bit_32(b.qh, b.qs, 16, q); }
void unpack_q5_1(const BlockQ5_1& b, int8_t* q) { unpack_5bit_32(b.qh, b.qs, 0, q); }
void unpack_q8_0(const BlockQ8_0& b, int8_t* q) { std::memcpy(q, b.qs, kQK); }

// Q4_K and Q5_K against Q8_K. Sub-block j (32 elements) is d sc_j q - dmin mn_j, so the dot is
// d d8 sum_j sc_j (q . q8)_j - dmin d8 sum_j mn_j sum(q8)_j, the last sums coming from bsums.
template <typename Block, void (*Unpack)(const Block&, int8_t*)>
float dot_k_with_mins_q8_K(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* a = static_cast<const BlockQ8_K*>(va);
    int8_t q[kQK_K];
    uint8_t sc[8], mn[8];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        Unpack(w[i], q);
        unpack_k_scales(w[i].scales, sc, mn);
        int32_t sumq = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
            sumq += sc[j] * dot_i8(q + 32 * j, a[i].qs + 32 * j, 32);
            summ += mn[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        const float d = to_float(w[i].d) * a[i].d;
        const float dmin = to_float(w[i].dmin) * a[i].d;
        sum += d * static_cast<float>(sumq) - dmin * static_cast<float>(summ);
    }
    return sum;
}

// Little-endian element loaders for the float kernels: memcpy/bytes, so any alignment is fine.
struct LoadF32 {
    static float at(const uint8_t* p, int64_t i) {
        float f;
        std::memcpy(&f, p + 4 * i, sizeof f);
        return f;
    }
};
struct LoadF16 {
    static float at(const uint8_t* p, int64_t i) { return to_float(Half{{p[2 * i], p[2 * i + 1]}}); }
};
struct LoadBF16 {
    static float at(const uint8_t* p, int64_t i) {
        return bf16_to_fp32(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
    }
};

// Float rows: kLanes independent partial sums (what a vector unit keeps in its accumulators,
// and what lets the compiler vectorize without reassociating), reduced pairwise at the end.
// Each partial sum sees at most n / kLanes + 1 additions; the reduction adds log2(kLanes).
template <typename Load>
float dot_float_row(int64_t n, const void* vw, const void* va) {
    constexpr int kLanes = 32;
    const auto* w = static_cast<const uint8_t*>(vw);
    const auto* a = static_cast<const uint8_t*>(va);
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += Load::at(w, i + l) * Load::at(a, i + l);
    for (int l = 0; i < n; ++i, ++l) acc[l] += Load::at(w, i) * Load::at(a, i);
    for (int width = kLanes / 2; width > 0; width /= 2)
        for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
    return acc[0];
}

}  // namespace

float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a) {
    return dot_scaled_q8_0<BlockQ4_0, unpack_q4_0>(n, w, a);
}
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a) {
    return dot_scaled_q8_0<BlockQ5_0, unpack_q5_0>(n, w, a);
}
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a) {
    return dot_scaled_q8_0<BlockQ8_0, unpack_q8_0>(n, w, a);
}
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a) {
    return dot_scaled_min_q8_1<BlockQ4_1, unpack_q4_1>(n, w, a);
}
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a) {
    return dot_scaled_min_q8_1<BlockQ5_1, unpack_q5_1>(n, w, a);
}
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a) {
    return dot_k_with_mins_q8_K<BlockQ4_K, unpack_q4_k>(n, w, a);
}
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a) {
    return dot_k_with_mins_q8_K<BlockQ5_K, unpack_q5_k>(n, w, a);
}

// Q6_K against Q8_K: 16 sub-blocks of 16 with signed 8-bit scales and no mins.
float vec_dot_q6_K_q8_K(int64_t n, const void* vw, const void* va) {
    const auto* w = static_cast<const BlockQ6_K*>(vw);
    const auto* a = static_cast<const BlockQ8_K*>(va);
    int8_t q[kQK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        unpack_q6_k(w[i], q);
        int32_t sumq = 0;
        for (int j = 0; j < kQK_K / 16; ++j) sumq += w[i].scales[j] * dot_i8(q + 16 * j, a[i].qs + 16 * j, 16);
        sum += (to_float(w[i].d) * a[i].d) * static_cast<float>(sumq);
    }
    return sum;
}

float vec_dot_f32_f32(int64_t n, const void* w, const void* a) { return dot_float_row<LoadF32>(n, w, a); }
float vec_dot_f16_f16(int64_t n, const void* w, const void* a) { return dot_float_row<LoadF16>(n, w, a); }
float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a) { return dot_float_row<LoadBF16>(n, w, a); }

}  // namespace pyllama
