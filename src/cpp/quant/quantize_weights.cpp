// Weight quantization entry points: the per-type table, multi-threaded row conversion and
// llama.cpp's check of the quantized rows.
#include "quant/quantize_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"
#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant/scalar_kernels.h"
#include "quant/type_errors.h"
#include "quant/weight_quantizers.h"
#include "threadpool.h"

namespace pyllama {

namespace {

using RowQuantizer = void (*)(const float* x, void* y, int64_t n);

// ggml_quantize_chunk without an importance matrix. F32, F16, BF16 and Q8_0 weights are
// converted by the same reference functions as activations (ggml_fp32_to_fp16_row,
// ggml_fp32_to_bf16_row_ref, quantize_row_q8_0_ref).
RowQuantizer row_quantizer(GGMLType type) {
    switch (type) {
        case GGMLType::F32: return quantize_act_f32;
        case GGMLType::F16: return quantize_act_f16;
        case GGMLType::BF16: return quantize_act_bf16;
        case GGMLType::Q8_0: return quantize_act_q8_0;
        case GGMLType::Q4_0: return quantize_weights_q4_0;
        case GGMLType::Q4_1: return quantize_weights_q4_1;
        case GGMLType::Q5_0: return quantize_weights_q5_0;
        case GGMLType::Q5_1: return quantize_weights_q5_1;
        case GGMLType::Q4_K: return quantize_weights_q4_K;
        case GGMLType::Q5_K: return quantize_weights_q5_K;
        case GGMLType::Q6_K: return quantize_weights_q6_K;
        default: return nullptr;
    }
}

RowQuantizer checked_row_quantizer(GGMLType type, int64_t n) {
    const RowQuantizer q = row_quantizer(type);
    if (!q) throw unsupported_type("weight quantization", type);
    check_row_length(type, n);
    return q;
}

bool finite_half(Half h) { return std::isfinite(to_float(h)); }

// Every block's fp16 fields that ggml_validate_row_data checks are finite.
template <typename Block, typename Fields>
bool blocks_valid(const void* data, int64_t n_blocks, Fields fields_finite) {
    const auto* b = static_cast<const Block*>(data);
    for (int64_t i = 0; i < n_blocks; ++i)
        if (!fields_finite(b[i])) return false;
    return true;
}

template <typename Block>
bool d_valid(const void* data, int64_t nb) {
    return blocks_valid<Block>(data, nb, [](const Block& b) { return finite_half(b.d); });
}
template <typename Block>
bool d_m_valid(const void* data, int64_t nb) {
    return blocks_valid<Block>(data, nb, [](const Block& b) { return finite_half(b.d) && finite_half(b.m); });
}
template <typename Block>
bool d_dmin_valid(const void* data, int64_t nb) {
    return blocks_valid<Block>(data, nb, [](const Block& b) { return finite_half(b.d) && finite_half(b.dmin); });
}

// Rows per task: at least 16K elements, as llama-quantize's chunks, so small rows are not
// handed out one at a time.
int64_t rows_per_task(int64_t row_len) { return std::max<int64_t>(1, (32 * 512) / std::max<int64_t>(1, row_len)); }

}  // namespace

bool can_quantize(GGMLType type) { return row_quantizer(type) != nullptr; }

void quantize_row(GGMLType type, const float* src, void* dst, int64_t n) {
    checked_row_quantizer(type, n)(src, dst, n);
}

void convert_rows(ThreadPool& pool, GGMLType src_type, const void* src, GGMLType dst_type, void* dst,
                  int64_t n_rows, int64_t row_len) {
    if (n_rows < 0) throw Error("row count must not be negative, got " + std::to_string(n_rows));
    const RowQuantizer quantize = checked_row_quantizer(dst_type, row_len);
    check_row_length(src_type, row_len);
    const size_t src_row_bytes = row_size(src_type, row_len);
    const size_t dst_row_bytes = row_size(dst_type, row_len);
    const auto* in = static_cast<const uint8_t*>(src);
    auto* out = static_cast<uint8_t*>(dst);
    // F32 rows are read in place when they are float-aligned; others go through a row buffer.
    const bool in_place = src_type == GGMLType::F32 && reinterpret_cast<uintptr_t>(src) % alignof(float) == 0;
    if (!type_traits(src_type)->can_compute) throw unsupported_type("dequantization", src_type);

    pool.parallel_for(n_rows, rows_per_task(row_len), [&](int64_t begin, int64_t end) {
        std::vector<float> row(in_place ? 0 : static_cast<size_t>(row_len));
        for (int64_t r = begin; r < end; ++r) {
            const uint8_t* s = in + static_cast<size_t>(r) * src_row_bytes;
            const float* x = reinterpret_cast<const float*>(s);
            if (!in_place) {
                dequantize_row(src_type, s, row.data(), row_len);
                x = row.data();
            }
            quantize(x, out + static_cast<size_t>(r) * dst_row_bytes, row_len);
        }
    });
}

void quantize_rows(ThreadPool& pool, GGMLType type, const float* src, void* dst, int64_t n_rows, int64_t row_len) {
    convert_rows(pool, GGMLType::F32, src, type, dst, n_rows, row_len);
}

bool row_data_is_valid(GGMLType type, const void* data, int64_t n) {
    checked_row_quantizer(type, n);
    const auto* bytes = static_cast<const uint8_t*>(data);
    switch (type) {
        case GGMLType::F32:
            for (int64_t i = 0; i < n; ++i) {
                float f;
                std::memcpy(&f, bytes + 4 * i, 4);
                if (!std::isfinite(f)) return false;
            }
            return true;
        case GGMLType::F16:
            for (int64_t i = 0; i < n; ++i)
                if (!finite_half(Half{{bytes[2 * i], bytes[2 * i + 1]}})) return false;
            return true;
        case GGMLType::BF16:
            for (int64_t i = 0; i < n; ++i)
                if (!std::isfinite(bf16_to_fp32(static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8)))))
                    return false;
            return true;
        case GGMLType::Q4_0: return d_valid<BlockQ4_0>(data, n / kQK);
        case GGMLType::Q5_0: return d_valid<BlockQ5_0>(data, n / kQK);
        case GGMLType::Q8_0: return d_valid<BlockQ8_0>(data, n / kQK);
        case GGMLType::Q4_1: return d_m_valid<BlockQ4_1>(data, n / kQK);
        case GGMLType::Q5_1: return d_m_valid<BlockQ5_1>(data, n / kQK);
        case GGMLType::Q4_K: return d_dmin_valid<BlockQ4_K>(data, n / kQK_K);
        case GGMLType::Q5_K: return d_dmin_valid<BlockQ5_K>(data, n / kQK_K);
        case GGMLType::Q6_K: return d_valid<BlockQ6_K>(data, n / kQK_K);
        default: throw unsupported_type("row validation", type);  // unreachable: checked above
    }
}

}  // namespace pyllama
