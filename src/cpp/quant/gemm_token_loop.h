// The loop shared by the ISA-specific GEMMs (x86_gemm.h, arm_neon_gemm.cpp): for each tile (or
// kTiles of them), the tokens kMax at a time through Kernel<kMax>::run, then the remainder 2 and
// 1 at a time. Included by files compiled with different instruction-set flags, so, like them,
// internal linkage only (see x86_kernels.h's header comment).
#pragma once
#include <cstdint>

#include "quant/blocks.h"
#include "quant/repack.h"

// Every loop over tokens, groups and sub-blocks in the GEMM kernels has a compile-time trip count
// and must be unrolled for its vectors to stay in registers (GCC keeps arrays of them in memory
// otherwise).
#define PYLLAMA_UNROLL _Pragma("GCC unroll 16")

namespace pyllama {
namespace {

// Kernel<k>::run(tile blocks, nb, k token rows' Q8_K blocks, their activation_sums32, k outputs of
// 8 kTiles floats) computes kTiles consecutive tiles (the first one's blocks given) for k tokens;
// n_calls of them.
template <int kMax, template <int> class Kernel, class Tile, int kTiles = 1>
void gemm_token_blocks(int64_t n_in, const uint8_t* w, int64_t n_calls, const uint8_t* act, const int16_t* sums,
                       int64_t n_tokens, float* y, int64_t y_stride) {
    const int64_t nb = n_in / kQK_K;
    const size_t act_row = static_cast<size_t>(nb) * sizeof(BlockQ8_K);
    for (int64_t call = 0; call < n_calls; ++call) {
        const auto* tw = reinterpret_cast<const Tile*>(w) + call * kTiles * nb;
        float* ty = y + call * kTiles * kTileRows;
        int64_t t = 0;
        auto run = [&](auto kernel, int n) {
            const BlockQ8_K* a[kMax];
            const int16_t* s[kMax];
            float* out[kMax];
            PYLLAMA_UNROLL
            for (int k = 0; k < n; ++k) {
                a[k] = reinterpret_cast<const BlockQ8_K*>(act + (t + k) * act_row);
                s[k] = sums + (t + k) * nb * 8;
                out[k] = ty + (t + k) * y_stride;
            }
            kernel(tw, nb, a, s, out);
            t += n;
        };
        while (n_tokens - t >= kMax) run(Kernel<kMax>::run, kMax);
        constexpr int kPair = kMax > 2 ? 2 : 1;
        while (n_tokens - t >= kPair) run(Kernel<kPair>::run, kPair);
        while (n_tokens - t >= 1) run(Kernel<1>::run, 1);
    }
}

}  // namespace
}  // namespace pyllama
