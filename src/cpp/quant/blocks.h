// Byte layouts of ggml's quantized blocks, and the unpacking of their quants into plain integers.
// Dequantization and the dot-product kernels both start from these unpackers, so a layout is
// decoded in exactly one place.
//
// Weight blocks hold only bytes (alignment 1): they are read straight out of a mapped file at
// whatever offset the file puts them, and their little-endian fields are assembled explicitly.
#pragma once
#include <cstdint>

#include "quant/float16.h"

namespace pyllama {

constexpr int kQK = 32;    // elements per block of the Q4_0 .. Q8_1 family
constexpr int kQK_K = 256; // elements per K-quant super-block

// An IEEE half as stored in a file: two little-endian bytes.
struct Half {
    uint8_t bytes[2];
};
inline float to_float(Half h) { return fp16_to_fp32(static_cast<uint16_t>(h.bytes[0] | (h.bytes[1] << 8))); }
inline Half to_half(float f) {
    const uint16_t u = fp32_to_fp16(f);
    return Half{{static_cast<uint8_t>(u & 0xff), static_cast<uint8_t>(u >> 8)}};
}

inline uint32_t load_u32_le(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// x = d * (q - 8)
struct BlockQ4_0 {
    Half d;
    uint8_t qs[kQK / 2];  // element j in the low nibble of qs[j], element j+16 in the high nibble
};
// x = d * q + m
struct BlockQ4_1 {
    Half d;
    Half m;
    uint8_t qs[kQK / 2];
};
// x = d * (q - 16), q's fifth bit j in bit j of qh (little-endian 32 bits)
struct BlockQ5_0 {
    Half d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x = d * q + m
struct BlockQ5_1 {
    Half d;
    Half m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// x = d * q
struct BlockQ8_0 {
    Half d;
    int8_t qs[kQK];
};
// Activations for Q4_1/Q5_1 weights: s = d * sum(qs) carries the min's share of the dot product.
struct BlockQ8_1 {
    Half d;
    Half s;
    int8_t qs[kQK];
};
// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * mn[j], with 6-bit sc/mn packed in `scales`.
struct BlockQ4_K {
    Half d;
    Half dmin;
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];  // 32 bytes per pair of sub-blocks: low nibbles, then high nibbles
};
// As Q4_K plus a fifth bit: bit j of qh[l] belongs to element l of sub-block j.
struct BlockQ5_K {
    Half d;
    Half dmin;
    uint8_t scales[12];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q = 4 low bits from ql, 2 high from qh.
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    Half d;
};
// Activations for K-quant weights; only ever produced in memory by us, never read from a file.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];  // sums of qs in groups of 16
};

// Sizes must match the type table in types.cpp (and ggml's ggml-common.h).
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block size");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block size");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block size");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block size");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block size");
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block size");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block size");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block size");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block size");
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block size");
static_assert(alignof(BlockQ4_0) == 1 && alignof(BlockQ4_1) == 1 && alignof(BlockQ5_0) == 1 &&
                  alignof(BlockQ5_1) == 1 && alignof(BlockQ8_0) == 1 && alignof(BlockQ4_K) == 1 &&
                  alignof(BlockQ5_K) == 1 && alignof(BlockQ6_K) == 1,
              "weight blocks must be readable at any byte offset");

// ---- unpacking: quants of one block as integers, in element order ----

// Q4_0 and Q4_1 nibbles (0..15) minus `offset` (8 for Q4_0, 0 for Q4_1).
inline void unpack_nibbles_32(const uint8_t qs[kQK / 2], int offset, int8_t q[kQK]) {
    for (int j = 0; j < kQK / 2; ++j) {
        q[j] = static_cast<int8_t>((qs[j] & 0x0f) - offset);
        q[j + kQK / 2] = static_cast<int8_t>((qs[j] >> 4) - offset);
    }
}

// Q5_0 and Q5_1 quants (0..31) minus `offset` (16 for Q5_0, 0 for Q5_1).
inline void unpack_5bit_32(const uint8_t qh_bytes[4], const uint8_t qs[kQK / 2], int offset, int8_t q[kQK]) {
    const uint32_t qh = load_u32_le(qh_bytes);
    for (int j = 0; j < kQK / 2; ++j) {
        const uint32_t lo = (qs[j] & 0x0fu) | (((qh >> j) & 1u) << 4);
        const uint32_t hi = (qs[j] >> 4) | (((qh >> (j + kQK / 2)) & 1u) << 4);
        q[j] = static_cast<int8_t>(static_cast<int>(lo) - offset);
        q[j + kQK / 2] = static_cast<int8_t>(static_cast<int>(hi) - offset);
    }
}

// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block. Bytes 0-3 hold the low 6 bits of
// scales 0-3 (top 2 bits: high bits of scale 4-7), bytes 4-7 likewise for mins, and bytes 8-11
// the low 4 bits of scale 4-7 (low nibble) and min 4-7 (high nibble).
inline void unpack_k_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 0x3f;
        mn[j] = s[j + 4] & 0x3f;
        sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
        mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

// Q4_K quants, 0..15.
inline void unpack_q4_k(const BlockQ4_K& b, int8_t q[kQK_K]) {
    for (int pair = 0; pair < kQK_K / 64; ++pair) {
        const uint8_t* qs = b.qs + 32 * pair;
        int8_t* lo = q + 64 * pair;
        for (int l = 0; l < 32; ++l) {
            lo[l] = static_cast<int8_t>(qs[l] & 0x0f);
            lo[l + 32] = static_cast<int8_t>(qs[l] >> 4);
        }
    }
}

// Q5_K quants, 0..31.
inline void unpack_q5_k(const BlockQ5_K& b, int8_t q[kQK_K]) {
    for (int pair = 0; pair < kQK_K / 64; ++pair) {
        const uint8_t* qs = b.qs + 32 * pair;
        int8_t* lo = q + 64 * pair;
        const int bit = 2 * pair;
        for (int l = 0; l < 32; ++l) {
            lo[l] = static_cast<int8_t>((qs[l] & 0x0f) | (((b.qh[l] >> bit) & 1) << 4));
            lo[l + 32] = static_cast<int8_t>((qs[l] >> 4) | (((b.qh[l] >> (bit + 1)) & 1) << 4));
        }
    }
}

// Q6_K quants with the offset applied, -32..31. Each half of the super-block (128 elements) uses
// 64 bytes of ql and 32 of qh; its four 32-element quarters take ql's low nibbles (bytes 0-31,
// then 32-63), then its high nibbles, and successive 2-bit fields of qh.
inline void unpack_q6_k(const BlockQ6_K& b, int8_t q[kQK_K]) {
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        int8_t* out = q + 128 * half;
        for (int l = 0; l < 32; ++l) {
            out[l] = static_cast<int8_t>(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

}  // namespace pyllama
