#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>

#include "dispatch.h"
#include "error.h"
#include "quant/gemm.h"
#include "quant/repack.h"

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

bool worth_repacking(const WeightMatrix& w) {
    return has_repacked_layout(w.type) && w.n_out >= kTileRows && current_isa() != Isa::Scalar &&
           find_gemm(w.type, current_isa()) != nullptr;
}

void repack_weights(ThreadPool& pool, WeightMatrix& w) {
    const int64_t n_tiles = w.n_out / kTileRows;
    const size_t tile_bytes = repacked_tile_bytes(w.type, w.n_in);
    const size_t bytes = std::max<size_t>(64, (n_tiles * tile_bytes + 63) / 64 * 64);  // aligned_alloc wants a multiple
    void* buffer = std::aligned_alloc(64, bytes);
    if (!buffer) throw std::bad_alloc();
    std::shared_ptr<uint8_t> tiles(static_cast<uint8_t*>(buffer), [](uint8_t* p) { std::free(p); });
    pool.parallel_for(n_tiles, 4, [&](int64_t t0, int64_t t1) {
        repack_tiles(w.type, w.data, w.row_bytes, w.n_in, t0, t1, tiles.get() + t0 * tile_bytes);
    });
    w.repacked = std::move(tiles);
    w.n_tiles = n_tiles;
}

namespace {

// Rows [o0, o1) of w for every input row, one vec_dot each, from the file's layout.
void vec_dot_rows(const WeightMatrix& w, const MatmulKernel& kernel, const uint8_t* act, size_t act_row,
                  int64_t n_rows, int64_t o0, int64_t o1, float* y) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const uint8_t* a = act + r * act_row;
        float* yr = y + r * w.n_out;
        for (int64_t o = o0; o < o1; ++o) yr[o] = kernel.vec_dot(w.n_in, w.data + o * w.row_bytes, a);
    }
}

// The repacked tiles through the GEMM, the rows after the last tile through vec_dot. Work items
// are (chunk of input rows, group of tiles), taken from the pool's shared counter: chunks keep
// the activations a thread walks through in its cache while every tile of the weight passes by,
// and the threads, working on the same chunk at once, share it in the last-level cache.
void matmul_repacked(ThreadPool& pool, const WeightMatrix& w, const MatmulKernel& kernel, const uint8_t* act,
                     size_t act_row, int64_t n_rows, float* y) {
    const GemmKernel& gemm = gemm_kernel(w.type);
    const size_t tile_bytes = repacked_tile_bytes(w.type, w.n_in);
    std::vector<int16_t> sums(static_cast<size_t>(n_rows * (w.n_in / 32)));
    activation_sums32(act, n_rows, w.n_in, sums.data());
    constexpr int64_t kChunkRows = 64;
    // Few input rows (generation): groups of tiles, so the counter is not hit for every 8 rows.
    const int64_t group = n_rows >= 8 ? 1 : 4;
    const int64_t n_groups = (w.n_tiles + group - 1) / group;
    const int64_t n_chunks = (n_rows + kChunkRows - 1) / kChunkRows;
    const bool tail = w.n_tiles * kTileRows < w.n_out;
    pool.parallel_for(n_chunks * n_groups + (tail ? 1 : 0), 1, [&](int64_t item, int64_t) {
        if (tail && item == 0) {  // first, so it never ends up alone at the end
            vec_dot_rows(w, kernel, act, act_row, n_rows, w.n_tiles * kTileRows, w.n_out, y);
            return;
        }
        if (tail) --item;
        const int64_t chunk = item / n_groups, g = item % n_groups;
        const int64_t t0 = g * group, t1 = std::min(w.n_tiles, t0 + group);
        const int64_t r0 = chunk * kChunkRows, r1 = std::min(n_rows, r0 + kChunkRows);
        gemm.gemm(w.n_in, w.repacked.get() + t0 * tile_bytes, t1 - t0, act + r0 * act_row,
                  sums.data() + r0 * (w.n_in / 32), r1 - r0, y + r0 * w.n_out + t0 * kTileRows, w.n_out);
    });
}

}  // namespace

void matmul(ThreadPool& pool, const WeightMatrix& w, MatmulInput& input, float* y) {
    if (input.n_cols() != w.n_in)
        throw Error("matmul: input rows have " + std::to_string(input.n_cols()) +
                    " columns, weight rows have " + std::to_string(w.n_in));
    const MatmulKernel& kernel = matmul_kernel(w.type);
    const uint8_t* act = static_cast<const uint8_t*>(input.converted(pool, kernel));
    const size_t act_row = input.row_bytes(kernel.act_type);  // F32 rows too: 4 bytes per element
    const int64_t n_rows = input.n_rows();
    if (w.repacked) return matmul_repacked(pool, w, kernel, act, act_row, n_rows, y);
    // Threads take blocks of weight rows and run every input row through a block while it
    // is hot in cache.
    constexpr int64_t kRowBlock = 16;
    pool.parallel_for(w.n_out, kRowBlock, [&](int64_t o0, int64_t o1) {
        vec_dot_rows(w, kernel, act, act_row, n_rows, o0, o1, y);
    });
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
        const float scale = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * weight[i];
    }
}

void silu_mul(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void softmax(float* x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
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
