// Errors about ggml types, worded the same way wherever a type is refused.
#pragma once
#include <cstdint>
#include <string>

#include "error.h"
#include "quant/types.h"

namespace pyllama {

// "Q4_K" for a known type, "type 99" for an id ggml does not define.
std::string type_label(GGMLType t);

// Error for asking `operation` (e.g. "dequantization") of a type that does not support it.
Error unsupported_type(const char* operation, GGMLType t);

// Throws unless n >= 0 and n is a whole number of blocks of known type t.
void check_row_length(GGMLType t, int64_t n);

}  // namespace pyllama
