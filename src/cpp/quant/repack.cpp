// Building the row-interleaved tiles of repack.h from ggml's blocks: the quant bytes are copied 4
// at a time (the layouts keep ggml's packing within a byte), the Q4_K scales decoded by blocks.h's
// unpack_k_scales.
#include "quant/repack.h"

#include <cstring>

#include "quant/type_errors.h"

namespace pyllama {

namespace {

// Tile byte 32k + 4r + e = byte 4k + e of row r's array (n_bytes long), for the 8 rows.
void interleave_rows(uint8_t* dst, const uint8_t* const src[kTileRows], int n_bytes) {
    for (int k = 0; k < n_bytes / 4; ++k)
        for (int r = 0; r < kTileRows; ++r) std::memcpy(dst + 32 * k + 4 * r, src[r] + 4 * k, 4);
}

void repack_q4_K_block(const BlockQ4_K* const rows[kTileRows], BlockQ4_Kx8& out) {
    const uint8_t* qs[kTileRows];
    uint8_t sc[8], mn[8];
    for (int r = 0; r < kTileRows; ++r) {
        const BlockQ4_K& b = *rows[r];
        qs[r] = b.qs;
        unpack_k_scales(b.scales, sc, mn);
        for (int j = 0; j < 8; ++j) {
            out.scales[8 * j + r] = sc[j];
            out.mins[16 * (j / 2) + 2 * r + j % 2] = mn[j];
        }
        out.d[r] = b.d;
        out.dmin[r] = b.dmin;
    }
    interleave_rows(out.qs, qs, sizeof rows[0]->qs);
}

void repack_q6_K_block(const BlockQ6_K* const rows[kTileRows], BlockQ6_Kx8& out) {
    for (int half = 0; half < 2; ++half) {
        const uint8_t *ql[kTileRows], *qh[kTileRows];
        for (int r = 0; r < kTileRows; ++r) {
            ql[r] = rows[r]->ql + 64 * half;
            qh[r] = rows[r]->qh + 32 * half;
        }
        interleave_rows(out.halves[half].ql, ql, 64);
        interleave_rows(out.halves[half].qh, qh, 32);
    }
    for (int r = 0; r < kTileRows; ++r) {
        for (int j = 0; j < 16; ++j) out.scales[16 * (j / 2) + 2 * r + j % 2] = rows[r]->scales[j];
        out.d[r] = rows[r]->d;
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
