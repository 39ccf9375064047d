#include "bind.h"
#include "error.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "pyllama's compiled inference core";
    py::register_exception<pyllama::Error>(m, "PyllamaError", PyExc_ValueError);
    pyllama::bind_gguf(m);
    pyllama::bind_quant(m);
    pyllama::bind_model(m);
    pyllama::bind_dispatch(m);
    pyllama::bind_ops(m);
}
