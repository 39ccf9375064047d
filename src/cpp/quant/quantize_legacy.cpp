// Weight quantizers of the 32-element block types Q4_0, Q4_1, Q5_0 and Q5_1: ports of
// ggml-quants.c's quantize_row_q{4,5}_{0,1}_ref. (Q8_0 weights use the activation quantizer,
// which is the same reference function.)
#include <cfloat>
#include <cmath>

#include "quant/blocks.h"
#include "quant/rounding.h"
#include "quant/weight_quantizers.h"

namespace pyllama {

namespace {

// The element of largest magnitude (the first one, on ties), with its sign. Q4_0 and Q5_0 give
// it the most negative quant, so d = max / -8 (or -16) keeps its sign.
float signed_absmax(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

struct MinMax {
    float min, max;
};
MinMax block_min_max(const float* x) {
    MinMax r{FLT_MAX, -FLT_MAX};
    for (int j = 0; j < kQK; ++j) {
        if (x[j] < r.min) r.min = x[j];
        if (x[j] > r.max) r.max = x[j];
    }
    return r;
}

// MIN(top, (int8_t)v) stored in a uint8_t, as the reference code writes it.
uint8_t capped_quant(float v, int top) {
    const int q = static_cast<int8_t>(truncated_low_byte(v));
    return static_cast<uint8_t>(top < q ? top : q);
}

// Bit 4 of each of the 32 quants, element j at bit j, as the little-endian qh bytes.
void store_fifth_bits(const uint8_t q[kQK], uint8_t qh[4]) {
    uint32_t bits = 0;
    for (int j = 0; j < kQK; ++j) bits |= static_cast<uint32_t>((q[j] & 0x10u) >> 4) << j;
    for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(bits >> (8 * k));
}

// Element j in the low nibble of qs[j], element j + 16 in the high nibble.
void store_nibbles(const uint8_t q[kQK], uint8_t qs[kQK / 2]) {
    for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | ((q[j + kQK / 2] & 0x0f) << 4));
}

}  // namespace

void quantize_weights_q4_0(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ4_0*>(y);
    uint8_t q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = signed_absmax(x) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = to_half(d);
        for (int j = 0; j < kQK; ++j) {
            const float scaled = x[j] * id;
            q[j] = capped_quant(scaled + 8.5f, 15);
        }
        store_nibbles(q, b[i].qs);
    }
}

void quantize_weights_q4_1(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ4_1*>(y);
    uint8_t q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const MinMax mm = block_min_max(x);
        const float d = (mm.max - mm.min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = to_half(d);
        b[i].m = to_half(mm.min);
        for (int j = 0; j < kQK; ++j) {
            const float scaled = (x[j] - mm.min) * id;
            q[j] = capped_quant(scaled + 0.5f, 15);
        }
        store_nibbles(q, b[i].qs);
    }
}

void quantize_weights_q5_0(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ5_0*>(y);
    uint8_t q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const float d = signed_absmax(x) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = to_half(d);
        for (int j = 0; j < kQK; ++j) {
            const float scaled = x[j] * id;
            q[j] = capped_quant(scaled + 16.5f, 31);
        }
        store_nibbles(q, b[i].qs);
        store_fifth_bits(q, b[i].qh);
    }
}

void quantize_weights_q5_1(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ5_1*>(y);
    uint8_t q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const MinMax mm = block_min_max(x);
        const float d = (mm.max - mm.min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = to_half(d);
        b[i].m = to_half(mm.min);
        for (int j = 0; j < kQK; ++j) {
            const float scaled = (x[j] - mm.min) * id;
            q[j] = truncated_low_byte(scaled + 0.5f);  // (uint8_t)(x0 + 0.5f): no cap in ggml
        }
        store_nibbles(q, b[i].qs);
        store_fifth_bits(q, b[i].qh);
    }
}

}  // namespace pyllama
