#include "kv_cache.h"

#include <cstring>
#include <string>

#include "error.h"
#include "quant/float16.h"

namespace pyllama {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, GGMLType type)
    : type_(type), n_layer_(n_layer), n_ctx_(n_ctx), n_head_kv_(n_head_kv), head_dim_(head_dim) {
    if (type != GGMLType::F16 && type != GGMLType::F32)
        throw Error(std::string("KV cache type must be F16 or F32, got ") + type_name(type));
    elem_size_ = type == GGMLType::F16 ? 2 : 4;
    if (n_layer <= 0 || n_ctx <= 0 || n_head_kv <= 0 || head_dim <= 0)
        throw Error("KV cache: invalid shape (layers " + std::to_string(n_layer) + ", context " +
                    std::to_string(n_ctx) + ", heads " + std::to_string(n_head_kv) + " of " +
                    std::to_string(head_dim) + ")");
    const double padded_ctx = static_cast<double>((n_ctx + kKeyBlock - 1) / kKeyBlock * kKeyBlock);
    const double bytes = 2.0 * static_cast<double>(n_layer) * n_head_kv * head_dim * padded_ctx * elem_size_;
    if (bytes > 0x1p46)  // 64 TiB: also keeps the element count below size_t overflow
        throw Error("KV cache of " + std::to_string(bytes / 0x1p30) + " GiB is too large; use a smaller n_ctx");
    head_stride_ = (n_ctx + kKeyBlock - 1) / kKeyBlock * kKeyBlock * head_dim;
    const size_t count = static_cast<size_t>(n_layer * n_head_kv * head_stride_);
    k_.reset(static_cast<unsigned char*>(std::calloc(count, elem_size_)));
    v_.reset(static_cast<unsigned char*>(std::calloc(count, elem_size_)));
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

namespace {

// Bytes of one (layer, head)'s keys and values for positions [0, n): keys come in whole blocks.
struct StateSizes {
    size_t keys, values;
};
StateSizes state_sizes(int64_t n, int64_t head_dim, size_t elem) {
    const int64_t blocks = (n + KVCache::kKeyBlock - 1) / KVCache::kKeyBlock;
    return {static_cast<size_t>(blocks * KVCache::kKeyBlock * head_dim) * elem, static_cast<size_t>(n * head_dim) * elem};
}

}  // namespace

size_t KVCache::state_bytes(int64_t n) const {
    const StateSizes s = state_sizes(n, head_dim_, elem_size_);
    return static_cast<size_t>(n_layer_ * n_head_kv_) * (s.keys + s.values);
}

void KVCache::save_state(int64_t n, unsigned char* out) const {
    if (n < 0 || n > n_past_)
        throw Error("KV cache: cannot save " + std::to_string(n) + " positions, it holds " + std::to_string(n_past_));
    const StateSizes s = state_sizes(n, head_dim_, elem_size_);
    for (int64_t lh = 0; lh < n_layer_ * n_head_kv_; ++lh, out += s.keys) std::memcpy(out, k_.get() + offset(0, lh), s.keys);
    for (int64_t lh = 0; lh < n_layer_ * n_head_kv_; ++lh, out += s.values) std::memcpy(out, v_.get() + offset(0, lh), s.values);
}

void KVCache::load_state(int64_t n, const unsigned char* in) {
    if (n < 1 || n > n_ctx_)
        throw Error("KV cache: a state of " + std::to_string(n) + " positions does not fit n_ctx " + std::to_string(n_ctx_));
    const StateSizes s = state_sizes(n, head_dim_, elem_size_);
    for (int64_t lh = 0; lh < n_layer_ * n_head_kv_; ++lh, in += s.keys) std::memcpy(k_.get() + offset(0, lh), in, s.keys);
    for (int64_t lh = 0; lh < n_layer_ * n_head_kv_; ++lh, in += s.values) std::memcpy(v_.get() + offset(0, lh), in, s.values);
    n_past_ = n;
}

namespace {

// Element type T of the cache from a float.
template <class T>
T to_cache(float x);
template <>
float to_cache<float>(float x) { return x; }
template <>
uint16_t to_cache<uint16_t>(float x) { return fp32_to_fp16(x); }

template <class T>
void store_rows(T* k, T* v, int64_t n_head, int64_t head_stride, int64_t head_dim, int64_t pos,
                const float* key, const float* value) {
    const int64_t block = pos / KVCache::kKeyBlock, lane = pos % KVCache::kKeyBlock;
    for (int64_t h = 0; h < n_head; ++h) {
        T* kb = k + h * head_stride + block * head_dim * KVCache::kKeyBlock + lane;
        T* vr = v + h * head_stride + pos * head_dim;
        const float* kh = key + h * head_dim;
        const float* vh = value + h * head_dim;
        for (int64_t d = 0; d < head_dim; ++d) {
            kb[d * KVCache::kKeyBlock] = to_cache<T>(kh[d]);
            vr[d] = to_cache<T>(vh[d]);
        }
    }
}

}  // namespace

void KVCache::store(int64_t layer, int64_t pos, const float* key, const float* value) {
    const size_t base = offset(layer, 0);
    if (type_ == GGMLType::F32)
        store_rows(reinterpret_cast<float*>(k_.get() + base), reinterpret_cast<float*>(v_.get() + base), n_head_kv_,
                   head_stride_, head_dim_, pos, key, value);
    else
        store_rows(reinterpret_cast<uint16_t*>(k_.get() + base), reinterpret_cast<uint16_t*>(v_.get() + base),
                   n_head_kv_, head_stride_, head_dim_, pos, key, value);
}

}  // namespace pyllama
