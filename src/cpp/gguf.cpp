// GGUF v2/v3 parsing. The rules follow llama.cpp's ggml/src/gguf.cpp and its model loader's
// bounds check, and are stricter in places (tensors need 1..4 dimensions and a non-empty
// UTF-8 name without NUL bytes; header counts are bounded by the bytes left in the file).
#include "gguf.h"

#include <cstdio>
#include <cstring>
#include <limits>

#include "error.h"
#include "mapped_file.h"
#include "utf8.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "GGUF fields are little-endian and are read with memcpy");

namespace pyllama {

namespace {

constexpr uint32_t kMinVersion = 2;
constexpr uint32_t kMaxVersion = 3;
constexpr uint64_t kMaxStringLength = uint64_t(1) << 30;   // llama.cpp's GGUF_MAX_STRING_LENGTH
constexpr uint64_t kMaxArrayElements = uint64_t(1) << 30;  // llama.cpp's GGUF_MAX_ARRAY_ELEMENTS
constexpr size_t kMaxTensorNameBytes = 63;  // ggml's GGML_MAX_NAME (64) less the NUL
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kDefaultAlignment = 32;
constexpr const char* kAlignmentKey = "general.alignment";

// The smallest possible encodings, used to bound the header's counts by the bytes left so a
// forged count cannot make us loop or reserve memory for entries that cannot exist.
constexpr uint64_t kMinKVBytes = 8 + 1 + 4 + 1;  // key length, 1-byte key, type id, UINT8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name length, 1-byte name,
                                                                 // n_dims, ne[0], type, offset

std::string num(uint64_t v) { return std::to_string(v); }

// Names from the file as they may appear in a message: printable ASCII as is, other bytes
// as \xNN (messages must be valid UTF-8 for Python), cut short so a forged multi-megabyte
// key cannot flood the message.
std::string quoted(std::string_view s) {
    constexpr size_t kMaxShown = 80;
    std::string out = "'";
    for (size_t k = 0; k < s.size() && k < kMaxShown; ++k) {
        const unsigned char c = static_cast<unsigned char>(s[k]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > kMaxShown) out += "...";
    return out + "'";
}

bool is_known_value_type(uint32_t id) { return id <= static_cast<uint32_t>(GGUFValueType::FLOAT64); }

uint64_t round_up(uint64_t n, uint64_t alignment) {  // caller ensures no overflow
    return (n + alignment - 1) / alignment * alignment;
}

// Reads little-endian fields from the mapping. Every read checks the bytes left first;
// positions never exceed the size, so size - pos cannot wrap and pos + n is only formed
// after n <= size - pos is known. `what` callbacks describe the field and run only on error.
class Cursor {
public:
    Cursor(const uint8_t* data, uint64_t size, const std::string& path)
        : data_(data), size_(size), path_(path) {}

    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& message) const { throw Error(path_ + ": " + message); }

    template <class Describe>
    const uint8_t* take(uint64_t n, const Describe& what) {
        if (n > remaining())
            fail("file ends inside " + what() + " (" + num(n) + " bytes needed at offset " +
                 num(pos_) + ", " + num(remaining()) + " left)");
        const uint8_t* p = data_ + pos_;
        pos_ += n;
        return p;
    }

    template <class T, class Describe>
    T read(const Describe& what) {
        T v;
        std::memcpy(&v, take(sizeof(T), what), sizeof(T));
        return v;
    }

    // A GGUF string: u64 byte count, then the bytes (no terminator, encoding unchecked).
    template <class Describe>
    std::string_view read_string(const Describe& what) {
        const uint64_t len = read<uint64_t>([&] { return "the length of " + what(); });
        if (len > kMaxStringLength)
            fail(what() + " has length " + num(len) + ", over the limit of " + num(kMaxStringLength));
        if (len > remaining())
            fail(what() + " has length " + num(len) + " but only " + num(remaining()) +
                 " bytes are left in the file");
        return {reinterpret_cast<const char*>(take(len, what)), static_cast<size_t>(len)};
    }

private:
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    const std::string& path_;
};

void set_unsigned(GGUFValue& v, uint64_t x) {
    v.u = x;
    v.i = x > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                            : static_cast<int64_t>(x);
}

void set_signed(GGUFValue& v, int64_t x) {
    v.i = x;
    v.u = x < 0 ? 0 : static_cast<uint64_t>(x);
}

// Any non-array value of type v.type.
template <class Describe>
void read_scalar(Cursor& c, GGUFValue& v, const Describe& what) {
    switch (v.type) {
        case GGUFValueType::UINT8: set_unsigned(v, c.read<uint8_t>(what)); break;
        case GGUFValueType::INT8: set_signed(v, c.read<int8_t>(what)); break;
        case GGUFValueType::UINT16: set_unsigned(v, c.read<uint16_t>(what)); break;
        case GGUFValueType::INT16: set_signed(v, c.read<int16_t>(what)); break;
        case GGUFValueType::UINT32: set_unsigned(v, c.read<uint32_t>(what)); break;
        case GGUFValueType::INT32: set_signed(v, c.read<int32_t>(what)); break;
        case GGUFValueType::UINT64: set_unsigned(v, c.read<uint64_t>(what)); break;
        case GGUFValueType::INT64: set_signed(v, c.read<int64_t>(what)); break;
        case GGUFValueType::FLOAT32: v.f = c.read<float>(what); break;
        case GGUFValueType::FLOAT64: v.f = c.read<double>(what); break;
        case GGUFValueType::BOOL: v.b = c.read<uint8_t>(what) != 0; break;  // as llama.cpp
        case GGUFValueType::STRING: v.str = c.read_string(what); break;
        case GGUFValueType::ARRAY: break;  // the caller reads arrays
    }
}

GGUFValue read_array(Cursor& c, std::string_view key) {
    const std::string k = quoted(key);
    GGUFValue v;
    v.type = GGUFValueType::ARRAY;
    const uint32_t elem_id = c.read<uint32_t>([&] { return "the element type of key " + k; });
    if (elem_id == static_cast<uint32_t>(GGUFValueType::ARRAY))
        c.fail("key " + k + " is an array of arrays, which GGUF readers do not support");
    if (!is_known_value_type(elem_id))
        c.fail("key " + k + " is an array of unknown value type id " + num(elem_id));
    v.array_type = static_cast<GGUFValueType>(elem_id);
    v.array_len = c.read<uint64_t>([&] { return "the element count of key " + k; });
    if (v.array_len > kMaxArrayElements)
        c.fail("key " + k + " has " + num(v.array_len) + " elements, over the limit of " +
               num(kMaxArrayElements));

    // Every element takes at least `elem_size` bytes (a string its 8-byte length), so the
    // count is checked against the bytes left before anything is reserved or multiplied.
    const bool strings = v.array_type == GGUFValueType::STRING;
    const uint64_t elem_size = strings ? sizeof(uint64_t) : value_type_size(v.array_type);
    if (v.array_len > c.remaining() / elem_size)
        c.fail("key " + k + " claims " + num(v.array_len) + " elements of type " +
               value_type_name(v.array_type) + ", more than the " + num(c.remaining()) +
               " bytes left in the file can hold");
    if (strings) {
        v.strings.reserve(static_cast<size_t>(v.array_len));
        for (uint64_t j = 0; j < v.array_len; ++j)
            v.strings.push_back(c.read_string([&] { return "element " + num(j) + " of key " + k; }));
    } else {
        v.array_data = c.take(v.array_len * elem_size, [&] { return "the elements of key " + k; });
    }
    return v;
}

std::string describe_value(std::string_view key, const GGUFValue& v) {
    std::string s = "key " + quoted(key) + " is " + value_type_name(v.type);
    if (v.type == GGUFValueType::ARRAY) return s + " of " + value_type_name(v.array_type);
    if (v.is_integer())
        s += " " + (v.type == GGUFValueType::UINT64 ? num(v.u) : std::to_string(v.i));
    return s;
}

}  // namespace

const char* value_type_name(GGUFValueType t) {
    switch (t) {
        case GGUFValueType::UINT8: return "UINT8";
        case GGUFValueType::INT8: return "INT8";
        case GGUFValueType::UINT16: return "UINT16";
        case GGUFValueType::INT16: return "INT16";
        case GGUFValueType::UINT32: return "UINT32";
        case GGUFValueType::INT32: return "INT32";
        case GGUFValueType::FLOAT32: return "FLOAT32";
        case GGUFValueType::BOOL: return "BOOL";
        case GGUFValueType::STRING: return "STRING";
        case GGUFValueType::ARRAY: return "ARRAY";
        case GGUFValueType::UINT64: return "UINT64";
        case GGUFValueType::INT64: return "INT64";
        case GGUFValueType::FLOAT64: return "FLOAT64";
    }
    return "unknown";
}

size_t value_type_size(GGUFValueType t) {
    switch (t) {
        case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::BOOL: return 1;
        case GGUFValueType::UINT16: case GGUFValueType::INT16: return 2;
        case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::FLOAT32: return 4;
        case GGUFValueType::UINT64: case GGUFValueType::INT64: case GGUFValueType::FLOAT64: return 8;
        case GGUFValueType::STRING: case GGUFValueType::ARRAY: return 0;
    }
    return 0;
}

bool GGUFValue::is_integer() const {
    switch (type) {
        case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16:
        case GGUFValueType::INT16: case GGUFValueType::UINT32: case GGUFValueType::INT32:
        case GGUFValueType::UINT64: case GGUFValueType::INT64:
            return true;
        default:
            return false;
    }
}

std::string TensorInfo::shape_string() const {
    std::string s = "[";
    for (uint32_t d = 0; d < n_dims && d < 4; ++d) s += (d ? ", " : "") + std::to_string(ne[d]);
    return s + "]";
}

GGUFFile::GGUFFile(const std::string& path)
    : path_(path), map_(std::make_unique<MappedFile>(path)) {
    parse();
}

GGUFFile::GGUFFile(const std::string& name, const uint8_t* data, uint64_t size)
    : path_(name), map_(std::make_unique<MappedFile>(name, data, size)) {
    parse();
}

void GGUFFile::parse() {
    Cursor c(map_->data(), map_->size(), path_);

    // Header: magic, version, tensor count, key-value count.
    const uint8_t* magic = c.take(4, [] { return std::string("the magic number"); });
    if (std::memcmp(magic, "GGUF", 4) != 0)
        c.fail("not a GGUF file (bad magic " + quoted({reinterpret_cast<const char*>(magic), 4}) +
               ", expected 'GGUF')");
    version_ = c.read<uint32_t>([] { return std::string("the version"); });
    // A big-endian file's small version number reads as a huge one with zero low bytes.
    if (version_ != 0 && (version_ & 0xFFFF) == 0)
        c.fail("big-endian GGUF is not supported (version field reads " + num(version_) + ")");
    if (version_ < kMinVersion || version_ > kMaxVersion)
        c.fail("unsupported GGUF version " + num(version_) + " (supported: 2 and 3)");
    const uint64_t n_tensors = c.read<uint64_t>([] { return std::string("the tensor count"); });
    const uint64_t n_kv = c.read<uint64_t>([] { return std::string("the key-value count"); });
    if (n_tensors > c.remaining() / kMinTensorInfoBytes)
        c.fail("header claims " + num(n_tensors) + " tensors, more than the " + num(c.remaining()) +
               " bytes left in the file can hold");
    if (n_kv > (c.remaining() - n_tensors * kMinTensorInfoBytes) / kMinKVBytes)
        c.fail("header claims " + num(n_kv) + " key-values, more than the " + num(c.remaining()) +
               " bytes left in the file can hold");

    // Key-values.
    kv_.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        const uint64_t record_start = c.pos();
        const std::string_view key = c.read_string([&] { return "the name of key-value " + num(i); });
        if (key.empty()) c.fail("key-value " + num(i) + " has an empty name");
        if (!kv_index_.emplace(key, kv_.size()).second) c.fail("duplicate key " + quoted(key));
        const uint32_t type_id = c.read<uint32_t>([&] { return "the type of key " + quoted(key); });
        if (!is_known_value_type(type_id))
            c.fail("key " + quoted(key) + " has unknown value type id " + num(type_id));
        GGUFValue v;
        if (static_cast<GGUFValueType>(type_id) == GGUFValueType::ARRAY) {
            v = read_array(c, key);
        } else {
            v.type = static_cast<GGUFValueType>(type_id);
            read_scalar(c, v, [&] { return "the value of key " + quoted(key); });
        }
        v.record = {reinterpret_cast<const char*>(map_->data()) + record_start,
                    static_cast<size_t>(c.pos() - record_start)};
        kv_.emplace_back(std::string(key), std::move(v));
    }

