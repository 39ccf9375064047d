// Activation quantizers. They follow llama.cpp's reference quantizers (ggml-quants.c,
// quantize_row_*_ref) operation for operation, so our activations are the ones llama.cpp's
// reference path would feed to the same dot products.
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/rounding.h"
#include "quant/scalar_kernels.h"
#include "quant/type_errors.h"

namespace pyllama {

namespace {

// The shared start of Q8_0 and Q8_1: scale d = amax / 127 and its inverse (0 for an all-zero block).
struct Q8Scale {
    float d, id;
};
Q8Scale q8_block_scale(const float* x) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) {
        const float v = std::fabs(x[j]);
        amax = amax > v ? amax : v;  // ggml's MAX(a, b), including how it treats NaN
    }
    const float d = amax / 127.0f;
    return {d, d != 0.0f ? 1.0f / d : 0.0f};
}

}  // namespace

void quantize_act_f32(const float* x, void* y, int64_t n) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void quantize_act_f16(const float* x, void* y, int64_t n) {
    auto* out = static_cast<Half*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = to_half(x[i]);
}

void quantize_act_bf16(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(x[i]);
        out[2 * i] = static_cast<uint8_t>(h & 0xff);
        out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
}

void quantize_act_q8_0(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ8_0*>(y);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const Q8Scale s = q8_block_scale(x);
        b[i].d = to_half(s.d);
        for (int j = 0; j < kQK; ++j) b[i].qs[j] = round_to_int8(x[j] * s.id);
    }
}

void quantize_act_q8_1(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ8_1*>(y);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        const Q8Scale s = q8_block_scale(x);
        b[i].d = to_half(s.d);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            b[i].qs[j] = round_to_int8(x[j] * s.id);
            sum += b[i].qs[j];
        }
        b[i].s = to_half(static_cast<float>(sum) * s.d);
    }
}

void quantize_act_q8_K(const float* x, void* y, int64_t n) {
    auto* b = static_cast<BlockQ8_K*>(y);
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        // The element of largest magnitude (the first one, on ties) maps to exactly -127.
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < kQK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < kQK_K; ++j) {
            const int v = nearest_int(iscale * x[j]);
            b[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
        }
        for (int g = 0; g < kQK_K / 16; ++g) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * g + l];
            b[i].bsums[g] = static_cast<int16_t>(sum);
        }
        b[i].d = 1.0f / iscale;
    }
}

void quantize_activations(GGMLType act_type, const float* x, void* y, int64_t n) {
    check_row_length(act_type, n);
    switch (act_type) {
        case GGMLType::F32: quantize_act_f32(x, y, n); return;
        case GGMLType::F16: quantize_act_f16(x, y, n); return;
        case GGMLType::BF16: quantize_act_bf16(x, y, n); return;
        case GGMLType::Q8_0: quantize_act_q8_0(x, y, n); return;
        case GGMLType::Q8_1: quantize_act_q8_1(x, y, n); return;
        case GGMLType::Q8_K: quantize_act_q8_K(x, y, n); return;
        default: throw unsupported_type("activation quantization", act_type);
    }
}

}  // namespace pyllama
