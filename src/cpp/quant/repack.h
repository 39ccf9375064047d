// Row-interleaved layouts of Q4_K and Q6_K weight matrices, built once at load for the GEMM
// kernels (gemm.h). The file on disk keeps ggml's standard blocks; these live in memory only.
//
// A tile is kTileRows = 8 consecutive rows. For each super-block of 256 elements, a tile stores
// the eight rows' quants interleaved in groups of four bytes: 32 bytes hold 4 consecutive
// elements of each of the 8 rows (byte 4r + e = row r, element e), which is exactly the operand
// of one 256-bit multiply-add of bytes into eight int32 lanes (x86 vpdpbusd, and the NEON
// dotprod pair), so one instruction advances all 8 rows by 4 elements against 4 bytes of one
// token's activations broadcast to every lane. The 4-bit quants of two groups share those 32
// bytes (low and high nibbles), so one load and a mask/shift yield two such operands; the 6-bit
// scales are pre-decoded to bytes laid out as vectors over the 8 rows; d and dmin stay fp16 (8 per
// tile) so the tile takes barely more memory than the rows it replaces (generation reads every
// weight once per token: memory, not arithmetic, is what it waits for).
//
// Rows past the last whole tile (n_out % 8) are not repacked; matmul runs them through vec_dot.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"
#include "quant/types.h"

namespace pyllama {

constexpr int kTileRows = 8;

// Both layouts keep ggml's pairing of elements in a byte (and Q6_K's of four 2-bit fields), so
// repacking only interleaves the rows' bytes 4 at a time: tile byte 32k + 4r + e is byte 4k + e of
// row r's corresponding array. Nibble byte 32g + 4r + e of Q4_K quarter q (the 32 bytes ggml
// gives elements 64q .. 64q + 63) holds row r's element 64q + 4g + e in its low nibble and
// 64q + 32 + 4g + e in its high nibble.
//
// Each tile block is read front to back: scales first, then the quants in the order the
// kernels use them, so the hardware prefetcher sees one forward stream (reading a block's scales
// after its quants cut the one-token GEMM's Q6_K memory throughput to a third).

// Q4_K (8 sub-blocks of 32: x = d sc_j q - dmin mn_j, q in 0..15) for 8 rows: 1184 bytes
// (8 original blocks take 1152).
struct BlockQ4_Kx8 {
    Half d[kTileRows];
    Half dmin[kTileRows];
    uint8_t scales[8 * kTileRows];      // sc_j of row r at 8j + r
    uint8_t mins[8 * kTileRows];        // mn_j of row r at 16 (j/2) + 2r + j%2: int16 pairs per row
    uint8_t qs[kQK_K * kTileRows / 2];  // quarter q at 256q; sub-block j = quarter j/2, low (j even) or high nibbles
};

// Q6_K (16 sub-blocks of 16: x = d sc_j (q - 32), q in 0..63) for 8 rows: 1680 bytes, the size of
// 8 original blocks. q = low 4 bits (ql) | 2 high bits (qh) << 4. In each half of 128 elements,
// ggml's ql byte l (0..63) holds element l (low nibble) and l + 64 (high nibble), and qh byte l
// (0..31) holds the high bits of elements l, l + 32, l + 64, l + 96 (bits 0-1, 2-3, 4-5, 6-7).
struct BlockQ6_Kx8 {
    Half d[kTileRows];
    int8_t scales[16 * kTileRows];      // sc_j of row r at 16 (j/2) + 2r + j%2: int16 pairs per row
    struct Half128 {
        uint8_t ql[64 * kTileRows];     // byte 32g + 4r + e: row r's ql byte 4g + e (g in 0..15)
        uint8_t qh[32 * kTileRows];     // byte 32g + 4r + e: row r's qh byte 4g + e (g in 0..7)
    } halves[2];
};
static_assert(sizeof(BlockQ4_Kx8) == 1184, "Q4_Kx8 block size");
static_assert(sizeof(BlockQ6_Kx8) == 1680, "Q6_Kx8 block size");

// True for the weight types that have a row-interleaved layout (Q4_K, Q6_K).
bool has_repacked_layout(GGMLType type);

// Bytes of one repacked tile of 8 rows of n_in elements (a multiple of 256).
size_t repacked_tile_bytes(GGMLType type, int64_t n_in);

// Repacks tiles [tile0, tile1) of a matrix whose rows (row_bytes apart) start at `rows`, writing
// tile t at dst + (t - tile0) * repacked_tile_bytes(type, n_in). Throws for a type without layout.
void repack_tiles(GGMLType type, const uint8_t* rows, size_t row_bytes, int64_t n_in, int64_t tile0, int64_t tile1,
                  uint8_t* dst);

}  // namespace pyllama
