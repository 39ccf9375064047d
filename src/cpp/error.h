// The one error type the core throws. The bindings turn it into pyllama.PyllamaError
// (a ValueError), so every message must name what is wrong: the file, tensor or key.
#pragma once
#include <stdexcept>
#include <string>

namespace pyllama {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace pyllama
