// Per-layer keys and values of the positions seen so far, stored as F16 (the default, as
// llama.cpp) or F32 (exact, for checking against a float reference).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "quant/types.h"

namespace pyllama {

class KVCache {
public:
    // type is GGMLType::F16 or GGMLType::F32. Throws pyllama::Error when the cache cannot be
    // allocated (the message gives its size).
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t kv_dim, GGMLType type);

    GGMLType type() const { return type_; }
    int64_t n_ctx() const { return n_ctx_; }
    int64_t kv_dim() const { return kv_dim_; }
    int64_t n_past() const { return n_past_; }
    // Positions [0, n) stay valid; later ones are forgotten (for reusing a shared prefix).
    void truncate(int64_t n);
    void advance(int64_t n) { n_past_ += n; }

    // Writes the key and value rows (kv_dim floats each) of (layer, position).
    void store(int64_t layer, int64_t pos, const float* key, const float* value);

    // Row of kv_dim elements for (layer, position); T is uint16_t (F16 bits) or float.
    template <class T>
    const T* k(int64_t layer, int64_t pos) const { return reinterpret_cast<const T*>(k_.get() + offset(layer, pos)); }
    template <class T>
    const T* v(int64_t layer, int64_t pos) const { return reinterpret_cast<const T*>(v_.get() + offset(layer, pos)); }

private:
    size_t offset(int64_t layer, int64_t pos) const {
        return static_cast<size_t>((layer * n_ctx_ + pos) * kv_dim_) * elem_size_;
    }
    struct FreeDeleter {
        void operator()(unsigned char* p) const { std::free(p); }
    };
    GGMLType type_;
    size_t elem_size_;
    int64_t n_layer_, n_ctx_, kv_dim_;
    int64_t n_past_ = 0;
    // calloc: large zeroed blocks come straight from the OS, so memory is only committed
    // for the positions actually used.
    std::unique_ptr<unsigned char[], FreeDeleter> k_, v_;
};

}  // namespace pyllama
