#include "bind.h"

namespace pyllama {
void bind_gguf(pybind11::module_& m) { (void)m; }
}  // namespace pyllama
