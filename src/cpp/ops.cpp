#include "ops.h"

#include <algorithm>
#include <cmath>

#include "error.h"

namespace pyllama {

size_t MatmulInput::row_bytes(GGMLType act_type) const { return row_size(act_type, n_cols_); }

void MatmulInput::set(const float* x, int64_t n_rows, int64_t n_cols) {
    x_ = x;
    n_rows_ = n_rows;
    n_cols_ = n_cols;
    for (Converted& c : cache_) c.valid = false;
}

const void* MatmulInput::converted(ThreadPool& pool, const MatmulKernel& kernel) {
    const GGMLType act_type = kernel.act_type;
    if (act_type == GGMLType::F32) return x_;  // kernels read float rows directly
    Converted* slot = nullptr;
    for (Converted& c : cache_)
        if (c.act_type == act_type) slot = &c;
    if (!slot) {
        cache_.push_back({act_type, {}, false});
        slot = &cache_.back();
    }
    if (!slot->valid) {
        const size_t rb = row_bytes(act_type);
        slot->bytes.resize(rb * n_rows_);
        uint8_t* out = slot->bytes.data();
        const float* x = x_;
        const int64_t n = n_cols_;
        pool.parallel_for(n_rows_, 4, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) kernel.quantize_act(x + r * n, out + r * rb, n);
        });
        slot->valid = true;
    }
    return slot->bytes.data();
}

void matmul(ThreadPool& pool, const WeightMatrix& w, MatmulInput& input, float* y) {
    if (input.n_cols() != w.n_in)
        throw Error("matmul: input rows have " + std::to_string(input.n_cols()) +
                    " columns, weight rows have " + std::to_string(w.n_in));
    const MatmulKernel& kernel = matmul_kernel(w.type);
    const uint8_t* act = static_cast<const uint8_t*>(input.converted(pool, kernel));
    const size_t act_row = input.row_bytes(kernel.act_type);  // F32 rows too: 4 bytes per element
    const int64_t n_rows = input.n_rows();
    // Threads take blocks of weight rows and run every input row through a block while it
    // is hot in cache.
    constexpr int64_t kRowBlock = 16;
    pool.parallel_for(w.n_out, kRowBlock, [&](int64_t o0, int64_t o1) {
        for (int64_t r = 0; r < n_rows; ++r) {
            const uint8_t* a = act + r * act_row;
            float* yr = y + r * w.n_out;
            for (int64_t o = o0; o < o1; ++o) yr[o] = kernel.vec_dot(w.n_in, w.data + o * w.row_bytes, a);
        }
    });
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps) {
    // The sum of squares in double, as llama.cpp; in kLanes independent partial sums, which the
    // compiler keeps in vector registers (one running sum would be a chain of dependent adds).
    constexpr int kLanes = 8;
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        double partial[kLanes] = {};
        int64_t i = 0;
        for (; i + kLanes <= n; i += kLanes)
            for (int j = 0; j < kLanes; ++j) partial[j] += static_cast<double>(xr[i + j]) * xr[i + j];
        double sum = 0.0;
        for (; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
        for (int j = 0; j < kLanes; ++j) sum += partial[j];
        const float scale = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
        for (i = 0; i < n; ++i) yr[i] = xr[i] * scale * weight[i];
    }
}

void rope_table(const RopeParams& p, int64_t pos, float* cos_out, float* sin_out) {
    for (int i = 0; i < p.n_rot / 2; ++i) {
        double theta = static_cast<double>(pos) * p.freq_scale *
                       std::pow(static_cast<double>(p.freq_base), -2.0 * i / p.n_rot);
        if (p.freq_factors) theta /= p.freq_factors[i];
        cos_out[i] = static_cast<float>(std::cos(theta));
        sin_out[i] = static_cast<float>(std::sin(theta));
    }
}

void rope_apply(float* x, int n_heads, int head_dim, int n_rot, const float* cos_t, const float* sin_t) {
    for (int h = 0; h < n_heads; ++h) {
        float* xh = x + static_cast<int64_t>(h) * head_dim;
        for (int i = 0; i < n_rot / 2; ++i) {
            const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
            xh[2 * i] = x0 * cos_t[i] - x1 * sin_t[i];
            xh[2 * i + 1] = x0 * sin_t[i] + x1 * cos_t[i];
        }
    }
}

}  // namespace pyllama
