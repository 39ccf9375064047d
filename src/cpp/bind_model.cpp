#include "bind.h"

namespace pyllama {
void bind_model(pybind11::module_& m) { (void)m; }
}  // namespace pyllama
