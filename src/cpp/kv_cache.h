// Per-layer keys and values of the positions seen so far, stored as F16 (the default, as
// llama.cpp) or F32 (exact, for checking against a float reference).
//
// Laid out for attention (attention.h), which reads one key/value head at a time:
//   values: per (layer, head), one row of head_dim elements per position;
//   keys:   per (layer, head), blocks of kKeyBlock positions, each block dimension-major
//           ([head_dim][kKeyBlock]), so that SIMD code loads one dimension of kKeyBlock
//           consecutive keys at once and computes kKeyBlock scores without horizontal sums.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "quant/types.h"

namespace pyllama {

class KVCache {
public:
    static constexpr int64_t kKeyBlock = 16;

    // type is GGMLType::F16 or GGMLType::F32. Throws pyllama::Error for a bad shape or when the
    // cache cannot be allocated (the message gives its size).
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, GGMLType type);

    GGMLType type() const { return type_; }
    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_head_kv() const { return n_head_kv_; }
    int64_t head_dim() const { return head_dim_; }
    int64_t n_past() const { return n_past_; }
    // Positions [0, n) stay valid; later ones are forgotten (for reusing a shared prefix).
    void truncate(int64_t n);
    void advance(int64_t n) { n_past_ += n; }

    // The contents of positions [0, n) in the cache's own layout (for each (layer, head), the key
    // blocks covering them; then for each (layer, head), their value rows), to save a processed
    // prompt and load it back. load_state() throws pyllama::Error for n outside [1, n_ctx] and
    // leaves n_past() == n.
    size_t state_bytes(int64_t n) const;
    void save_state(int64_t n, unsigned char* out) const;
    void load_state(int64_t n, const unsigned char* in);

    // Writes the key and value rows (n_head_kv * head_dim floats each, head after head) of
    // (layer, position). Positions may be written in any order and from several threads at once.
    void store(int64_t layer, int64_t pos, const float* key, const float* value);

    // The keys of (layer, head): key block b (positions b*kKeyBlock ...) starts at element
    // b * head_dim * kKeyBlock, and dimension d of position p of the block is at d * kKeyBlock + p.
    // T is uint16_t (F16 bits) or float, as type().
    template <class T>
    const T* keys(int64_t layer, int64_t head) const { return reinterpret_cast<const T*>(k_.get() + offset(layer, head)); }
    // The values of (layer, head): position p's row of head_dim elements starts at p * head_dim.
    template <class T>
    const T* values(int64_t layer, int64_t head) const { return reinterpret_cast<const T*>(v_.get() + offset(layer, head)); }

private:
    size_t offset(int64_t layer, int64_t head) const {
        return static_cast<size_t>((layer * n_head_kv_ + head) * head_stride_) * elem_size_;
    }
    struct FreeDeleter {
        void operator()(unsigned char* p) const { std::free(p); }
    };
    GGMLType type_;
    size_t elem_size_;
    int64_t n_layer_, n_ctx_, n_head_kv_, head_dim_;
    int64_t head_stride_;  // elements per (layer, head): n_ctx rounded up to whole key blocks, times head_dim
    int64_t n_past_ = 0;
    // calloc: large zeroed blocks come straight from the OS, so memory is only committed
    // for the positions actually used.
    std::unique_ptr<unsigned char[], FreeDeleter> k_, v_;
};

}  // namespace pyllama
