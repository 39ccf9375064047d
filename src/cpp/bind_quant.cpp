// The quantization code seen from Python: the ggml type table, weight quantization for
// pyllama.quantize, and test hooks (dequantize a row, quantize activations, run one vec_dot)
// that tests compare against the gguf package and numpy. Not part of pyllama's public API.
#include <pybind11/numpy.h>

#include <cstring>
#include <memory>
#include <string>

#include "bind.h"
#include "error.h"
#include "ops.h"
#include "quant/quant.h"
#include "quant/repack.h"
#include "quant/quantize_weights.h"
#include "quant/type_errors.h"
#include "threadpool.h"

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

// Every ggml type: name -> (id, elements per block, bytes per block, can dequantize, can quantize).
py::dict ggml_types() {
    py::dict d;
    for (uint32_t id = 0; id < 64; ++id)
        if (const TypeTraits* tt = type_traits(id))
            d[py::str(tt->name)] = py::make_tuple(id, tt->block_size, tt->type_size, tt->can_compute,
                                                  can_quantize(static_cast<GGMLType>(id)));
    return d;
}

// Weight rows: x is float32, [n_rows, row_len] or one row; the result has one row of bytes per row.
py::array_t<uint8_t> quantize_hook(int64_t type_id, const py::array& x, int n_threads) {
    const GGMLType type = type_from_id(type_id);
    if (!x.dtype().is(py::dtype::of<float>())) throw Error("weights must be a float32 array");
    if (x.ndim() != 1 && x.ndim() != 2) throw Error("weights must be a 1-D or 2-D array");
    const auto rows = py::array_t<float, py::array::c_style>::ensure(x);
    const int64_t row_len = rows.shape(rows.ndim() - 1);
    const int64_t n_rows = rows.ndim() == 2 ? rows.shape(0) : 1;
    check_row_length(type, row_len);
    if (!can_quantize(type)) throw unsupported_type("weight quantization", type);
    const auto row_bytes = static_cast<py::ssize_t>(row_size(type, row_len));
    py::array_t<uint8_t> out = rows.ndim() == 2 ? py::array_t<uint8_t>({static_cast<py::ssize_t>(n_rows), row_bytes})
                                                : py::array_t<uint8_t>(row_bytes);
    const float* src = rows.data();
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        ThreadPool pool(n_threads);
        quantize_rows(pool, type, src, dst, n_rows, row_len);
    }
    return out;
}

// Rows of raw src_type bytes (row_len elements each) converted to dst_type, as llama-quantize
// converts a tensor: dequantized to floats, then quantized.
py::array_t<uint8_t> requantize(int64_t src_type_id, const py::buffer& data, int64_t dst_type_id, int64_t row_len,
                                int n_threads) {
    const GGMLType src_type = type_from_id(src_type_id), dst_type = type_from_id(dst_type_id);
    check_row_length(src_type, row_len);
    check_row_length(dst_type, row_len);
    if (row_len == 0) throw Error("rows must not be empty");
    const ByteView bytes = contiguous_bytes(data, "data");
    const size_t src_row_bytes = row_size(src_type, row_len);
    if (bytes.size() % src_row_bytes != 0)
        throw Error(std::to_string(bytes.size()) + " bytes are not a whole number of " + type_label(src_type) +
                    " rows of " + std::to_string(row_len) + " elements");
    const auto n_rows = static_cast<int64_t>(bytes.size() / src_row_bytes);
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(static_cast<size_t>(n_rows) * row_size(dst_type, row_len)));
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        ThreadPool pool(n_threads);
        convert_rows(pool, src_type, bytes.ptr(), dst_type, dst, n_rows, row_len);
    }
    return out;
}

bool row_data_is_valid_hook(int64_t type_id, const py::buffer& data, int64_t n) {
    const GGMLType type = type_from_id(type_id);
    check_row_length(type, n);
    const ByteView bytes = contiguous_bytes(data, "data");
    check_data_size(type, n, bytes.size());
    py::gil_scoped_release release;
    return row_data_is_valid(type, bytes.ptr(), n);
}

