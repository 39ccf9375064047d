// The portable kernels behind quant.h's MatmulKernel table: activation quantizers and one
// vec_dot per weight type. Plain C++ that -O3 auto-vectorizes; they are the reference the
// ISA-specific kernels are tested against.
#pragma once
#include <cstdint>

namespace pyllama {

// n floats -> a row of the activation type, exactly as llama.cpp's reference code converts them.
void quantize_act_f32(const float* x, void* y, int64_t n);
void quantize_act_f16(const float* x, void* y, int64_t n);
void quantize_act_bf16(const float* x, void* y, int64_t n);
void quantize_act_q8_0(const float* x, void* y, int64_t n);  // quantize_row_q8_0_ref
void quantize_act_q8_1(const float* x, void* y, int64_t n);  // quantize_row_q8_1_ref
void quantize_act_q8_K(const float* x, void* y, int64_t n);  // quantize_row_q8_K_ref

// Dot product of n elements: weight row of the first type, activation row of the second.
// Integer arithmetic within a block, float accumulation across blocks.
float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_f32_f32(int64_t n, const void* w, const void* a);
float vec_dot_f16_f16(int64_t n, const void* w, const void* a);
float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a);

}  // namespace pyllama
