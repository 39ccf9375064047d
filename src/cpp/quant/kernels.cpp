// The tables of matmul kernels: for each computable weight type, the activation type llama.cpp
// pairs it with (ggml-cpu.c's vec_dot_type), its quantizer and the dot product. The scalar table
// covers every type; the table of the instruction-set level in use (dispatch.h) overrides it for
// the types it implements. This is the one place kernels are chosen.
#include "dispatch.h"
#include "quant/isa_kernels.h"
#include "quant/quant.h"
#include "quant/scalar_kernels.h"
#include "quant/type_errors.h"

namespace pyllama {

namespace {
const MatmulKernel kScalarKernels[] = {
    {GGMLType::F32, GGMLType::F32, quantize_act_f32, vec_dot_f32_f32},
    {GGMLType::F16, GGMLType::F16, quantize_act_f16, vec_dot_f16_f16},
    {GGMLType::BF16, GGMLType::BF16, quantize_act_bf16, vec_dot_bf16_bf16},
    {GGMLType::Q4_0, GGMLType::Q8_0, quantize_act_q8_0, vec_dot_q4_0_q8_0},
    {GGMLType::Q4_1, GGMLType::Q8_1, quantize_act_q8_1, vec_dot_q4_1_q8_1},
    {GGMLType::Q5_0, GGMLType::Q8_0, quantize_act_q8_0, vec_dot_q5_0_q8_0},
    {GGMLType::Q5_1, GGMLType::Q8_1, quantize_act_q8_1, vec_dot_q5_1_q8_1},
    {GGMLType::Q8_0, GGMLType::Q8_0, quantize_act_q8_0, vec_dot_q8_0_q8_0},
    {GGMLType::Q4_K, GGMLType::Q8_K, quantize_act_q8_K, vec_dot_q4_K_q8_K},
    {GGMLType::Q5_K, GGMLType::Q8_K, quantize_act_q8_K, vec_dot_q5_K_q8_K},
    {GGMLType::Q6_K, GGMLType::Q8_K, quantize_act_q8_K, vec_dot_q6_K_q8_K},
};

const KernelTable kScalarTable{kScalarKernels, sizeof kScalarKernels / sizeof kScalarKernels[0]};

const KernelTable& table_of(Isa isa) {
    switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::Avx2: return kAvx2KernelTable;
        case Isa::Avx512: return kAvx512KernelTable;
#elif defined(__aarch64__)
        case Isa::Neon: return kNeonKernelTable;
#endif
        default: return kScalarTable;
    }
}

const MatmulKernel* find(const KernelTable& table, GGMLType type) {
    for (size_t i = 0; i < table.count; ++i)
        if (table.entries[i].weight_type == type) return &table.entries[i];
    return nullptr;
}
}  // namespace

const MatmulKernel& matmul_kernel(GGMLType type) {
    if (const MatmulKernel* k = find(table_of(current_isa()), type)) return *k;
    if (const MatmulKernel* k = find(kScalarTable, type)) return *k;
    throw unsupported_type("matrix multiplication", type);
}

}  // namespace pyllama
