// The portable GEMM over repacked tiles: the executable statement of repack.h's layouts. Each
// row's quants are read back out of the tile into plain integers and combined exactly as
// vec_dot_scalar.cpp combines them (same integer sums, same float operations in the same order),
// so its results equal the scalar vec_dot's bit for bit.
#include "quant/blocks.h"
#include "quant/isa_gemm.h"
#include "quant/repack.h"

namespace pyllama {

namespace {

int32_t dot_i8(const int8_t* x, const int8_t* y, int n) {
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) sum += static_cast<int32_t>(x[i]) * static_cast<int32_t>(y[i]);
    return sum;
}

// Row r's 256 quants (0..15) out of a tile's nibble bytes, quarter q at q * quarter_stride.
void read_nibbles(const uint8_t* qs, size_t quarter_stride, int r, int8_t q[kQK_K]) {
    for (int i = 0; i < kQK_K; ++i) {
        const int quarter = i / 64, half = (i % 64) / 32, g = (i % 32) / 4, e = i % 4;
        const uint8_t byte = qs[quarter * quarter_stride + 32 * g + 4 * r + e];
        q[i] = static_cast<int8_t>(half ? byte >> 4 : byte & 0x0f);
    }
}

// Adds the 2-bit high parts of a Q6_Kx8 tile (bits 4-5 of each quant).
void add_high_bits(const uint8_t* qh, size_t quarter_stride, int r, int8_t q[kQK_K]) {
    for (int i = 0; i < kQK_K; ++i) {
        const int quarter = i / 64, half = (i % 64) / 32, g = (i % 32) / 4, e = i % 4;
        const int shift = 4 * half + 2 * (g / 4);
        const uint8_t byte = qh[quarter * quarter_stride + 32 * (g % 4) + 4 * r + e];
        q[i] = static_cast<int8_t>(q[i] | (((byte >> shift) & 3) << 4));
    }
}

template <class Tile, float (*RowDot)(const Tile*, int, const BlockQ8_K*, int64_t)>
void gemm_tiles(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, int64_t n_tokens, float* y,
                int64_t y_stride) {
    const int64_t nb = n_in / kQK_K;
    const size_t act_row = static_cast<size_t>(nb) * sizeof(BlockQ8_K);
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const auto* tiles = reinterpret_cast<const Tile*>(w) + tile * nb;
        for (int64_t t = 0; t < n_tokens; ++t) {
            const auto* a = reinterpret_cast<const BlockQ8_K*>(act + t * act_row);
            for (int r = 0; r < kTileRows; ++r) y[t * y_stride + tile * kTileRows + r] = RowDot(tiles, r, a, nb);
        }
    }
}

// vec_dot_scalar.cpp's dot_k_with_mins_q8_K, reading row r of the tiles.
float row_dot_q4_K(const BlockQ4_Kx8* w, int r, const BlockQ8_K* a, int64_t nb) {
    int8_t q[kQK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        read_nibbles(w[i].qs, 256, r, q);
        int32_t sumq = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
            sumq += w[i].scales[8 * j + r] * dot_i8(q + 32 * j, a[i].qs + 32 * j, 32);
            summ += w[i].mins[16 * (j / 2) + 2 * r + j % 2] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        const float d = to_float(w[i].d[r]) * a[i].d;
        const float dmin = to_float(w[i].dmin[r]) * a[i].d;
        sum += d * static_cast<float>(sumq) - dmin * static_cast<float>(summ);
    }
    return sum;
}

// vec_dot_scalar.cpp's vec_dot_q6_K_q8_K, reading row r of the tiles.
float row_dot_q6_K(const BlockQ6_Kx8* w, int r, const BlockQ8_K* a, int64_t nb) {
    int8_t q[kQK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
        read_nibbles(w[i].quarters[0].ql, sizeof(BlockQ6_Kx8::Quarter), r, q);
        add_high_bits(w[i].quarters[0].qh, sizeof(BlockQ6_Kx8::Quarter), r, q);
        for (int8_t& v : q) v = static_cast<int8_t>(v - 32);
        int32_t sumq = 0;
        for (int j = 0; j < 16; ++j)
            sumq += w[i].scales[16 * (j / 2) + 2 * r + j % 2] * dot_i8(q + 16 * j, a[i].qs + 16 * j, 16);
        sum += (to_float(w[i].d[r]) * a[i].d) * static_cast<float>(sumq);
    }
    return sum;
}

const GemmKernel kScalarGemms[] = {
    {GGMLType::Q4_K, gemm_tiles<BlockQ4_Kx8, row_dot_q4_K>},
    {GGMLType::Q6_K, gemm_tiles<BlockQ6_Kx8, row_dot_q6_K>},
};

}  // namespace

const GemmTable kScalarGemmTable{kScalarGemms, sizeof kScalarGemms / sizeof kScalarGemms[0]};

}  // namespace pyllama
