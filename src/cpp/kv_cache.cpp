#include "kv_cache.h"

#include <string>

#include "error.h"

namespace pyllama {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t kv_dim)
    : n_layer_(n_layer), n_ctx_(n_ctx), kv_dim_(kv_dim) {
    if (n_layer <= 0 || n_ctx <= 0 || kv_dim <= 0)
        throw Error("KV cache: invalid shape (layers " + std::to_string(n_layer) + ", context " +
                    std::to_string(n_ctx) + ", width " + std::to_string(kv_dim) + ")");
    const double bytes = 2.0 * static_cast<double>(n_layer) * n_ctx * kv_dim * sizeof(uint16_t);
    if (bytes > 0x1p46)  // 64 TiB: also keeps the element count below size_t overflow
        throw Error("KV cache of " + std::to_string(bytes / 0x1p30) + " GiB is too large; use a smaller n_ctx");
    const size_t count = static_cast<size_t>(n_layer * n_ctx * kv_dim);
    k_.reset(static_cast<uint16_t*>(std::calloc(count, sizeof(uint16_t))));
    v_.reset(static_cast<uint16_t*>(std::calloc(count, sizeof(uint16_t))));
    if (!k_ || !v_)
        throw Error("cannot allocate the KV cache: " + std::to_string(static_cast<int64_t>(bytes / (1 << 20))) +
                    " MiB for a context of " + std::to_string(n_ctx) + " tokens; use a smaller n_ctx");
}

void KVCache::truncate(int64_t n) {
    if (n < 0 || n > n_past_)
        throw Error("KV cache: cannot truncate to " + std::to_string(n) + " positions, it holds " +
                    std::to_string(n_past_));
    n_past_ = n;
}

}  // namespace pyllama
