// Matrix multiplication over the row-interleaved tiles of repack.h: a tile of 8 weight rows
// against any number of Q8_K activation rows (tokens), unpacking each weight once for all of
// them, where vec_dot (quant.h) would unpack every weight again for every token.
#pragma once
#include <cstddef>
#include <cstdint>

#include "dispatch.h"
#include "quant/types.h"

namespace pyllama {

struct GemmKernel {
    GGMLType weight_type;  // Q4_K or Q6_K, repacked (repack.h); activations are Q8_K rows
    // Tiles [0, n_tiles) at w (repacked_tile_bytes(weight_type, n_in) apart, any alignment) times
    // n_tokens activation rows at act (row_size(Q8_K, n_in) apart, aligned for BlockQ8_K), with
    // their activation_sums32 at sums (n_in / 32 per row):
    // y[t * y_stride + 8 * tile + r] = dot(row r of the tile, activation row t).
    void (*gemm)(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t* sums,
                 int64_t n_tokens, float* y, int64_t y_stride);
};

// The sums of each 32 consecutive activations (bsums[2j] + bsums[2j+1] of each BlockQ8_K) of
// n_rows Q8_K rows of n_in elements: the Q4_K mins' share of the dot products, computed once per
// input instead of once per tile of 8 weight rows.
void activation_sums32(const uint8_t* act, int64_t n_rows, int64_t n_in, int16_t* sums);

struct GemmTable {
    const GemmKernel* entries;
    size_t count;
};

// The GEMM of `isa`'s own table for weights of `type`, or null when that level has none. The
// scalar level has one for every repacked layout: the reference the others are tested against,
// and the fallback that keeps a repacked matrix usable whatever level runs.
const GemmKernel* find_gemm(GGMLType type, Isa isa);

// The GEMM of the level in use (current_isa()), else the scalar one. Throws pyllama::Error for a
// type without a repacked layout.
const GemmKernel& gemm_kernel(GGMLType type);

}  // namespace pyllama
