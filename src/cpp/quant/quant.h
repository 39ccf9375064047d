// Quantized block formats: dequantization and the dot-product kernels matmul is built on.
// This header is what the rest of the core sees; it knows nothing of layers or models.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace pyllama {

// Dequantize n elements (a multiple of the type's block size) of `type` from src into dst.
// Bit-exact with the `gguf` Python package's numpy dequantizers.
// Throws pyllama::Error for a type that cannot be dequantized or an n that is not whole blocks.
void dequantize_row(GGMLType type, const void* src, float* dst, int64_t n);

// Convert n floats (a multiple of the type's block size) to a row of activation type `act_type`
// (F32, F16, BF16, Q8_0, Q8_1 or Q8_K) exactly as llama.cpp's reference quantizers do.
// Throws pyllama::Error for any other type or a bad n.
void quantize_activations(GGMLType act_type, const float* x, void* y, int64_t n);

// How a matmul with weights of one type is computed: activations are first converted (once per
// input row) to `act_type`, then each output is vec_dot(weight row, activation row).
struct MatmulKernel {
    GGMLType weight_type;
    GGMLType act_type;                                           // F32, F16, BF16, Q8_0, Q8_1 or Q8_K
    void (*quantize_act)(const float* x, void* y, int64_t n);    // n floats -> row of act_type
    float (*vec_dot)(int64_t n, const void* w, const void* a);   // n elements of each
};

// The kernel for weights of `type`; throws pyllama::Error if the type has none.
const MatmulKernel& matmul_kernel(GGMLType type);

}  // namespace pyllama
