// Choosing the GEMM for a repacked matrix: the level in use if it has one, else the scalar one.
#include "quant/gemm.h"

#include "quant/blocks.h"
#include "quant/isa_gemm.h"
#include "quant/type_errors.h"

namespace pyllama {

namespace {
const GemmTable* table_of(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return &kScalarGemmTable;
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::Avx2: return &kAvx2GemmTable;
        case Isa::Avx512: return &kAvx512GemmTable;
#elif defined(__aarch64__)
        case Isa::Neon: return &kNeonGemmTable;
#endif
        default: return nullptr;
    }
}
}  // namespace

const GemmKernel* find_gemm(GGMLType type, Isa isa) {
    const GemmTable* table = table_of(isa);
    if (!table) return nullptr;
    for (size_t i = 0; i < table->count; ++i)
        if (table->entries[i].weight_type == type) return &table->entries[i];
    return nullptr;
}

void activation_sums32(const uint8_t* act, int64_t n_rows, int64_t n_in, int16_t* sums) {
    const int64_t nb = n_in / kQK_K;
    for (int64_t r = 0; r < n_rows; ++r) {
        const auto* a = reinterpret_cast<const BlockQ8_K*>(act + r * nb * sizeof(BlockQ8_K));
        for (int64_t i = 0; i < nb; ++i)
            for (int j = 0; j < 8; ++j) *sums++ = static_cast<int16_t>(a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
    }
}

const GemmKernel& gemm_kernel(GGMLType type) {
    if (const GemmKernel* g = find_gemm(type, current_isa())) return *g;
    if (const GemmKernel* g = find_gemm(type, Isa::Scalar)) return *g;
    throw unsupported_type("GEMM over repacked rows", type);
}

}  // namespace pyllama
