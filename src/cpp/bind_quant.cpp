#include "bind.h"

namespace pyllama {
void bind_quant(pybind11::module_& m) { (void)m; }
}  // namespace pyllama
