// Building the row-interleaved tiles of repack.h from ggml's blocks: each row's super-block is
// unpacked to plain integers with blocks.h's unpackers (the one decoder of the file layout), then
// scattered into the tile.
#include "quant/repack.h"

#include <cstring>

#include "quant/type_errors.h"

namespace pyllama {

namespace {

// Row r's quants q[256] (each < 16) into a tile's nibble bytes, quarter q at q * quarter_stride.
void put_nibbles(uint8_t* dst, size_t quarter_stride, int r, const int8_t* q) {
    for (int quarter = 0; quarter < 4; ++quarter)
        for (int half = 0; half < 2; ++half)
            for (int g = 0; g < 8; ++g)
                for (int e = 0; e < 4; ++e) {
                    const int v = q[64 * quarter + 32 * half + 4 * g + e] & 0x0f;
                    dst[quarter * quarter_stride + 32 * g + 4 * r + e] |= static_cast<uint8_t>(v << (4 * half));
                }
}

// Row r's 2-bit fields q >> 4 (q < 64) into Q6_Kx8 qh bytes (layout in repack.h).
void put_high_bits(uint8_t* qh, size_t quarter_stride, int r, const int8_t* q) {
    for (int quarter = 0; quarter < 4; ++quarter)
        for (int half = 0; half < 2; ++half)
            for (int g = 0; g < 8; ++g)
                for (int e = 0; e < 4; ++e) {
                    const int v = (q[64 * quarter + 32 * half + 4 * g + e] >> 4) & 3;
                    qh[quarter * quarter_stride + 32 * (g % 4) + 4 * r + e] |=
                        static_cast<uint8_t>(v << (4 * half + 2 * (g / 4)));
                }
}

void repack_q4_K_block(const BlockQ4_K* const rows[kTileRows], BlockQ4_Kx8& out) {
    std::memset(&out, 0, sizeof out);
    int8_t q[kQK_K];
    uint8_t sc[8], mn[8];
    for (int r = 0; r < kTileRows; ++r) {
        const BlockQ4_K& b = *rows[r];
        unpack_q4_k(b, q);
        put_nibbles(out.qs, 256, r, q);
        unpack_k_scales(b.scales, sc, mn);
        for (int j = 0; j < 8; ++j) {
            out.scales[8 * j + r] = sc[j];
            out.mins[16 * (j / 2) + 2 * r + j % 2] = mn[j];
        }
        out.d[r] = b.d;
        out.dmin[r] = b.dmin;
    }
}

void repack_q6_K_block(const BlockQ6_K* const rows[kTileRows], BlockQ6_Kx8& out) {
    std::memset(&out, 0, sizeof out);
    int8_t q[kQK_K];
    for (int r = 0; r < kTileRows; ++r) {
        const BlockQ6_K& b = *rows[r];
        unpack_q6_k(b, q);
        for (int8_t& v : q) v = static_cast<int8_t>(v + 32);  // back to 0..63
        put_nibbles(out.quarters[0].ql, sizeof(BlockQ6_Kx8::Quarter), r, q);
        put_high_bits(out.quarters[0].qh, sizeof(BlockQ6_Kx8::Quarter), r, q);
        for (int j = 0; j < 16; ++j) out.scales[16 * (j / 2) + 2 * r + j % 2] = b.scales[j];
        out.d[r] = b.d;
    }
}

template <class Block, class Tile, void (*RepackBlock)(const Block* const*, Tile&)>
void repack_matrix(const uint8_t* rows, size_t row_bytes, int64_t n_in, int64_t tile0, int64_t tile1, uint8_t* dst) {
    const int64_t nb = n_in / kQK_K;
    auto* out = reinterpret_cast<Tile*>(dst);
    for (int64_t t = tile0; t < tile1; ++t)
        for (int64_t i = 0; i < nb; ++i) {
            const Block* blocks[kTileRows];
            for (int r = 0; r < kTileRows; ++r)
                blocks[r] = reinterpret_cast<const Block*>(rows + (t * kTileRows + r) * row_bytes) + i;
            RepackBlock(blocks, *out++);
        }
}

}  // namespace

bool has_repacked_layout(GGMLType type) { return type == GGMLType::Q4_K || type == GGMLType::Q6_K; }

size_t repacked_tile_bytes(GGMLType type, int64_t n_in) {
    const size_t nb = static_cast<size_t>(n_in / kQK_K);
    switch (type) {
        case GGMLType::Q4_K: return nb * sizeof(BlockQ4_Kx8);
        case GGMLType::Q6_K: return nb * sizeof(BlockQ6_Kx8);
        default: throw unsupported_type("row-interleaved repacking", type);
    }
}

void repack_tiles(GGMLType type, const uint8_t* rows, size_t row_bytes, int64_t n_in, int64_t tile0, int64_t tile1,
                  uint8_t* dst) {
    check_row_length(type, n_in);
    switch (type) {
        case GGMLType::Q4_K:
            return repack_matrix<BlockQ4_K, BlockQ4_Kx8, repack_q4_K_block>(rows, row_bytes, n_in, tile0, tile1, dst);
        case GGMLType::Q6_K:
            return repack_matrix<BlockQ6_K, BlockQ6_Kx8, repack_q6_K_block>(rows, row_bytes, n_in, tile0, tile1, dst);
        default: throw unsupported_type("row-interleaved repacking", type);
    }
}

}  // namespace pyllama
