// Dequantization, bit-exact with the gguf package's numpy code (gguf/quants.py). Every float
// operation below happens in the same order as the numpy expression it mirrors (quoted in the
// comments); the build disables FMA contraction, so each product and sum is rounded on its own.
#include <cstring>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/type_errors.h"

namespace pyllama {

namespace {

void dequantize_f16(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = to_float(Half{{src[2 * i], src[2 * i + 1]}});
}

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        dst[i] = bf16_to_fp32(static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)));
}

// d * (q - 8)
void dequantize_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
    int8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = to_float(b[i].d);
        unpack_nibbles_32(b[i].qs, 8, q);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]);
    }
}

// (d * q) + m
void dequantize_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
    int8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = to_float(b[i].d), m = to_float(b[i].m);
        unpack_nibbles_32(b[i].qs, 0, q);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]) + m;
    }
}

// d * (q - 16)
void dequantize_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
    int8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = to_float(b[i].d);
        unpack_5bit_32(b[i].qh, b[i].qs, 16, q);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]);
    }
}

// (d * q) + m
void dequantize_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
    int8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = to_float(b[i].d), m = to_float(b[i].m);
        unpack_5bit_32(b[i].qh, b[i].qs, 0, q);
        for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]) + m;
    }
}

// x * d
void dequantize_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = to_float(b[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b[i].qs[j]) * d;
    }
}

// Q4_K and Q5_K: (d * sc) * q - (dmin * m), per 32-element sub-block.
template <typename Block, void (*Unpack)(const Block&, int8_t*)>
void dequantize_k_with_mins(const Block* b, float* y, int64_t nb) {
    int8_t q[kQK_K];
    uint8_t sc[8], mn[8];
    for (int64_t i = 0; i < nb; ++i) {
        const float d = to_float(b[i].d), dmin = to_float(b[i].dmin);
        unpack_k_scales(b[i].scales, sc, mn);
        Unpack(b[i], q);
        for (int j = 0; j < 8; ++j, y += 32) {
            const float dl = d * static_cast<float>(sc[j]);
            const float ml = dmin * static_cast<float>(mn[j]);
            for (int l = 0; l < 32; ++l) y[l] = dl * static_cast<float>(q[32 * j + l]) - ml;
        }
    }
}

// (d * scales) * q, per 16-element sub-block.
void dequantize_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
    int8_t q[kQK_K];
    for (int64_t i = 0; i < nb; ++i) {
        const float d = to_float(b[i].d);
        unpack_q6_k(b[i], q);
        for (int j = 0; j < kQK_K / 16; ++j, y += 16) {
            const float dl = d * static_cast<float>(b[i].scales[j]);
            for (int l = 0; l < 16; ++l) y[l] = dl * static_cast<float>(q[16 * j + l]);
        }
    }
}

}  // namespace

void dequantize_row(GGMLType type, const void* src, float* dst, int64_t n) {
    check_row_length(type, n);
    const auto* bytes = static_cast<const uint8_t*>(src);
    switch (type) {
        case GGMLType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
        case GGMLType::F16: dequantize_f16(bytes, dst, n); return;
        case GGMLType::BF16: dequantize_bf16(bytes, dst, n); return;
        case GGMLType::Q4_0: dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / kQK); return;
        case GGMLType::Q4_1: dequantize_q4_1(static_cast<const BlockQ4_1*>(src), dst, n / kQK); return;
        case GGMLType::Q5_0: dequantize_q5_0(static_cast<const BlockQ5_0*>(src), dst, n / kQK); return;
        case GGMLType::Q5_1: dequantize_q5_1(static_cast<const BlockQ5_1*>(src), dst, n / kQK); return;
        case GGMLType::Q8_0: dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst, n / kQK); return;
        case GGMLType::Q4_K:
            dequantize_k_with_mins<BlockQ4_K, unpack_q4_k>(static_cast<const BlockQ4_K*>(src), dst, n / kQK_K);
            return;
        case GGMLType::Q5_K:
            dequantize_k_with_mins<BlockQ5_K, unpack_q5_k>(static_cast<const BlockQ5_K*>(src), dst, n / kQK_K);
            return;
        case GGMLType::Q6_K: dequantize_q6_k(static_cast<const BlockQ6_K*>(src), dst, n / kQK_K); return;
        default: throw unsupported_type("dequantization", type);
    }
}

}  // namespace pyllama
