// The SIMD kernels of simd/kernels.h and the attention built on them, at every instruction-set
// level this CPU has, against the scalar level, without Python: run natively for the x86 levels
// and under qemu-aarch64 for NEON (see run_kernel_tests.sh). tests/test_attention.py checks the
// scalar level against a float64 reference.
//
// Bounds: scores and accumulate sum over the same index in the same order at every level; they
// differ by FMA (one rounding fewer per term), so by at most 2 k u sum |terms| for k terms. The
// softmax step and silu differ by the SIMD exp (a few ulp).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "dispatch.h"
#include "kv_cache.h"
#include "quant/float16.h"
#include "simd/kernels.h"
#include "threadpool.h"
#include "test_summary.h"

using namespace pyllama;

namespace {

constexpr float kU = 0x1p-24f;
constexpr int64_t kBlock = KVCache::kKeyBlock;
int g_failures = 0;
int g_checks = 0;

void check_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                 const std::vector<float>& bound) {
    ++g_checks;
    for (size_t i = 0; i < got.size(); ++i) {
        const bool same_inf = std::isinf(got[i]) && got[i] == want[i];
        if (!same_inf && !(std::fabs(got[i] - want[i]) <= bound[i])) {
            std::printf("FAIL %s: element %zu is %.9g, scalar %.9g (bound %.3g)\n", what.c_str(), i, got[i], want[i],
                        bound[i]);
            ++g_failures;
            return;
        }
    }
}

std::vector<float> normal(std::mt19937& rng, size_t n, float scale = 1.0f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> x(n);
    for (float& v : x) v = dist(rng);
    return x;
}

// Key blocks (KVCache layout) holding `keys` (n_blocks * kBlock rows of head_dim).
template <class T>
std::vector<T> key_blocks(const std::vector<float>& keys, int64_t n_blocks, int64_t head_dim);
template <>
std::vector<float> key_blocks(const std::vector<float>& keys, int64_t n_blocks, int64_t head_dim) {
    std::vector<float> out(keys.size());
    for (int64_t j = 0; j < n_blocks * kBlock; ++j)
        for (int64_t d = 0; d < head_dim; ++d)
            out[(j / kBlock) * head_dim * kBlock + d * kBlock + j % kBlock] = keys[j * head_dim + d];
    return out;
}
template <>
std::vector<uint16_t> key_blocks(const std::vector<float>& keys, int64_t n_blocks, int64_t head_dim) {
    const std::vector<float> f = key_blocks<float>(keys, n_blocks, head_dim);
    std::vector<uint16_t> out(f.size());
    for (size_t i = 0; i < f.size(); ++i) out[i] = fp32_to_fp16(f[i]);
    return out;
}

float element(float x) { return x; }
float element(uint16_t h) { return fp16_to_fp32(h); }

template <class T>
void check_scores(const std::string& level, std::mt19937& rng, int64_t rows, int64_t head_dim, int64_t n_blocks) {
    const std::vector<float> q = normal(rng, rows * head_dim);
    const std::vector<T> keys = key_blocks<T>(normal(rng, n_blocks * kBlock * head_dim), n_blocks, head_dim);
    const int64_t stride = n_blocks * kBlock + 3;
    std::vector<float> want(rows * stride), got(rows * stride), bound(rows * stride);
    const auto scores = [](const SimdKernels& k) {
        if constexpr (std::is_same<T, float>::value) return k.scores_f32;
        else return k.scores_f16;
    };
    set_isa("scalar");
    scores(simd_kernels())(q.data(), rows, head_dim, keys.data(), n_blocks, want.data(), stride);
    set_isa(level);
    scores(simd_kernels())(q.data(), rows, head_dim, keys.data(), n_blocks, got.data(), stride);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n_blocks * kBlock; ++j) {
            float mag = 0.0f;
            for (int64_t d = 0; d < head_dim; ++d)
                mag += std::fabs(q[r * head_dim + d] * element(keys[(j / kBlock) * head_dim * kBlock + d * kBlock + j % kBlock]));
            bound[r * stride + j] = 2 * head_dim * kU * mag;
        }
    for (int64_t r = 0; r < rows; ++r)  // the stride's padding is not written
        for (int64_t j = n_blocks * kBlock; j < stride; ++j) got[r * stride + j] = want[r * stride + j];
    check_close(level + " scores rows " + std::to_string(rows) + " head_dim " + std::to_string(head_dim) +
                    " blocks " + std::to_string(n_blocks) + (sizeof(T) == 2 ? " f16" : " f32"),
                got, want, bound);
}

