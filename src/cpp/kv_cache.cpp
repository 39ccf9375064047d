#include "kv_cache.h"

#include <cstring>
#include <string>

#include "error.h"
#include "quant/float16.h"

namespace pyllama {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t kv_dim, GGMLType type)
    : type_(type), n_layer_(n_layer), n_ctx_(n_ctx), kv_dim_(kv_dim) {
    if (type != GGMLType::F16 && type != GGMLType::F32)
        throw Error(std::string("KV cache type must be F16 or F32, got ") + type_name(type));
    elem_size_ = type == GGMLType::F16 ? 2 : 4;
    if (n_layer <= 0 || n_ctx <= 0 || kv_dim <= 0)
        throw Error("KV cache: invalid shape (layers " + std::to_string(n_layer) + ", context " +
                    std::to_string(n_ctx) + ", width " + std::to_string(kv_dim) + ")");
    const double bytes = 2.0 * static_cast<double>(n_layer) * n_ctx * kv_dim * elem_size_;
    if (bytes > 0x1p46)  // 64 TiB: also keeps the element count below size_t overflow
        throw Error("KV cache of " + std::to_string(bytes / 0x1p30) + " GiB is too large; use a smaller n_ctx");
    const size_t count = static_cast<size_t>(n_layer * n_ctx * kv_dim);
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

void KVCache::store(int64_t layer, int64_t pos, const float* key, const float* value) {
    unsigned char* kd = k_.get() + offset(layer, pos);
    unsigned char* vd = v_.get() + offset(layer, pos);
    if (type_ == GGMLType::F32) {
        std::memcpy(kd, key, kv_dim_ * sizeof(float));
        std::memcpy(vd, value, kv_dim_ * sizeof(float));
        return;
    }
    uint16_t* kh = reinterpret_cast<uint16_t*>(kd);
    uint16_t* vh = reinterpret_cast<uint16_t*>(vd);
    for (int64_t j = 0; j < kv_dim_; ++j) {
        kh[j] = fp32_to_fp16(key[j]);
        vh[j] = fp32_to_fp16(value[j]);
    }
}

}  // namespace pyllama
