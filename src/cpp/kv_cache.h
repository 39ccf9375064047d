// Per-layer keys and values of the positions seen so far, stored as F16.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace pyllama {

class KVCache {
public:
    // Throws pyllama::Error when the cache cannot be allocated (the message gives its size).
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t kv_dim);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t kv_dim() const { return kv_dim_; }
    int64_t n_past() const { return n_past_; }
    // Positions [0, n) stay valid; later ones are forgotten (for reusing a shared prefix).
    void truncate(int64_t n);
    void advance(int64_t n) { n_past_ += n; }

    // Row of kv_dim halves for (layer, position).
    uint16_t* k(int64_t layer, int64_t pos) { return k_.get() + (layer * n_ctx_ + pos) * kv_dim_; }
    uint16_t* v(int64_t layer, int64_t pos) { return v_.get() + (layer * n_ctx_ + pos) * kv_dim_; }

private:
    struct FreeDeleter {
        void operator()(uint16_t* p) const { std::free(p); }
    };
    int64_t n_layer_, n_ctx_, kv_dim_;
    int64_t n_past_ = 0;
    // calloc: large zeroed blocks come straight from the OS, so memory is only committed
    // for the positions actually used.
    std::unique_ptr<uint16_t[], FreeDeleter> k_, v_;
};

}  // namespace pyllama