void check_softmax_step(const std::string& level, std::mt19937& rng, int64_t rows, int64_t cols) {
    std::vector<float> s = normal(rng, rows * cols, 3.0f);
    std::vector<float> m(rows), l(rows);
    for (int64_t r = 0; r < rows; ++r) {
        // some rows fully masked, some masked from a column on; some with no history yet
        const int64_t visible = r % 4 == 3 ? 0 : cols - (r * 5) % cols;
        for (int64_t j = visible; j < cols; ++j) s[r * cols + j] = -INFINITY;
        m[r] = r % 3 == 0 ? -INFINITY : static_cast<float>(r % 5) - 2.0f;
        l[r] = r % 3 == 0 ? 0.0f : 1.0f + static_cast<float>(r);
    }
    std::vector<float> s_want = s, m_want = m, l_want = l, c_want(rows), c_got(rows);
    set_isa("scalar");
    simd_kernels().softmax_step(s_want.data(), rows, cols, cols, 0.7f, m_want.data(), l_want.data(), c_want.data());
    set_isa(level);
    simd_kernels().softmax_step(s.data(), rows, cols, cols, 0.7f, m.data(), l.data(), c_got.data());
    const std::string what = level + " softmax_step rows " + std::to_string(rows) + " cols " + std::to_string(cols);
    std::vector<float> bound(s.size());
    for (size_t i = 0; i < s.size(); ++i) bound[i] = 8 * kU * std::fabs(s_want[i]);
    check_close(what + " weights", s, s_want, bound);
    check_close(what + " max", m, m_want, std::vector<float>(rows, 0.0f));
    std::vector<float> l_bound(rows), c_bound(rows);
    for (int64_t r = 0; r < rows; ++r) {
        l_bound[r] = (8 + 2 * cols) * kU * l_want[r];
        c_bound[r] = 8 * kU * c_want[r];
    }
    check_close(what + " sum", l, l_want, l_bound);
    check_close(what + " correction", c_got, c_want, c_bound);
}

template <class T>
void check_accumulate(const std::string& level, std::mt19937& rng, int64_t rows, int64_t n_keys, int64_t head_dim) {
    const int64_t p_stride = n_keys + 5;
    std::vector<float> p = normal(rng, rows * p_stride), corr = normal(rng, rows), o = normal(rng, rows * head_dim);
    const std::vector<float> vf = normal(rng, n_keys * head_dim);
    std::vector<T> v(vf.size());
    for (size_t i = 0; i < v.size(); ++i) {
        if constexpr (std::is_same<T, float>::value) v[i] = vf[i];
        else v[i] = fp32_to_fp16(vf[i]);
    }
    const std::vector<float> o_before = o;
    std::vector<float> want = o;
    const auto accumulate = [](const SimdKernels& k) {
        if constexpr (std::is_same<T, float>::value) return k.accumulate_f32;
        else return k.accumulate_f16;
    };
    set_isa("scalar");
    accumulate(simd_kernels())(p.data(), rows, n_keys, p_stride, v.data(), head_dim, corr.data(), want.data());
    set_isa(level);
    accumulate(simd_kernels())(p.data(), rows, n_keys, p_stride, v.data(), head_dim, corr.data(), o.data());
    std::vector<float> bound(o.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t d = 0; d < head_dim; ++d) {
            float mag = std::fabs(o_before[r * head_dim + d] * corr[r]);
            for (int64_t j = 0; j < n_keys; ++j) mag += std::fabs(p[r * p_stride + j] * element(v[j * head_dim + d]));
            bound[r * head_dim + d] = 2 * (n_keys + 1) * kU * mag + 1e-30f;
        }
    check_close(level + " accumulate rows " + std::to_string(rows) + " keys " + std::to_string(n_keys) + " head_dim " +
                    std::to_string(head_dim) + (sizeof(T) == 2 ? " f16" : " f32"),
                o, want, bound);
}

