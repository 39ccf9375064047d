// _core.GGUFFile: a parsed GGUF file's metadata and tensor table, and zero-copy views of its
// tensor data. The C++ object lives in a shared_ptr so data views keep the mapping alive.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>  // std::optional results of the typed getters

#include <cstring>
#include <memory>

#include "bind.h"
#include "error.h"
#include "gguf.h"

namespace py = pybind11;

namespace pyllama {

namespace {

// Strict UTF-8 decoding; `where` names the key/element for the error and runs only on failure.
template <class Describe>
py::str utf8(const GGUFFile& file, std::string_view s, const Describe& where) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
    if (!o) {
        PyErr_Clear();
        throw Error(file.path() + ": " + where() + " is not valid UTF-8");
    }
    return py::reinterpret_steal<py::str>(o);
}

py::dtype numpy_dtype(GGUFValueType t) {
    switch (t) {
        case GGUFValueType::UINT8: return py::dtype("<u1");
        case GGUFValueType::INT8: return py::dtype("<i1");
        case GGUFValueType::UINT16: return py::dtype("<u2");
        case GGUFValueType::INT16: return py::dtype("<i2");
        case GGUFValueType::UINT32: return py::dtype("<u4");
        case GGUFValueType::INT32: return py::dtype("<i4");
        case GGUFValueType::UINT64: return py::dtype("<u8");
        case GGUFValueType::INT64: return py::dtype("<i8");
        case GGUFValueType::FLOAT32: return py::dtype("<f4");
        case GGUFValueType::FLOAT64: return py::dtype("<f8");
        case GGUFValueType::BOOL: return py::dtype("?");
        case GGUFValueType::STRING: case GGUFValueType::ARRAY: break;
    }
    throw Error(std::string("no numpy dtype for GGUF type ") + value_type_name(t));
}

// A numeric array is copied out of the mapping, so the metadata outlives the file.
py::array numeric_array(const GGUFValue& v) {
    py::array a(numpy_dtype(v.array_type), static_cast<py::ssize_t>(v.array_len));
    auto* out = static_cast<uint8_t*>(a.mutable_data());
    if (v.array_type == GGUFValueType::BOOL) {
        // numpy bools must be 0 or 1; any non-zero byte is true, as for scalar BOOL values.
        for (uint64_t j = 0; j < v.array_len; ++j) out[j] = v.array_data[j] != 0;
    } else if (v.array_len > 0) {
        std::memcpy(out, v.array_data, v.array_len * value_type_size(v.array_type));
    }
    return a;
}

py::object value_to_python(const GGUFFile& file, const std::string& key, const GGUFValue& v) {
    switch (v.type) {
        case GGUFValueType::UINT8: case GGUFValueType::UINT16: case GGUFValueType::UINT32:
        case GGUFValueType::UINT64:
            return py::int_(v.u);
        case GGUFValueType::INT8: case GGUFValueType::INT16: case GGUFValueType::INT32:
        case GGUFValueType::INT64:
            return py::int_(v.i);
        case GGUFValueType::FLOAT32: case GGUFValueType::FLOAT64: return py::float_(v.f);
        case GGUFValueType::BOOL: return py::bool_(v.b);
        case GGUFValueType::STRING: return utf8(file, v.str, [&] { return "key '" + key + "'"; });
        case GGUFValueType::ARRAY: break;
    }
    if (v.array_type != GGUFValueType::STRING) return numeric_array(v);
    py::list out(v.strings.size());
    for (size_t j = 0; j < v.strings.size(); ++j) {
        py::str s = utf8(file, v.strings[j],
                         [&] { return "element " + std::to_string(j) + " of key '" + key + "'"; });
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(j), s.release().ptr());
    }
    return std::move(out);
}

py::dict metadata_dict(const GGUFFile& file) {
    py::dict d;  // insertion-ordered: file order
    size_t i = 0;
    for (const auto& [key, value] : file.metadata()) {
        py::str k = utf8(file, key, [&] { return "the name of key-value " + std::to_string(i); });
        d[k] = value_to_python(file, key, value);
        ++i;
    }
    return d;
}

// A key-value entry's bytes as llama.cpp's GGUF writer emits them after reading the file:
// the entry verbatim, except that BOOL values (which llama.cpp reads as "byte != 0") become 0 or 1.
py::bytes kv_record_bytes(const GGUFValue& v) {
    std::string rec(v.record);
    size_t n_bools = 0;
    if (v.type == GGUFValueType::BOOL) n_bools = 1;
    if (v.type == GGUFValueType::ARRAY && v.array_type == GGUFValueType::BOOL) n_bools = static_cast<size_t>(v.array_len);
    for (size_t j = rec.size() - n_bools; j < rec.size(); ++j) rec[j] = rec[j] != 0 ? 1 : 0;
    return py::bytes(rec);
}

py::tuple shape_tuple(const TensorInfo& t) {
    py::tuple shape(t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) shape[d] = py::int_(t.ne[d]);
    return shape;
}

