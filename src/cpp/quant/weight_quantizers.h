// The per-type weight quantizers behind quantize_weights.h, each a port of one ggml reference
// quantizer (named in its comment). n is a whole number of blocks; the caller checks it.
// Every float operation happens in ggml's order; the build disables FMA contraction, as ggml's
// portable build has no FMA to contract into, so each product and sum is rounded on its own.
#pragma once
#include <cstdint>

namespace pyllama {

void quantize_weights_q4_0(const float* x, void* y, int64_t n);  // quantize_row_q4_0_ref
void quantize_weights_q4_1(const float* x, void* y, int64_t n);  // quantize_row_q4_1_ref
void quantize_weights_q5_0(const float* x, void* y, int64_t n);  // quantize_row_q5_0_ref
void quantize_weights_q5_1(const float* x, void* y, int64_t n);  // quantize_row_q5_1_ref
void quantize_weights_q4_K(const float* x, void* y, int64_t n);  // quantize_row_q4_K_ref
void quantize_weights_q5_K(const float* x, void* y, int64_t n);  // quantize_row_q5_K_ref
void quantize_weights_q6_K(const float* x, void* y, int64_t n);  // quantize_row_q6_K_ref

}  // namespace pyllama
