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

// Units of weights (tiles, or blocks of rows) per work item of a matmul pass over n_units of them,
// for few input rows (generation), where the pass is a read of the weights from memory: as many
// as leave each thread about 4 items, within [lo, hi]. Each thread then reads long runs of
// consecutive bytes, which the hardware prefetcher follows best (one-token Q4_K GEMM on two
// threads: 26.5 GB/s with one tile per item, 32 GB/s with 32; the demo model's Q4_1 rows, 16 per
// item, made two threads slower than one), while the items still even out the finish.
int64_t units_per_item(int64_t n_units, const ThreadPool& pool, int64_t lo, int64_t hi) {
    return std::clamp<int64_t>(n_units / (4 * pool.size()), lo, hi);
}

// One product of a pass over repacked weights.
struct RepackedPart {
    const WeightMatrix* w;
    float* y;
    const MatmulKernel* kernel;  // vec_dot for the rows after the last tile
    const GemmKernel* gemm;
    size_t tile_bytes;
    int64_t group;  // tiles per work item
    int64_t n_groups;
};

// Repacked weights times one input, in one pass of the pool: the tiles through the GEMM, the rows
// after the last tile through vec_dot. Work items are (chunk of input rows, product, group of
// tiles), taken from the pool's shared counter: a chunk keeps the activations a thread walks
// through in its cache while every tile passes by, and the threads, working on the same chunk at
// once, share it in the last-level cache. The rows after the last tile (all input rows at once)
// come first, so none of them ends up alone at the end.
void matmul_repacked(ThreadPool& pool, std::vector<RepackedPart>& parts, const uint8_t* act, size_t act_row,
                     int64_t n_rows) {
    const int64_t n_in = parts[0].w->n_in;
    std::vector<int16_t> sums(static_cast<size_t>(n_rows * (n_in / 32)));
    activation_sums32(act, n_rows, n_in, sums.data());
    // Each chunk of input rows reads all the weights once, from memory when they are larger than
    // the caches: 128 rows read them half as often as 64 (one core, Q4_K 4096x32000 x 512 rows:
    // 332 GOP/s against 322; 256 gave no more), and 128 rows of 4096 Q8_K activations (590 KB)
    // still fit in L2.
    constexpr int64_t kChunkRows = 128;
    std::vector<const RepackedPart*> tails;
    int64_t groups_per_chunk = 0;
    for (RepackedPart& p : parts) {
        p.gemm = &gemm_kernel(p.w->type);
        p.tile_bytes = repacked_tile_bytes(p.w->type, n_in);
        // Tiles go in pairs at least: the AVX-512 GEMM takes two at a time.
        p.group = n_rows >= 8 ? 2 : units_per_item(p.w->n_tiles, pool, 2, 32);
        p.n_groups = (p.w->n_tiles + p.group - 1) / p.group;
        groups_per_chunk += p.n_groups;
        if (p.w->n_tiles * kTileRows < p.w->n_out) tails.push_back(&p);
    }
    const auto n_tails = static_cast<int64_t>(tails.size());
    const int64_t n_chunks = (n_rows + kChunkRows - 1) / kChunkRows;
    pool.parallel_for(n_tails + n_chunks * groups_per_chunk, 1, [&](int64_t item, int64_t) {
        if (item < n_tails) {
            const WeightMatrix& w = *tails[item]->w;
            vec_dot_rows(w, *tails[item]->kernel, act, act_row, n_rows, w.n_tiles * kTileRows, w.n_out, tails[item]->y);
            return;
        }
        item -= n_tails;
        const int64_t chunk = item / groups_per_chunk;
        int64_t g = item % groups_per_chunk;
        const RepackedPart* p = parts.data();
        while (g >= p->n_groups) g -= p++->n_groups;
        const WeightMatrix& w = *p->w;
        const int64_t t0 = g * p->group, t1 = std::min(w.n_tiles, t0 + p->group);
        const int64_t r0 = chunk * kChunkRows, r1 = std::min(n_rows, r0 + kChunkRows);
        p->gemm->gemm(n_in, w.repacked.get() + t0 * p->tile_bytes, t1 - t0, act + r0 * act_row,
                      sums.data() + r0 * (n_in / 32), r1 - r0, p->y + r0 * w.n_out + t0 * kTileRows, w.n_out);
    });
}

void check_columns(const WeightMatrix& w, const MatmulInput& input) {
    if (input.n_cols() != w.n_in)
        throw Error("matmul: input rows have " + std::to_string(input.n_cols()) +
                    " columns, weight rows have " + std::to_string(w.n_in));
}

}  // namespace

void matmul(ThreadPool& pool, const WeightMatrix& w, MatmulInput& input, float* y) {
    matmul(pool, {{&w, y}}, input);
}

void matmul(ThreadPool& pool, std::initializer_list<MatmulProduct> products, MatmulInput& input) {
    for (const MatmulProduct& p : products) check_columns(*p.w, input);
    // One pass for all when all are repacked (they then share Q8_K activations).
    bool one_pass = true;
    for (const MatmulProduct& p : products) one_pass = one_pass && p.w->repacked;
    if (one_pass) {
        std::vector<RepackedPart> parts;
        for (const MatmulProduct& p : products) parts.push_back({p.w, p.y, &matmul_kernel(p.w->type), nullptr, 0, 0});
        const uint8_t* act = static_cast<const uint8_t*>(input.converted(pool, *parts[0].kernel));
        return matmul_repacked(pool, parts, act, input.row_bytes(parts[0].kernel->act_type), input.n_rows());
    }
    for (const MatmulProduct& p : products) {
        const WeightMatrix& w = *p.w;
        const MatmulKernel& kernel = matmul_kernel(w.type);
        const uint8_t* act = static_cast<const uint8_t*>(input.converted(pool, kernel));
        const size_t act_row = input.row_bytes(kernel.act_type);  // F32 rows too: 4 bytes per element
        if (w.repacked) {
            std::vector<RepackedPart> parts{{&w, p.y, &kernel, nullptr, 0, 0}};
            matmul_repacked(pool, parts, act, act_row, input.n_rows());
            continue;
        }
        // Threads take blocks of weight rows and run every input row through a block while it
        // is hot in cache; with few input rows, longer blocks (up to 256 rows).
        constexpr int64_t kRowBlock = 16;
        const int64_t rows_per_block =
            kRowBlock * (input.n_rows() >= 8 ? 1 : units_per_item(w.n_out / kRowBlock, pool, 1, 16));
        pool.parallel_for(w.n_out, rows_per_block, [&](int64_t o0, int64_t o1) {
            vec_dot_rows(w, kernel, act, act_row, input.n_rows(), o0, o1, p.y);
        });
    }
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
