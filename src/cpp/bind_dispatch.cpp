// The instruction-set level of the kernels (dispatch.h), and test hooks that run the current
// level's activation quantizer and vec_dot separately, so tests can compare levels on identical
// bytes. Not part of pyllama's public API.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bind.h"
#include "dispatch.h"
#include "error.h"
#include "quant/quant.h"
#include "quant/type_errors.h"

namespace py = pybind11;

namespace pyllama {

namespace {

const MatmulKernel& kernel_for(int64_t weight_type_id) {
    if (weight_type_id < 0 || weight_type_id > 0xffffffffLL || !type_traits(static_cast<uint32_t>(weight_type_id)))
        throw Error("unknown tensor type id " + std::to_string(weight_type_id));
    return matmul_kernel(static_cast<GGMLType>(weight_type_id));
}

std::vector<std::string> available_isa_names() {
    std::vector<std::string> names;
    for (Isa isa : available_isas()) names.emplace_back(isa_name(isa));
    return names;
}

py::array_t<uint8_t> kernel_quantize_act(int64_t weight_type_id, py::array_t<float, py::array::c_style> x) {
    const MatmulKernel& kernel = kernel_for(weight_type_id);
    if (x.ndim() != 1) throw Error("activations must be a 1-D array");
    const int64_t n = x.size();
    check_row_length(kernel.act_type, n);
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(row_size(kernel.act_type, n)));
    kernel.quantize_act(x.data(), out.mutable_data(), n);
    return out;
}

float kernel_vec_dot(int64_t weight_type_id, py::array_t<uint8_t, py::array::c_style> w,
                     py::array_t<uint8_t, py::array::c_style> act, int64_t n) {
    const MatmulKernel& kernel = kernel_for(weight_type_id);
    check_row_length(kernel.weight_type, n);
    check_row_length(kernel.act_type, n);
    if (static_cast<size_t>(w.size()) != row_size(kernel.weight_type, n) ||
        static_cast<size_t>(act.size()) != row_size(kernel.act_type, n))
        throw Error("kernel_vec_dot: row sizes do not match n = " + std::to_string(n));
    // Copies in new[] storage: aligned for Q8_K's float and int16 fields whatever numpy gave us.
    std::unique_ptr<uint8_t[]> a(new uint8_t[act.size()]);
    std::copy(act.data(), act.data() + act.size(), a.get());
    return kernel.vec_dot(n, w.data(), a.get());
}

}  // namespace

void bind_dispatch(py::module_& m) {
    m.def("isa", [] { return std::string(isa_name(current_isa())); },
          "The instruction-set level the kernels use: scalar, avx2, avx512 or neon.");
    m.def("available_isas", &available_isa_names, "The levels this CPU supports, least capable first.");
    m.def("set_isa", &set_isa, py::arg("name"),
          "Switch the kernels' instruction-set level (for tests); PyllamaError if the CPU lacks it.");
    m.def("kernel_quantize_act", &kernel_quantize_act, py::arg("weight_type"), py::arg("x"),
          "Test hook: float32 activations converted by the current level's quantizer for weight_type.");
    m.def("kernel_vec_dot", &kernel_vec_dot, py::arg("weight_type"), py::arg("w"), py::arg("act"), py::arg("n"),
          "Test hook: the current level's vec_dot of a weight row and an already converted activation row.");
}

}  // namespace pyllama
