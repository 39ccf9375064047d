// The Q4_K/Q5_K 6-bit scales and mins (layout in blocks.h's unpack_k_scales), decoded with
// 32-bit word operations, for the ISA-specific kernel files. Internal linkage on purpose: each
// of those files compiles its own copy with its own flags (see x86_kernels.h on why no inline
// function may be shared between them and the baseline code).
#pragma once
#include <cstdint>
#include <cstring>

namespace pyllama {
namespace {

void decode_k_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3];
    std::memcpy(u, s, 12);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0xc0c0c0c0u;
    const uint32_t sc03 = u[0] & low6, mn03 = u[1] & low6;                 // bytes 0-3, 4-7: low 6 bits
    const uint32_t sc47 = (u[2] & low4) | ((u[0] & top2) >> 2);           // byte 8-11 low nibble + top 2
    const uint32_t mn47 = ((u[2] >> 4) & low4) | ((u[1] & top2) >> 2);    // byte 8-11 high nibble + top 2
    std::memcpy(sc, &sc03, 4);
    std::memcpy(sc + 4, &sc47, 4);
    std::memcpy(mn, &mn03, 4);
    std::memcpy(mn + 4, &mn47, 4);
}

}  // namespace
}  // namespace pyllama
