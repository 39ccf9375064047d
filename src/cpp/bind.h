// Pieces of the _core Python module, one per area of the core. Each binding file is thin:
// it converts arguments, releases the GIL around long work, and lets pyllama::Error
// propagate (bindings.cpp registers it as pyllama.PyllamaError, a ValueError).
#pragma once
#include <pybind11/pybind11.h>

namespace pyllama {
void bind_gguf(pybind11::module_& m);   // bind_gguf.cpp: metadata and tensor tables of a file
void bind_quant(pybind11::module_& m);  // bind_quant.cpp: dequantization and kernels, for tests
void bind_model(pybind11::module_& m);  // bind_model.cpp: the model and its inference context
void bind_dispatch(pybind11::module_& m);  // bind_dispatch.cpp: kernel instruction-set level, test hooks
void bind_ops(pybind11::module_& m);       // bind_ops.cpp: attention, activation and thread pool test hooks
}  // namespace pyllama