    if (const GGUFValue* a = find(kAlignmentKey)) {
        if (a->type != GGUFValueType::UINT32)
            c.fail(describe_value(kAlignmentKey, *a) + ", expected UINT32");
        if (a->u == 0 || (a->u & (a->u - 1)) != 0)
            c.fail(std::string(kAlignmentKey) + " " + num(a->u) + " is not a power of two");
        alignment_ = a->u;
    } else {
        alignment_ = kDefaultAlignment;
    }

    // Tensor infos.
    tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const std::string_view name = c.read_string([&] { return "the name of tensor " + num(i); });
        if (name.empty()) c.fail("tensor " + num(i) + " has an empty name");
        if (name.size() > kMaxTensorNameBytes)
            c.fail("tensor " + num(i) + " name " + quoted(name) + " is " + num(name.size()) +
                   " bytes long, over ggml's limit of " + num(kMaxTensorNameBytes));
        if (name.find('\0') != std::string_view::npos)
            c.fail("tensor " + num(i) + " name " + quoted(name) + " contains a NUL byte");
        if (!is_valid_utf8(name))  // names are identifiers; Python must be able to spell them
            c.fail("tensor " + num(i) + " name " + quoted(name) + " is not valid UTF-8");
        if (!tensor_index_.emplace(name, tensors_.size()).second)
            c.fail("duplicate tensor name " + quoted(name));
        const std::string q = quoted(name);
        const auto what = [&] { return "the info of tensor " + q; };