// Weight rows w (n_out rows of raw bytes) times float32 rows x ([n_tokens, n_in]) through matmul
// (ops.h) at the level in use, on n_threads threads; with `repack`, the rows are first repacked
// into tiles (quant/repack.h), so matmul takes the GEMM path whatever the level.
py::array_t<float> matmul_hook(int64_t type_id, const py::buffer& w, const py::array& x, int n_threads, bool repack) {
    if (!x.dtype().is(py::dtype::of<float>()) || x.ndim() != 2) throw Error("x must be a 2-D float32 array");
    const auto rows = py::array_t<float, py::array::c_style>::ensure(x);
    WeightMatrix m;
    m.type = type_from_id(type_id);
    m.n_in = rows.shape(1);
    check_row_length(m.type, m.n_in);
    if (m.n_in == 0) throw Error("rows must not be empty");
    m.row_bytes = row_size(m.type, m.n_in);
    const ByteView bytes = contiguous_bytes(w, "weights");
    if (bytes.size() % m.row_bytes != 0) throw Error("weights are not a whole number of rows");
    m.n_out = static_cast<int64_t>(bytes.size() / m.row_bytes);
    m.data = bytes.ptr();
    const int64_t n_tokens = rows.shape(0);
    py::array_t<float> y({static_cast<py::ssize_t>(n_tokens), static_cast<py::ssize_t>(m.n_out)});
    float* out = y.mutable_data();
    {
        py::gil_scoped_release release;
        ThreadPool pool(n_threads);
        if (repack) repack_weights(pool, m);
        MatmulInput input;
        input.set(rows.data(), n_tokens, m.n_in);
        matmul(pool, m, input, out);
    }
    return y;
}

// The repacked tiles of the whole tiles of rows w (raw bytes, rows of n_in elements).
py::array_t<uint8_t> repack_hook(int64_t type_id, const py::buffer& w, int64_t n_in) {
    const GGMLType type = type_from_id(type_id);
    check_row_length(type, n_in);
    const size_t row_bytes = row_size(type, n_in);
    const ByteView bytes = contiguous_bytes(w, "weights");
    if (row_bytes == 0 || bytes.size() % row_bytes != 0) throw Error("weights are not a whole number of rows");
    const auto n_tiles = static_cast<int64_t>(bytes.size() / row_bytes) / kTileRows;
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(n_tiles * repacked_tile_bytes(type, n_in)));
    repack_tiles(type, bytes.ptr(), row_bytes, n_in, 0, n_tiles, out.mutable_data());
    return out;
}

}  // namespace

void bind_quant(py::module_& m) {
    m.def("ggml_types", &ggml_types, "Every ggml tensor type: name -> (id, elements per block, bytes per block, can dequantize, "
          "can quantize).");
    m.def("quantize", &quantize_hook, py::arg("type"), py::arg("x"), py::arg("n_threads") = 1,
          "float32 weights ([n_rows, row_len] or one row) quantized to ggml type `type` exactly as "
          "llama-quantize does without an importance matrix; raw bytes, one row per input row.");
    m.def("requantize", &requantize, py::arg("src_type"), py::arg("data"), py::arg("dst_type"), py::arg("row_len"),
          py::arg("n_threads") = 1,
          "Rows of `src_type` (raw bytes, row_len elements each) dequantized and quantized to `dst_type`.");
    m.def("row_data_is_valid", &row_data_is_valid_hook, py::arg("type"), py::arg("data"), py::arg("n"),
          "llama.cpp's check of quantized data: False if a scale (or an F32/F16/BF16 value) is inf or NaN.");
    m.def("dequantize", &dequantize, py::arg("type"), py::arg("data"), py::arg("n"),
          "Test hook: n elements of ggml type `type` from a row of raw block bytes, as float32.");
    m.def("quantize_activations", &quantize_activations_hook, py::arg("type"), py::arg("x"),
          "Test hook: a float32 row converted to activation type `type` (F32, F16, BF16, Q8_0, Q8_1, "
          "Q8_K), as raw bytes.");
    m.def("matmul", &matmul_hook, py::arg("type"), py::arg("w"), py::arg("x"), py::arg("n_threads") = 1,
          py::arg("repack") = false,
          "Test hook: weight rows (raw bytes of ggml type `type`) times float32 rows x [n_tokens, n_in] at the "
          "level in use, optionally through the repacked GEMM; float32 [n_tokens, n_rows].");
    m.def("repack", &repack_hook, py::arg("type"), py::arg("w"), py::arg("n_in"),
          "Test hook: the row-interleaved tiles (8 rows each) of the whole tiles of weight rows w.");
    m.def("vec_dot", &vec_dot_hook, py::arg("weight_type"), py::arg("w"), py::arg("x"),
          "Test hook: dot product of a weight row (raw bytes) with float32 activations, which are first "
          "converted to the kernel's activation type.");
}

}  // namespace pyllama
