// Weight quantization: rows of floats to the bytes of a ggml type, exactly as llama.cpp's
// llama-quantize writes them when it has no importance matrix (ggml_quantize_chunk with
// imatrix == NULL, which runs the reference quantizers quantize_row_*_ref of ggml-quants.c).
#pragma once
#include <cstdint>

#include "quant/types.h"

namespace pyllama {

class ThreadPool;

// Whether quantize_row can produce `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q4_K, Q5_K, Q6_K.
bool can_quantize(GGMLType type);

// n floats (a whole number of the type's blocks) -> one row of `type` at dst.
// Byte-identical with llama.cpp for every input without NaN (NaN inputs give NaN scales whose
// payload bits may differ; llama-quantize refuses such rows, see row_data_is_valid).
// Throws pyllama::Error for a type it cannot produce or a bad n.
void quantize_row(GGMLType type, const float* src, void* dst, int64_t n);

// n_rows rows of row_len elements of `src_type` (any type dequantize_row reads, F32 included)
// converted to rows of `dst_type`, row by row, on the pool's threads. Each row is dequantized
// to floats and quantized, as llama-quantize does; rows are independent, so the bytes do not
// depend on the number of threads.
void convert_rows(ThreadPool& pool, GGMLType src_type, const void* src, GGMLType dst_type, void* dst,
                  int64_t n_rows, int64_t row_len);

// convert_rows from F32.
void quantize_rows(ThreadPool& pool, GGMLType type, const float* src, void* dst, int64_t n_rows,
                   int64_t row_len);

// llama.cpp's ggml_validate_row_data for the types above: false if any fp16 scale (d, and m or
// dmin where the type has one) or, for F32/F16/BF16, any value is infinite or NaN. llama-quantize
// refuses a tensor whose quantized rows fail it (inputs with inf/NaN, or beyond fp16's range).
bool row_data_is_valid(GGMLType type, const void* data, int64_t n);

}  // namespace pyllama
