// The portable level of the SIMD kernels: plain loops in the most direct order, the reference
// the instruction-set levels are tested against, and the level used on other CPUs. Also the one
// place a level's table is chosen.
#include "simd/kernels.h"

#include <algorithm>
#include <cmath>

#include "dispatch.h"
#include "kv_cache.h"
#include "quant/float16.h"

namespace pyllama {

namespace {

constexpr int64_t kBlock = KVCache::kKeyBlock;

inline float to_float(float x) { return x; }
inline float to_float(uint16_t h) { return fp16_to_fp32(h); }

template <class T>
void scores(const float* q, int64_t n_rows, int64_t head_dim, const T* keys, int64_t n_blocks, float* s,
            int64_t s_stride) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* qr = q + r * head_dim;
        for (int64_t j = 0; j < n_blocks * kBlock; ++j) {
            const T* key = keys + (j / kBlock) * head_dim * kBlock + j % kBlock;
            float dot = 0.0f;
            for (int64_t d = 0; d < head_dim; ++d) dot += qr[d] * to_float(key[d * kBlock]);
            s[r * s_stride + j] = dot;
        }
    }
}

void softmax_step(float* s, int64_t n_rows, int64_t n_cols, int64_t s_stride, float scale, float* m, float* l,
                  float* corr) {
    for (int64_t r = 0; r < n_rows; ++r) {
        float* sr = s + r * s_stride;
        float row_max = -INFINITY;
        for (int64_t j = 0; j < n_cols; ++j) {
            sr[j] *= scale;
            row_max = std::max(row_max, sr[j]);
        }
        const float m_new = std::max(m[r], row_max);
        if (m_new == -INFINITY) {  // nothing visible yet
            for (int64_t j = 0; j < n_cols; ++j) sr[j] = 0.0f;
            corr[r] = 1.0f;
            continue;
        }
        const float c = std::exp(m[r] - m_new);
        float sum = 0.0f;
        for (int64_t j = 0; j < n_cols; ++j) {
            sr[j] = std::exp(sr[j] - m_new);
            sum += sr[j];
        }
        l[r] = l[r] * c + sum;
        m[r] = m_new;
        corr[r] = c;
    }
}

template <class T>
void accumulate(const float* p, int64_t n_rows, int64_t n_keys, int64_t p_stride, const T* v, int64_t head_dim,
                const float* corr, float* o) {
    for (int64_t r = 0; r < n_rows; ++r) {
        float* orow = o + r * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) orow[d] *= corr[r];
        for (int64_t j = 0; j < n_keys; ++j) {
            const float pj = p[r * p_stride + j];
            const T* vrow = v + j * head_dim;
            for (int64_t d = 0; d < head_dim; ++d) orow[d] += pj * to_float(vrow[d]);
        }
    }
}

void silu_mul(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

const SimdKernels kScalarSimdKernels{scores<uint16_t>, scores<float>,         softmax_step,
                                     accumulate<uint16_t>, accumulate<float>, silu_mul};

}  // namespace

const SimdKernels& simd_kernels() {
    switch (current_isa()) {
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::Avx2: return kAvx2SimdKernels;
        case Isa::Avx512: return kAvx512SimdKernels;
#elif defined(__aarch64__)
        case Isa::Neon: return kNeonSimdKernels;
#endif
        default: return kScalarSimdKernels;
    }
}

}  // namespace pyllama
