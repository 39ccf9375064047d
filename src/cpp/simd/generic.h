// The SIMD kernels of simd/kernels.h written once over a vector policy V, which each
// instruction-set file (x86_avx2.cpp, x86_avx512.cpp, arm_neon.cpp) defines and then includes
// this file. V gives:
//   reg, N (floats per register, dividing KVCache::kKeyBlock), kScoreRows (query rows of a score
//   tile, against one key block) and kAccRows x kAccVecs (output rows x registers of an
//   accumulate tile), zero, set1, load (float or F16 source), store, add, sub,
//   mul, div, fma(a, b, c) = a * b + c, max, min, round (to nearest integer), pow2 (2^n for a
//   register of integral floats in [-126, 128]), select_lt(a, b, x, y) = a < b ? x : y,
//   reduce_max, reduce_add, first (lane 0), and to_float (one F16 element).
//
// As quant/x86_kernels.h explains, everything here has internal linkage and calls no inline
// function of other headers: an inline function compiled with these flags could be picked by the
// linker for baseline code.
#pragma once
#include <cstdint>

#include "kv_cache.h"
#include "simd/kernels.h"

namespace pyllama {
namespace {

constexpr int64_t kBlock = KVCache::kKeyBlock;
constexpr float kNegInf = -__builtin_inff();

// e^x to within about 2 ulp: x = n ln2 + r with |r| <= ln2 / 2, e^r by Cephes' expf polynomial,
// times 2^n. Below -87.3 (where e^x leaves the normal floats) the result is 0, so masked scores
// of -inf give exactly 0; above 88.37 it is +inf.
template <class V>
typename V::reg vexp(typename V::reg x) {
    using reg = typename V::reg;
    const reg lo = V::set1(-87.33654f), hi = V::set1(88.7f);
    const reg xc = V::min(V::max(x, lo), hi);
    const reg n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
    reg r = V::fma(n, V::set1(-0.693145751953125f), xc);  // ln2 in two parts: n * hi part is exact
    r = V::fma(n, V::set1(-1.428606765330187e-06f), r);
    reg p = V::set1(1.9875691500e-4f);
    p = V::fma(p, r, V::set1(1.3981999507e-3f));
    p = V::fma(p, r, V::set1(8.3334519073e-3f));
    p = V::fma(p, r, V::set1(4.1665795894e-2f));
    p = V::fma(p, r, V::set1(1.6666665459e-1f));
    p = V::fma(p, r, V::set1(5.0000001201e-1f));
    const reg e_r = V::add(V::fma(p, V::mul(r, r), r), V::set1(1.0f));
    return V::select_lt(x, lo, V::zero(), V::mul(e_r, V::pow2(n)));
}

// ---- scores ----

// An R x kBlock tile of scores: R query rows against the key block at kb, C = kBlock / N
// registers. One block at a time: the block's head_dim x kBlock elements are one sequential
// stream (two blocks at once measured 40% slower when the cache streams from memory).
template <class V, int R, class T>
void score_tile(const float* q, int64_t head_dim, const T* kb, float* s, int64_t s_stride) {
    constexpr int C = kBlock / V::N;
    typename V::reg acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = V::zero();
    for (int64_t d = 0; d < head_dim; ++d) {
        typename V::reg k[C];
        for (int c = 0; c < C; ++c) k[c] = V::load(kb + d * kBlock + c * V::N);
        for (int r = 0; r < R; ++r) {
            const typename V::reg qv = V::set1(q[r * head_dim + d]);
            for (int c = 0; c < C; ++c) acc[r][c] = V::fma(qv, k[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) V::store(s + r * s_stride + c * V::N, acc[r][c]);
}

// score_tile for the last `rows` (< R) rows of a row range.
template <class V, int R, class T>
void score_rows(int rows, const float* q, int64_t head_dim, const T* kb, float* s, int64_t s_stride) {
    if constexpr (R > 1) {
        if (rows < R) return score_rows<V, R - 1>(rows, q, head_dim, kb, s, s_stride);
    }
    score_tile<V, R>(q, head_dim, kb, s, s_stride);
}

template <class V, class T>
void scores(const float* q, int64_t n_rows, int64_t head_dim, const T* keys, int64_t n_blocks, float* s,
            int64_t s_stride) {
    static_assert(kBlock % V::N == 0, "a key block is whole registers");
    for (int64_t r0 = 0; r0 < n_rows; r0 += V::kScoreRows) {
        const int rows = n_rows - r0 < V::kScoreRows ? static_cast<int>(n_rows - r0) : V::kScoreRows;
        for (int64_t b = 0; b < n_blocks; ++b)
            score_rows<V, V::kScoreRows>(rows, q + r0 * head_dim, head_dim, keys + b * head_dim * kBlock,
                                         s + r0 * s_stride + b * kBlock, s_stride);
    }
}

// ---- softmax step ----

template <class V>
void softmax_step(float* s, int64_t n_rows, int64_t n_cols, int64_t s_stride, float scale, float* m, float* l,
                  float* corr) {
    using reg = typename V::reg;
    const reg sc = V::set1(scale);
    for (int64_t r = 0; r < n_rows; ++r) {
        float* sr = s + r * s_stride;
        // max(s) * scale is max(s * scale): rounding is monotonic and scale > 0.
        reg mx = V::set1(kNegInf);
        for (int64_t j = 0; j < n_cols; j += V::N) mx = V::max(mx, V::load(sr + j));
        const float row_max = V::reduce_max(mx) * scale;
        const float m_new = row_max > m[r] ? row_max : m[r];
        if (m_new == kNegInf) {  // nothing visible yet
            for (int64_t j = 0; j < n_cols; j += V::N) V::store(sr + j, V::zero());
            corr[r] = 1.0f;
            continue;
        }
        const float c = V::first(vexp<V>(V::set1(m[r] - m_new)));
        const reg mv = V::set1(m_new);
        reg sum = V::zero();
        for (int64_t j = 0; j < n_cols; j += V::N) {
            const reg e = vexp<V>(V::sub(V::mul(V::load(sr + j), sc), mv));
            V::store(sr + j, e);
            sum = V::add(sum, e);
        }
        l[r] = l[r] * c + V::reduce_add(sum);
        m[r] = m_new;
        corr[r] = c;
    }
}

// ---- accumulate ----

// One cache element as float, for the dimensions left over past whole registers.
template <class V>
float element(float x) { return x; }
template <class V>
float element(uint16_t h) { return V::to_float(h); }

// R output rows x D registers of dimensions (o and v already offset to the first dimension).
template <class V, int R, int D, class T>
void accumulate_tile(const float* p, int64_t n_keys, int64_t p_stride, const T* v, int64_t head_dim,
                     const float* corr, float* o) {
    typename V::reg acc[R][D];
    for (int r = 0; r < R; ++r) {
        const typename V::reg c = V::set1(corr[r]);
        for (int j = 0; j < D; ++j) acc[r][j] = V::mul(V::load(o + r * head_dim + j * V::N), c);
    }
    for (int64_t k = 0; k < n_keys; ++k) {
        typename V::reg vv[D];
        for (int j = 0; j < D; ++j) vv[j] = V::load(v + k * head_dim + j * V::N);
        for (int r = 0; r < R; ++r) {
            const typename V::reg pk = V::set1(p[r * p_stride + k]);
            for (int j = 0; j < D; ++j) acc[r][j] = V::fma(pk, vv[j], acc[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < D; ++j) V::store(o + r * head_dim + j * V::N, acc[r][j]);
}

template <class V, int R, int D, class T>
void accumulate_rows(int rows, const float* p, int64_t n_keys, int64_t p_stride, const T* v, int64_t head_dim,
                     const float* corr, float* o) {
    if constexpr (R > 1) {
        if (rows < R) return accumulate_rows<V, R - 1, D>(rows, p, n_keys, p_stride, v, head_dim, corr, o);
    }
    accumulate_tile<V, R, D>(p, n_keys, p_stride, v, head_dim, corr, o);
}

template <class V, class T>
void accumulate(const float* p, int64_t n_rows, int64_t n_keys, int64_t p_stride, const T* v, int64_t head_dim,
                const float* corr, float* o) {
    constexpr int64_t kSlice = V::kAccVecs * V::N;
    for (int64_t r0 = 0; r0 < n_rows; r0 += V::kAccRows) {
        const int rows = n_rows - r0 < V::kAccRows ? static_cast<int>(n_rows - r0) : V::kAccRows;
        const float* pr = p + r0 * p_stride;
        float* orow = o + r0 * head_dim;
        int64_t d = 0;
        for (; d + kSlice <= head_dim; d += kSlice)
            accumulate_rows<V, V::kAccRows, V::kAccVecs>(rows, pr, n_keys, p_stride, v + d, head_dim, corr + r0, orow + d);
        for (; d + V::N <= head_dim; d += V::N)
            accumulate_rows<V, V::kAccRows, 1>(rows, pr, n_keys, p_stride, v + d, head_dim, corr + r0, orow + d);
        for (; d < head_dim; ++d)  // head_dim not a multiple of N
            for (int r = 0; r < rows; ++r) {
                float sum = orow[r * head_dim + d] * corr[r0 + r];
                for (int64_t k = 0; k < n_keys; ++k) sum += pr[r * p_stride + k] * element<V>(v[k * head_dim + d]);
                orow[r * head_dim + d] = sum;
            }
    }
}

// ---- activations ----

template <class V>
typename V::reg silu_mul_reg(typename V::reg g, typename V::reg u) {
    const typename V::reg e = vexp<V>(V::sub(V::zero(), g));
    return V::mul(V::div(g, V::add(V::set1(1.0f), e)), u);
}

template <class V>
void silu_mul(float* gate, const float* up, int64_t n) {
    int64_t i = 0;
    for (; i + V::N <= n; i += V::N) V::store(gate + i, silu_mul_reg<V>(V::load(gate + i), V::load(up + i)));
    if (i < n) {  // the tail through a full register
        float g[V::N] = {}, u[V::N] = {};
        for (int64_t j = i; j < n; ++j) g[j - i] = gate[j], u[j - i] = up[j];
        V::store(g, silu_mul_reg<V>(V::load(g), V::load(u)));
        for (int64_t j = i; j < n; ++j) gate[j] = g[j - i];
    }
}

template <class V>
constexpr SimdKernels simd_kernel_table() {
    return SimdKernels{scores<V, uint16_t>,     scores<V, float>,     softmax_step<V>,
                       accumulate<V, uint16_t>, accumulate<V, float>, silu_mul<V>};
}

}  // namespace
}  // namespace pyllama