void check_silu(const std::string& level, std::mt19937& rng, int64_t n) {
    std::vector<float> gate = normal(rng, n, 8.0f), up = normal(rng, n);
    if (n > 4) gate[1] = -100.0f, gate[2] = 100.0f, gate[3] = 0.0f;
    std::vector<float> want = gate;
    set_isa("scalar");
    simd_kernels().silu_mul(want.data(), up.data(), n);
    set_isa(level);
    simd_kernels().silu_mul(gate.data(), up.data(), n);
    std::vector<float> bound(n);
    for (int64_t i = 0; i < n; ++i) bound[i] = 16 * kU * std::fabs(want[i]) + 1e-30f;
    check_close(level + " silu_mul n " + std::to_string(n), gate, want, bound);
}

// The whole attention of n tokens over n_keys positions, at `level` with n_threads, against the
// scalar level with one thread.
void check_attention(const std::string& level, std::mt19937& rng, int64_t n, int64_t n_keys, int64_t group,
                     GGMLType type, int n_threads) {
    const int64_t n_head_kv = 2, head_dim = 64, n_head = group * n_head_kv;
    const std::vector<float> q = normal(rng, n * n_head * head_dim);
    const std::vector<float> k = normal(rng, n_keys * n_head_kv * head_dim), v = normal(rng, k.size());
    KVCache cache(1, n_keys, n_head_kv, head_dim, type);
    for (int64_t p = 0; p < n_keys; ++p)
        cache.store(0, p, &k[p * n_head_kv * head_dim], &v[p * n_head_kv * head_dim]);
    std::vector<float> want(q.size()), got(q.size());
    {
        set_isa("scalar");
        ThreadPool pool(1);
        Attention(n_head, n_head_kv, head_dim, 512, 1).run(pool, cache, 0, q.data(), n, n_keys - n, want.data());
    }
    set_isa(level);
    ThreadPool pool(n_threads);
    Attention(n_head, n_head_kv, head_dim, 512, n_threads).run(pool, cache, 0, q.data(), n, n_keys - n, got.data());
    // outputs are weighted means of N(0, 1) values: |out| < 5, errors ~1e-6
    check_close(level + " attention n " + std::to_string(n) + " keys " + std::to_string(n_keys) + " group " +
                    std::to_string(group) + (type == GGMLType::F16 ? " f16" : " f32") + " threads " +
                    std::to_string(n_threads),
                got, want, std::vector<float>(got.size(), 5e-6f));
}

}  // namespace

int main() {
    std::mt19937 rng(4321);
    for (Isa isa : available_isas()) {
        if (isa == Isa::Scalar) continue;
        const std::string level = isa_name(isa);
        for (int64_t rows : {1, 3, 8, 13})
            for (int64_t head_dim : {8, 40, 64, 128})
                for (int64_t blocks : {1, 2, 3, 5}) {
                    check_scores<float>(level, rng, rows, head_dim, blocks);
                    check_scores<uint16_t>(level, rng, rows, head_dim, blocks);
                }
        for (int64_t rows : {1, 5, 12})
            for (int64_t cols : {16, 32, 64}) check_softmax_step(level, rng, rows, cols);
        for (int64_t rows : {1, 3, 4, 9})
            for (int64_t keys : {1, 17, 64})
                for (int64_t head_dim : {8, 40, 64, 72, 128}) {
                    check_accumulate<float>(level, rng, rows, keys, head_dim);
                    check_accumulate<uint16_t>(level, rng, rows, keys, head_dim);
                }
        for (int64_t n = 1; n <= 40; ++n) check_silu(level, rng, n);
        check_silu(level, rng, 1000);
        for (int n_threads : {1, 2, 3})
            for (int64_t group : {1, 4, 8})
                for (GGMLType type : {GGMLType::F16, GGMLType::F32}) {
                    check_attention(level, rng, 1, 1, group, type, n_threads);
                    check_attention(level, rng, 1, 700, group, type, n_threads);
                    check_attention(level, rng, 7, 40, group, type, n_threads);
                    check_attention(level, rng, 33, 33, group, type, n_threads);
                }
    }
    return test_summary("simd: ", g_checks, g_failures);
}
