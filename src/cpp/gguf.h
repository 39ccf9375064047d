// GGUF v2/v3 reader: maps the file read-only and exposes its key-values and tensors without
// copying. The file is untrusted: the constructor validates every count, length, offset,
// dimension and type id against the file size and throws pyllama::Error naming the problem.
// After construction every pointer handed out lies inside the mapping.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "quant/types.h"

namespace pyllama {

enum class GGUFValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* value_type_name(GGUFValueType t);  // "UINT32", ...; "unknown" for other ids
size_t value_type_size(GGUFValueType t);        // bytes of one scalar; 0 for STRING and ARRAY

// One metadata value. Scalars are decoded; strings and numeric arrays point into the mapping.
struct GGUFValue {
    GGUFValueType type = GGUFValueType::UINT8;
    GGUFValueType array_type = GGUFValueType::UINT8;  // element type when type == ARRAY
    uint64_t array_len = 0;                           // element count when type == ARRAY

    // Exactly one of these is meaningful, by `type`.
    uint64_t u = 0;            // UINT8..UINT64 (also set for non-negative signed values)
    int64_t i = 0;             // every integer type (a UINT64 above INT64_MAX saturates)
    double f = 0;              // FLOAT32, FLOAT64
    bool b = false;            // BOOL
    std::string_view str;      // STRING (raw bytes, not checked for UTF-8)
    const uint8_t* array_data = nullptr;       // numeric/bool ARRAY: packed little-endian elements (unaligned)
    std::vector<std::string_view> strings;     // ARRAY of STRING

    // The whole key-value entry as stored in the file (key, type id, value), so that a writer
    // can copy it verbatim.
    std::string_view record;

    bool is_integer() const;
    bool is_float() const { return type == GGUFValueType::FLOAT32 || type == GGUFValueType::FLOAT64; }
};

struct TensorInfo {
    std::string name;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the row length (contiguous)
    GGMLType type = GGMLType::F32;
    uint64_t offset = 0;           // from the start of the tensor data section
    uint64_t nbytes = 0;
    const uint8_t* data = nullptr; // inside the mapping
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    std::string shape_string() const;  // "[576, 49152]"
};

class MappedFile;  // RAII read-only mmap

class GGUFFile {
public:
    // Throws pyllama::Error (bad/truncated/unsupported file) naming `path` and the problem.
    explicit GGUFFile(const std::string& path);
    // Parses `size` bytes already in memory, borrowed for the object's lifetime; `name` stands
    // for the path in messages. The same checks as for a file (used by the fuzz targets).
    GGUFFile(const std::string& name, const uint8_t* data, uint64_t size);
    ~GGUFFile();
    GGUFFile(const GGUFFile&) = delete;
    GGUFFile& operator=(const GGUFFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t file_size() const;
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section

    // Key-values in file order.
    const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
    const GGUFValue* find(std::string_view key) const;

    // Typed getters: nullopt when the key is absent; pyllama::Error naming the key when it has
    // the wrong type or an integer does not fit. Integers accept any integer type, floats
    // accept FLOAT32/FLOAT64.
    std::optional<uint64_t> get_uint(std::string_view key) const;
    std::optional<uint32_t> get_u32(std::string_view key) const;  // also errors above UINT32_MAX
    std::optional<int64_t> get_int(std::string_view key) const;   // negatives allowed
    std::optional<double> get_float(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    std::optional<std::string> get_string(std::string_view key) const;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;

private:
    void parse();  // validates map_'s bytes and fills everything below

    std::string path_;
    std::unique_ptr<MappedFile> map_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::vector<TensorInfo> tensors_;
    // Lookup by name; the views point into the mapping, so they live as long as map_.
    std::unordered_map<std::string_view, size_t> kv_index_;
    std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace pyllama
