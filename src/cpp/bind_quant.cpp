// Test hooks into the quantization code: dequantize a row, quantize activations, run one vec_dot.
// Not part of pyllama's public API; tests compare them against the gguf package and numpy.
#include <pybind11/numpy.h>

#include <cstring>
#include <memory>
#include <string>

#include "bind.h"
#include "error.h"
#include "quant/quant.h"
#include "quant/type_errors.h"

namespace py = pybind11;

namespace pyllama {

namespace {

// Rows at least this long are processed with the GIL released.
constexpr int64_t kReleaseGilElements = 1 << 15;

GGMLType type_from_id(int64_t id) {
    if (id < 0 || id > 0xffffffffLL || !type_traits(static_cast<uint32_t>(id)))
        throw Error("unknown tensor type id " + std::to_string(id));
    return static_cast<GGMLType>(id);
}

// The bytes of `data` (bytes, bytearray, or a 1-byte-item array), which must be C-contiguous.
struct ByteView {
    py::buffer_info info;
    const uint8_t* ptr() const { return static_cast<const uint8_t*>(info.ptr); }
    size_t size() const { return static_cast<size_t>(info.size); }
};
ByteView contiguous_bytes(const py::buffer& data, const char* what) {
    ByteView view{data.request()};
    if (view.info.itemsize != 1) throw Error(std::string(what) + " must be bytes or a uint8 array");
    py::ssize_t expected = 1;
    for (py::ssize_t dim = view.info.ndim - 1; dim >= 0; --dim) {
        if (view.info.shape[dim] > 1 && view.info.strides[dim] != expected)
            throw Error(std::string(what) + " must be contiguous");
        expected *= view.info.shape[dim];
    }
    return view;
}

// A contiguous float32 1-D view of x (copied only if x is strided).
py::array_t<float, py::array::c_style> float_row(const py::array& x) {
    if (!x.dtype().is(py::dtype::of<float>())) throw Error("activations must be a float32 array");
    if (x.ndim() != 1) throw Error("activations must be a 1-D array");
    return py::array_t<float, py::array::c_style>::ensure(x);
}

void check_data_size(GGMLType type, int64_t n, size_t got) {
    const size_t want = row_size(type, n);
    if (got != want)
        throw Error(type_label(type) + " row of " + std::to_string(n) + " elements takes " + std::to_string(want) +
                    " bytes, got " + std::to_string(got));
}

// Runs f with the GIL released when the row is long enough to be worth it.
template <typename F>
void run_maybe_without_gil(int64_t n, F&& f) {
    if (n >= kReleaseGilElements) {
        py::gil_scoped_release release;
        f();
    } else {
        f();
    }
}

py::array_t<float> dequantize(int64_t type_id, const py::buffer& data, int64_t n) {
    const GGMLType type = type_from_id(type_id);
    check_row_length(type, n);
    const ByteView bytes = contiguous_bytes(data, "data");
    check_data_size(type, n, bytes.size());
    py::array_t<float> out(n);
    float* dst = out.mutable_data();
    run_maybe_without_gil(n, [&] { dequantize_row(type, bytes.ptr(), dst, n); });
    return out;
}

py::array_t<uint8_t> quantize_activations_hook(int64_t type_id, const py::array& x) {
    const GGMLType type = type_from_id(type_id);
    const auto row = float_row(x);
    const int64_t n = row.size();
    check_row_length(type, n);
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(row_size(type, n)));
    const float* src = row.data();
    uint8_t* dst = out.mutable_data();
    run_maybe_without_gil(n, [&] { quantize_activations(type, src, dst, n); });
    return out;
}

float vec_dot_hook(int64_t weight_type_id, const py::buffer& w, const py::array& x) {
    const MatmulKernel& kernel = matmul_kernel(type_from_id(weight_type_id));
    const auto row = float_row(x);
    const int64_t n = row.size();
    check_row_length(kernel.weight_type, n);
    check_row_length(kernel.act_type, n);
    const ByteView weights = contiguous_bytes(w, "weights");
    check_data_size(kernel.weight_type, n, weights.size());
    // new[] storage is aligned for every block type, including Q8_K's float and int16 fields.
    std::unique_ptr<uint8_t[]> act(new uint8_t[row_size(kernel.act_type, n)]);
    const float* src = row.data();
    float result = 0.0f;
    run_maybe_without_gil(n, [&] {
        kernel.quantize_act(src, act.get(), n);
        result = kernel.vec_dot(n, weights.ptr(), act.get());
    });
    return result;
}

}  // namespace

void bind_quant(py::module_& m) {
    m.def("dequantize", &dequantize, py::arg("type"), py::arg("data"), py::arg("n"),
          "Test hook: n elements of ggml type `type` from a row of raw block bytes, as float32.");
    m.def("quantize_activations", &quantize_activations_hook, py::arg("type"), py::arg("x"),
          "Test hook: a float32 row converted to activation type `type` (F32, F16, BF16, Q8_0, Q8_1, "
          "Q8_K), as raw bytes.");
    m.def("vec_dot", &vec_dot_hook, py::arg("weight_type"), py::arg("w"), py::arg("x"),
          "Test hook: dot product of a weight row (raw bytes) with float32 activations, which are first "
          "converted to the kernel's activation type.");
}

}  // namespace pyllama