const TensorInfo& tensor_or_throw(const GGUFFile& file, const std::string& name) {
    const TensorInfo* t = file.find_tensor(name);
    if (!t) throw Error(file.path() + ": no tensor named '" + name + "'");
    return *t;
}

std::string fs_path(const py::object& path) {
    py::object s = py::module_::import("os").attr("fspath")(path);
    if (!py::isinstance<py::str>(s)) throw py::type_error("GGUFFile path must be str or os.PathLike[str]");
    return s.cast<std::string>();
}

}  // namespace

void bind_gguf(py::module_& m) {
    py::class_<TensorInfo>(m, "TensorInfo", "One tensor's entry in a GGUF file's tensor table.")
        .def_readonly("name", &TensorInfo::name)
        .def_property_readonly("shape", &shape_tuple, "Dimensions in ggml order (ne[0], the row length, first).")
        .def_property_readonly("type", [](const TensorInfo& t) { return static_cast<uint32_t>(t.type); },
                               "ggml type id.")
        .def_property_readonly("type_name", [](const TensorInfo& t) { return std::string(type_name(t.type)); })
        .def_readonly("offset", &TensorInfo::offset, "Offset of the data within the tensor data section.")
        .def_readonly("nbytes", &TensorInfo::nbytes)
        .def_property_readonly("n_elements", &TensorInfo::n_elements)
        .def("__repr__", [](const TensorInfo& t) {
            return "TensorInfo('" + t.name + "', " + type_name(t.type) + " " + t.shape_string() + ")";
        });

    py::class_<GGUFFile, std::shared_ptr<GGUFFile>>(
        m, "GGUFFile", "A GGUF v2/v3 file, mapped read-only and validated when opened.")
        .def(py::init([](const py::object& path) {
                 const std::string p = fs_path(path);
                 py::gil_scoped_release release;
                 return std::make_shared<GGUFFile>(p);
             }),
             py::arg("path"))
        .def_property_readonly("path", &GGUFFile::path)
        .def_property_readonly("version", &GGUFFile::version)
        .def_property_readonly("alignment", &GGUFFile::alignment)
        .def_property_readonly("data_offset", &GGUFFile::data_offset,
                               "File offset where the tensor data section starts.")
        .def_property_readonly("file_size", &GGUFFile::file_size)
        .def_property_readonly("metadata", &metadata_dict,
                               "Key-values in file order, as a new dict (numeric arrays as numpy copies).")
        .def("kv_records",
             [](const GGUFFile& f) {
                 py::list out;
                 size_t i = 0;
                 for (const auto& [key, value] : f.metadata()) {
                     py::str k = utf8(f, key, [&] { return "the name of key-value " + std::to_string(i); });
                     out.append(py::make_tuple(k, kv_record_bytes(value)));
                     ++i;
                 }
                 return out;
             },
             "(key, entry bytes) of every key-value in file order; an entry (key, type, value) is "
             "written back exactly as llama.cpp's GGUF writer would (BOOL values as 0 or 1).")
        // The typed getters the model loader uses: None when absent, PyllamaError on a wrong type.
        .def("get_uint", &GGUFFile::get_uint, py::arg("key"))
        .def("get_u32", &GGUFFile::get_u32, py::arg("key"))
        .def("get_int", &GGUFFile::get_int, py::arg("key"))
        .def("get_float", &GGUFFile::get_float, py::arg("key"))
        .def("get_bool", &GGUFFile::get_bool, py::arg("key"))
        .def("get_string",
             [](const GGUFFile& f, const std::string& key) -> py::object {
                 const std::optional<std::string> s = f.get_string(key);
                 if (!s) return py::none();
                 return utf8(f, *s, [&] { return "key '" + key + "'"; });
             },
             py::arg("key"))
        .def_property_readonly("tensors",
                               [](const GGUFFile& f) {
                                   py::list out;
                                   for (const TensorInfo& t : f.tensors()) out.append(py::cast(t));
                                   return out;
                               },
                               "TensorInfo of every tensor, in file order.")
        .def("find_tensor",
             [](const GGUFFile& f, const std::string& name) -> py::object {
                 const TensorInfo* t = f.find_tensor(name);
                 return t ? py::cast(*t) : py::none();
             },
             py::arg("name"), "The tensor's TensorInfo, or None.")
        .def("tensor_data",
             [](const std::shared_ptr<GGUFFile>& f, const std::string& name) {
                 const TensorInfo& t = tensor_or_throw(*f, name);
                 // The base is this GGUFFile's Python object, so the view keeps the mapping alive.
                 py::array a(py::dtype::of<uint8_t>(), static_cast<py::ssize_t>(t.nbytes), t.data, py::cast(f));
                 a.attr("setflags")(py::arg("write") = false);
                 return a;
             },
             py::arg("name"), "The tensor's raw bytes: a read-only uint8 view into the mapped file.")
        .def("__repr__", [](const GGUFFile& f) {
            return "GGUFFile('" + f.path() + "', version " + std::to_string(f.version()) + ", " +
                   std::to_string(f.metadata().size()) + " key-values, " + std::to_string(f.tensors().size()) +
                   " tensors)";
        });
}

}  // namespace pyllama
