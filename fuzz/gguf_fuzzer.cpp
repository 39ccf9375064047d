// libFuzzer target: the GGUF parser and its tensor-table validation on arbitrary bytes.
// A rejected file must end in pyllama::Error; an accepted one must hand out only views that
// lie inside the input, which this target checks by touching the first and last byte of every
// string, array and tensor (AddressSanitizer reports a touch outside the input buffer).
#include <cstddef>
#include <cstdint>

#include "error.h"
#include "gguf.h"

namespace {

volatile uint8_t g_sink;

void touch(const void* p, uint64_t n) {
    if (n == 0) return;
    const uint8_t* b = static_cast<const uint8_t*>(p);
    g_sink = static_cast<uint8_t>(b[0] ^ b[n - 1]);
}

// Every getter on every key: each either returns a value or throws pyllama::Error.
void read_all_getters(const pyllama::GGUFFile& f, std::string_view key) {
    try { f.get_uint(key); } catch (const pyllama::Error&) {}
    try { f.get_u32(key); } catch (const pyllama::Error&) {}
    try { f.get_int(key); } catch (const pyllama::Error&) {}
    try { f.get_float(key); } catch (const pyllama::Error&) {}
    try { f.get_bool(key); } catch (const pyllama::Error&) {}
    try { f.get_string(key); } catch (const pyllama::Error&) {}
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const pyllama::GGUFFile f("fuzz.gguf", data, size);
        for (const auto& [key, v] : f.metadata()) {
            touch(v.record.data(), v.record.size());
            touch(v.str.data(), v.str.size());
            for (std::string_view s : v.strings) touch(s.data(), s.size());
            if (v.array_data) touch(v.array_data, v.array_len * pyllama::value_type_size(v.array_type));
            read_all_getters(f, key);
        }
        for (const pyllama::TensorInfo& t : f.tensors()) {
            touch(t.data, t.nbytes);
            if (f.find_tensor(t.name) != &t) __builtin_trap();
        }
    } catch (const pyllama::Error&) {
        // a clean rejection
    }
    return 0;
}