        TensorInfo t;
        t.name = std::string(name);
        t.n_dims = c.read<uint32_t>(what);
        if (t.n_dims < 1 || t.n_dims > kMaxDims)
            c.fail("tensor " + q + " has " + num(t.n_dims) + " dimensions, expected 1 to " + num(kMaxDims));
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            t.ne[d] = c.read<int64_t>(what);
            if (t.ne[d] < 0)
                c.fail("tensor " + q + " dimension " + num(d) + " has negative size " + std::to_string(t.ne[d]));
        }
        // Zero-sized dimensions are allowed (as in llama.cpp); the element count must fit int64,
        // multiplied in dimension order as ggml does.
        int64_t n_elements = t.ne[0];
        for (uint32_t d = 1; d < kMaxDims; ++d) {
            if (t.ne[d] > 1 && n_elements > std::numeric_limits<int64_t>::max() / t.ne[d])
                c.fail("tensor " + q + " shape " + t.shape_string() + " has more elements than int64 can count");
            n_elements *= t.ne[d];
        }

        const uint32_t type_id = c.read<uint32_t>(what);
        const TypeTraits* tt = type_traits(type_id);
        if (!tt) c.fail("tensor " + q + " has unknown ggml type id " + num(type_id));
        t.type = static_cast<GGMLType>(type_id);
        if (t.ne[0] % tt->block_size != 0)
            c.fail("tensor " + q + " of type " + tt->name + " has rows of " + std::to_string(t.ne[0]) +
                   " elements, not a multiple of the block size " + std::to_string(tt->block_size));
        const uint64_t n_blocks = static_cast<uint64_t>(n_elements / tt->block_size);
        if (n_blocks > std::numeric_limits<uint64_t>::max() / tt->type_size)
            c.fail("tensor " + q + " shape " + t.shape_string() + " has a size in bytes that overflows");
        t.nbytes = n_blocks * tt->type_size;
        t.offset = c.read<uint64_t>(what);
        tensors_.push_back(std::move(t));
    }

    // Tensor data: after the header, padded to the alignment (no padding needed, as in
    // llama.cpp, when there are no tensors: a vocabulary-only file may end right here).
    const uint64_t header_end = c.pos();
    const uint64_t file_size = map_->size();
    data_offset_ = header_end;
    if (!tensors_.empty()) {
        const uint64_t padding = (alignment_ - header_end % alignment_) % alignment_;
        if (padding > c.remaining())
            c.fail("the tensor data section would start at offset " + num(header_end) + " + " +
                   num(padding) + " bytes of padding, past the end of the file (size " + num(file_size) + ")");
        data_offset_ = header_end + padding;
    }
    // llama.cpp requires the tensors' data in info order, each padded to the alignment;
    // together with the bounds check this keeps every offset below the file size, so the
    // sums below cannot overflow.
    const uint64_t data_size = file_size - data_offset_;
    uint64_t expected = 0;
    for (TensorInfo& t : tensors_) {
        const std::string q = quoted(t.name);
        if (t.offset % alignment_ != 0)
            c.fail("tensor " + q + " data offset " + num(t.offset) + " is not a multiple of the alignment " +
                   num(alignment_));
        if (t.offset != expected)
            c.fail("tensor " + q + " data offset " + num(t.offset) + " should be " + num(expected) +
                   " (tensor data must follow the tensor infos' order, each padded to the alignment)");
        if (t.offset > data_size || t.nbytes > data_size - t.offset)
            c.fail("tensor " + q + " data [offset " + num(data_offset_ + t.offset) + ", " + num(t.nbytes) +
                   " bytes] extends past the end of the file (size " + num(file_size) + ")");
        t.data = map_->data() + data_offset_ + t.offset;
        expected = round_up(t.offset + t.nbytes, alignment_);
    }
}

