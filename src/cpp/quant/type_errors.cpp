#include "quant/type_errors.h"

namespace pyllama {

std::string type_label(GGMLType t) {
    const TypeTraits* tt = type_traits(t);
    return tt ? std::string(tt->name) : "type " + std::to_string(static_cast<uint32_t>(t));
}

Error unsupported_type(const char* operation, GGMLType t) {
    return Error(std::string(operation) + " is not supported for tensor type " + type_label(t));
}

void check_row_length(GGMLType t, int64_t n) {
    const TypeTraits* tt = type_traits(t);
    if (!tt) throw Error("unknown tensor type " + type_label(t));
    if (n < 0 || n % tt->block_size != 0)
        throw Error("row of " + std::to_string(n) + " elements is not a whole number of " + tt->name +
                    " blocks of " + std::to_string(tt->block_size));
}

}  // namespace pyllama
