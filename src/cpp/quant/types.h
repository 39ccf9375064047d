// ggml tensor type ids as they appear in GGUF files, with their block geometry.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pyllama {

enum class GGMLType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
    IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct TypeTraits {
    const char* name;
    int64_t block_size;   // elements per block
    size_t type_size;     // bytes per block
    bool can_compute;     // pyllama has kernels (dequantize + matmul) for it
};

// nullptr when `id` is not a ggml type we know the geometry of.
const TypeTraits* type_traits(uint32_t id);
inline const TypeTraits* type_traits(GGMLType t) { return type_traits(static_cast<uint32_t>(t)); }
const char* type_name(GGMLType t);  // "type 99" style text for unknown ids never reaches here

// Bytes taken by a row of n elements; n must be a multiple of the block size.
inline size_t row_size(GGMLType t, int64_t n) {
    const TypeTraits* tt = type_traits(t);
    return static_cast<size_t>(n / tt->block_size) * tt->type_size;
}

}  // namespace pyllama