GGUFFile::~GGUFFile() = default;

uint64_t GGUFFile::file_size() const { return map_->size(); }

const GGUFValue* GGUFFile::find(std::string_view key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* GGUFFile::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<int64_t> GGUFFile::get_int(std::string_view key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer()) throw Error(path_ + ": " + describe_value(key, *v) + ", expected an integer");
    if (v->type == GGUFValueType::UINT64 && v->u > uint64_t(std::numeric_limits<int64_t>::max()))
        throw Error(path_ + ": " + describe_value(key, *v) + ", too large for int64");
    return v->i;
}

std::optional<uint64_t> GGUFFile::get_uint(std::string_view key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer()) throw Error(path_ + ": " + describe_value(key, *v) + ", expected an integer");
    if (v->type != GGUFValueType::UINT64 && v->i < 0)
        throw Error(path_ + ": " + describe_value(key, *v) + ", expected a non-negative integer");
    return v->u;
}

std::optional<uint32_t> GGUFFile::get_u32(std::string_view key) const {
    const std::optional<uint64_t> u = get_uint(key);
    if (u && *u > std::numeric_limits<uint32_t>::max())
        throw Error(path_ + ": " + describe_value(key, *find(key)) + ", too large for uint32");
    return u ? std::optional<uint32_t>(static_cast<uint32_t>(*u)) : std::nullopt;
}

std::optional<double> GGUFFile::get_float(std::string_view key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_float()) throw Error(path_ + ": " + describe_value(key, *v) + ", expected FLOAT32 or FLOAT64");
    return v->f;
}

std::optional<bool> GGUFFile::get_bool(std::string_view key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GGUFValueType::BOOL) throw Error(path_ + ": " + describe_value(key, *v) + ", expected BOOL");
    return v->b;
}

std::optional<std::string> GGUFFile::get_string(std::string_view key) const {
    const GGUFValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GGUFValueType::STRING)
        throw Error(path_ + ": " + describe_value(key, *v) + ", expected STRING");
    return std::string(v->str);
}

}  // namespace pyllama
