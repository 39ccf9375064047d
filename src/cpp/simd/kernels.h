// The hot loops of the forward pass other than the weight matmuls: the three steps of attention
// (attention.h) over the KV cache's layout (kv_cache.h), and the exp-based activation.
//
// Like the matmul kernels (quant/quant.h), each instruction-set level (dispatch.h) has its own
// table: a portable scalar one (kernels.cpp, the reference the others are tested against), and
// SIMD ones compiled with their own flags (x86_avx2.cpp, x86_avx512.cpp, arm_neon.cpp, sharing
// generic.h). SIMD levels differ from the scalar one only by summation order, FMA, and their
// exp (within a few ulp of std::exp).
#pragma once
#include <cstdint>

namespace pyllama {

struct SimdKernels {
    // Attention scores of n_rows query rows (head_dim floats each, head_dim apart) against the
    // keys of n_blocks whole key blocks (KVCache::keys layout, starting at `keys`):
    //   s[r * s_stride + j] = dot(q row r, key j) for j < n_blocks * KVCache::kKeyBlock.
    void (*scores_f16)(const float* q, int64_t n_rows, int64_t head_dim, const uint16_t* keys, int64_t n_blocks,
                       float* s, int64_t s_stride);
    void (*scores_f32)(const float* q, int64_t n_rows, int64_t head_dim, const float* keys, int64_t n_blocks,
                       float* s, int64_t s_stride);

    // One step of the online softmax over n_cols new scores per row (n_cols a multiple of
    // KVCache::kKeyBlock; masked scores are -inf; scale > 0). Per row r, with m[r] the running maximum (-inf
    // at first) and l[r] the running sum of exponentials:
    //   s *= scale; m' = max(m[r], max s); corr[r] = exp(m[r] - m'); s = exp(s - m');
    //   l[r] = l[r] * corr[r] + sum s; m[r] = m'.
    // A row with every score -inf so far stays at m = -inf, l = 0, s = 0, corr = 1.
    void (*softmax_step)(float* s, int64_t n_rows, int64_t n_cols, int64_t s_stride, float scale, float* m,
                         float* l, float* corr);

    // Weighted sum of value rows (KVCache::values layout, starting at `v`), rescaling the old sum:
    //   o[r * head_dim + d] = o[...] * corr[r] + sum over j < n_keys of p[r * p_stride + j] * v[j * head_dim + d].
    void (*accumulate_f16)(const float* p, int64_t n_rows, int64_t n_keys, int64_t p_stride, const uint16_t* v,
                           int64_t head_dim, const float* corr, float* o);
    void (*accumulate_f32)(const float* p, int64_t n_rows, int64_t n_keys, int64_t p_stride, const float* v,
                           int64_t head_dim, const float* corr, float* o);

    // gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]
    void (*silu_mul)(float* gate, const float* up, int64_t n);
};

// The table of the instruction-set level in use (dispatch.h).
const SimdKernels& simd_kernels();

#if defined(__x86_64__) || defined(_M_X64)
extern const SimdKernels kAvx2SimdKernels;    // simd/x86_avx2.cpp
extern const SimdKernels kAvx512SimdKernels;  // simd/x86_avx512.cpp
#elif defined(__aarch64__)
extern const SimdKernels kNeonSimdKernels;    // simd/arm_neon.cpp
#endif

}  // namespace pyllama
