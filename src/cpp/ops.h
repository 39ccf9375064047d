// The tensor operations of a transformer layer, over plain float rows. Matmul goes through
// the kernel table (quant/quant.h); nothing here knows which ISA runs the kernels, and
// nothing here knows what a layer is.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "quant/quant.h"
#include "threadpool.h"

namespace pyllama {

// A 2-D weight matrix as stored in the file: n_out rows of n_in elements of `type`.
struct WeightMatrix {
    GGMLType type = GGMLType::F32;
    int64_t n_in = 0;    // ne[0]: row length
    int64_t n_out = 0;   // ne[1]: number of rows
    const uint8_t* data = nullptr;
    size_t row_bytes = 0;
    // The first n_tiles * 8 rows as row-interleaved tiles (quant/repack.h), 64-byte aligned, once
    // repack_weights has built them; matmul then multiplies those rows with the GEMM of whatever
    // level is in use (quant/gemm.h), and only the remaining rows from `data`.
    std::shared_ptr<const uint8_t> repacked;
    int64_t n_tiles = 0;
};

// True when `w` has a row-interleaved layout and the level in use a GEMM for it: repacking pays.
bool worth_repacking(const WeightMatrix& w);

// Builds w.repacked from w.data (all whole tiles of 8 rows), on the pool's threads. Throws
// pyllama::Error for a type without a repacked layout.
void repack_weights(ThreadPool& pool, WeightMatrix& w);

// Input rows converted once into the activation formats of the kernels that read them, so that
// several matmuls over the same input (Q, K, V; gate, up) share one conversion.
class MatmulInput {
public:
    // x: n_rows rows of n_cols floats, which must stay alive while this object is used.
    void set(const float* x, int64_t n_rows, int64_t n_cols);
    // The rows in kernel.act_type (converting them on first use); F32 rows are the input itself.
    const void* converted(ThreadPool& pool, const MatmulKernel& kernel);
    int64_t n_rows() const { return n_rows_; }
    int64_t n_cols() const { return n_cols_; }
    size_t row_bytes(GGMLType act_type) const;

private:
    struct Converted {
        GGMLType act_type;
        std::vector<uint8_t> bytes;
        bool valid = false;
    };
    const float* x_ = nullptr;
    int64_t n_rows_ = 0, n_cols_ = 0;
    std::vector<Converted> cache_;
};

// y[r * w.n_out + o] = dot(w row o, input row r), for every input row r.
void matmul(ThreadPool& pool, const WeightMatrix& w, MatmulInput& input, float* y);

// Several matmuls over the same input (Q, K, V; gate, up): one pass of the pool when all the
// matrices are repacked, which saves the threads a meeting per matrix.
struct MatmulProduct {
    const WeightMatrix* w;
    float* y;
};
void matmul(ThreadPool& pool, std::initializer_list<MatmulProduct> products, MatmulInput& input);

// y = x / rms(x) * weight, row by row (n_rows rows of n floats).
void rms_norm(const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps);

// Rotary position embedding in llama.cpp's "normal" mode: adjacent pairs (x[2i], x[2i+1]) of the
// first n_rot dims of each head rotate by pos * freq_scale * base^(-2i/n_rot) / freq_factor[i].
struct RopeParams {
    int n_rot = 0;
    float freq_base = 10000.0f;
    float freq_scale = 1.0f;                 // 1 / linear scaling factor
    const float* freq_factors = nullptr;     // n_rot/2 divisors (Llama 3.1 rope_freqs), or null
};
// Precomputed cos/sin for one position: n_rot/2 pairs.
void rope_table(const RopeParams& p, int64_t pos, float* cos_out, float* sin_out);
void rope_apply(float* x, int n_heads, int head_dim, int n_rot, const float* cos_t, const float* sin_t);

}  // namespace pyllama
