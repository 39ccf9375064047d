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

// Row r's 256 Q4_K quants (0..15) out of a tile's nibble bytes.
void read_q4_K(const uint8_t* qs, int r, int8_t q[kQK_K]) {
    for (int i = 0; i < kQK_K; ++i) {
        const int quarter = i / 64, high = (i % 64) / 32, l = i % 32;
        const uint8_t byte = qs[256 * quarter + 32 * (l / 4) + 4 * r + l % 4];
        q[i] = static_cast<int8_t>(high ? byte >> 4 : byte & 0x0f);
    }
}

// Row r's 256 Q6_K quants (0..63).
void read_q6_K(const BlockQ6_Kx8& b, int r, int8_t q[kQK_K]) {
    for (int i = 0; i < kQK_K; ++i) {
        const BlockQ6_Kx8::Half128& h = b.halves[i / 128];
        const int j = i % 128, l = j % 64, m = j % 32;
        const uint8_t low = h.ql[32 * (l / 4) + 4 * r + l % 4];
        const uint8_t high = h.qh[32 * (m / 4) + 4 * r + m % 4];
        q[i] = static_cast<int8_t>(((j < 64 ? low : low >> 4) & 0x0f) | (((high >> (2 * (j / 32))) & 3) << 4));
    }
}

template <class Tile, float (*RowDot)(const Tile*, int, const BlockQ8_K*, int64_t)>
void gemm_tiles(int64_t n_in, const uint8_t* w, int64_t n_tiles, const uint8_t* act, const int16_t*, int64_t n_tokens,
                float* y, int64_t y_stride) {  // the activation sums are the bsums' (the spec computes them)
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
        read_q4_K(w[i].qs, r, q);
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
        read_q6_K(w[i], r, q);
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
