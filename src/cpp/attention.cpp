#include "attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "error.h"
#include "simd/kernels.h"

namespace pyllama {

namespace {

constexpr int64_t kBlock = KVCache::kKeyBlock;
// Keys per online-softmax step: the scores of a tile for one step stay in L1.
constexpr int64_t kStep = 64;
static_assert(kStep % kBlock == 0, "steps cover whole key blocks");
// Query rows per tile (at least one token's worth of query heads).
constexpr int64_t kTileRows = 64;
// When the tiles are too few, split their keys into ranges of at least this many, aiming at
// kTasksPerThread tasks per thread so that a thread slowed down by another process delays little.
constexpr int64_t kMinSplitKeys = 256;
constexpr int64_t kTasksPerThread = 8;
// Below this many multiply-adds (scores and values), the caller runs all tasks itself: waking
// the pool would cost more than it saves.
constexpr int64_t kMinParallelWork = 1 << 16;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

// A thread's scratch: queries, scores, output, then m, l and corr, for tile_rows_ rows.
int64_t Attention::scratch_per_thread() const { return tile_rows_ * (2 * head_dim_ + kStep + 3); }

struct Attention::Call {
    const KVCache* kv;
    int64_t layer;
    const float* q;
    int64_t n, pos0;
    float* out;
    const SimdKernels* kernels;
};

Attention::Attention(int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t max_tokens, int n_threads)
    : n_head_(n_head), n_head_kv_(n_head_kv), head_dim_(head_dim) {
    if (n_head <= 0 || n_head_kv <= 0 || head_dim <= 0 || n_head % n_head_kv != 0 || max_tokens <= 0 ||
        n_threads <= 0)
        throw Error("attention: invalid shape (" + std::to_string(n_head) + " query heads, " +
                    std::to_string(n_head_kv) + " key/value heads of " + std::to_string(head_dim) + ")");
    group_ = n_head / n_head_kv;
    tile_tokens_ = std::max<int64_t>(1, std::min(max_tokens, kTileRows / group_));
    tile_rows_ = group_ * tile_tokens_;
    scratch_.resize(static_cast<size_t>(scratch_per_thread() * n_threads));
}

void Attention::plan(int64_t n, int64_t pos0, int n_threads) {
    tasks_.clear();
    n_partials_ = 0;
    const int64_t n_tiles = ceil_div(n, tile_tokens_);
    const int64_t base_tasks = n_head_kv_ * n_tiles;
    const int64_t wanted = n_threads > 1 ? kTasksPerThread * n_threads : 1;
    for (int64_t tile = n_tiles - 1; tile >= 0; --tile) {
        const int64_t t0 = tile * tile_tokens_, t1 = std::min(n, t0 + tile_tokens_);
        const int64_t rows = (t1 - t0) * group_;
        const int64_t n_keys = pos0 + t1;
        int64_t splits = std::min(ceil_div(wanted, base_tasks), ceil_div(n_keys, kMinSplitKeys));
        const int64_t span = splits > 1 ? ceil_div(ceil_div(n_keys, splits), kStep) * kStep : n_keys;
        splits = ceil_div(n_keys, span);
        for (int64_t head = 0; head < n_head_kv_; ++head)
            for (int64_t s = 0; s < splits; ++s) {
                const int64_t k0 = s * span, k1 = std::min(n_keys, k0 + span);
                tasks_.push_back({head, tile, k0, k1, splits > 1 ? n_partials_++ : -1, rows * (k1 - k0)});
            }
    }
    std::stable_sort(tasks_.begin(), tasks_.end(), [](const Task& a, const Task& b) { return a.cost > b.cost; });
}

void Attention::run(ThreadPool& pool, const KVCache& kv, int64_t layer, const float* q, int64_t n, int64_t pos0,
                    float* out) {
    if (kv.n_head_kv() != n_head_kv_ || kv.head_dim() != head_dim_ ||
        scratch_.size() < static_cast<size_t>(pool.size() * scratch_per_thread()))
        throw Error("attention: cache or pool does not match the shapes it was set up for");
    if (n < 0 || pos0 < 0 || pos0 + n > kv.n_ctx())
        throw Error("attention: positions " + std::to_string(pos0) + " + " + std::to_string(n) +
                    " are outside the cache's " + std::to_string(kv.n_ctx()));
    if (n == 0) return;
    const Call call{&kv, layer, q, n, pos0, out, &simd_kernels()};
    plan(n, pos0, pool.size());
    partials_.resize(static_cast<size_t>(n_partials_ * tile_rows_ * (head_dim_ + 2)));

    int64_t work = 0;
    for (const Task& t : tasks_) work += t.cost;
    const auto task_fn = [&](int64_t i, int thread) {
        if (kv.type() == GGMLType::F16) run_task<uint16_t>(tasks_[i], call, thread);
        else run_task<float>(tasks_[i], call, thread);
    };
    const int64_t n_tasks = static_cast<int64_t>(tasks_.size());
    if (work * head_dim_ * 2 < kMinParallelWork) {
        for (int64_t i = 0; i < n_tasks; ++i) task_fn(i, 0);
    } else {
        pool.run_chunks(n_tasks, task_fn);
    }
    if (n_partials_ > 0) merge_partials(call);
}

template <class T>
void Attention::run_task(const Task& task, const Call& call, int thread) {
    const SimdKernels& K = *call.kernels;
    const int64_t hd = head_dim_, q_dim = n_head_ * hd;
    const int64_t t0 = task.tile * tile_tokens_, t1 = std::min(call.n, t0 + tile_tokens_);
    const int64_t rows = (t1 - t0) * group_;

    float* qt = &scratch_[static_cast<size_t>(thread * scratch_per_thread())];
    float* s = qt + tile_rows_ * hd;
    float* o = s + tile_rows_ * kStep;
    float* m = o + tile_rows_ * hd;
    float* l = m + tile_rows_;
    float* corr = l + tile_rows_;

    // Row r is query head head * group_ + r % group_ of token t0 + r / group_.
    for (int64_t t = t0; t < t1; ++t) {
        const float* src = call.q + t * q_dim + task.head * group_ * hd;
        std::copy(src, src + group_ * hd, qt + (t - t0) * group_ * hd);
    }
    std::fill(o, o + rows * hd, 0.0f);
    std::fill(m, m + rows, -INFINITY);
    std::fill(l, l + rows, 0.0f);

    const T* keys = call.kv->keys<T>(call.layer, task.head);
    const T* values = call.kv->values<T>(call.layer, task.head);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int64_t last_key = call.pos0 + t1 - 1;  // the last row's last visible key
    for (int64_t k0 = task.k0; k0 < task.k1; k0 += kStep) {
        const int64_t k1 = std::min(task.k1, k0 + kStep);
        const int64_t n_blocks = ceil_div(k1 - k0, kBlock);
        if constexpr (std::is_same<T, uint16_t>::value)
            K.scores_f16(qt, rows, hd, keys + k0 * hd, n_blocks, s, kStep);
        else
            K.scores_f32(qt, rows, hd, keys + k0 * hd, n_blocks, s, kStep);
        // Causal mask, and the keys of a partial last block that lie past the range.
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t visible = std::min(call.pos0 + t0 + r / group_ + 1, k1) - k0;
            for (int64_t j = std::max<int64_t>(visible, 0); j < n_blocks * kBlock; ++j) s[r * kStep + j] = -INFINITY;
        }
        K.softmax_step(s, rows, n_blocks * kBlock, kStep, scale, m, l, corr);
        const int64_t n_keys = std::min(k1, last_key + 1) - k0;
        if constexpr (std::is_same<T, uint16_t>::value)
            K.accumulate_f16(s, rows, n_keys, kStep, values + k0 * hd, hd, corr, o);
        else
            K.accumulate_f32(s, rows, n_keys, kStep, values + k0 * hd, hd, corr, o);
    }

    if (task.partial < 0) {
        for (int64_t r = 0; r < rows; ++r) {
            float* dst = call.out + (t0 + r / group_) * q_dim + (task.head * group_ + r % group_) * hd;
            const float inv = 1.0f / l[r];
            for (int64_t d = 0; d < hd; ++d) dst[d] = o[r * hd + d] * inv;
        }
    } else {
        float* slot = &partials_[static_cast<size_t>(task.partial * tile_rows_ * (hd + 2))];
        std::copy(o, o + rows * hd, slot);
        std::copy(m, m + rows, slot + tile_rows_ * hd);
        std::copy(l, l + rows, slot + tile_rows_ * hd + tile_rows_);
    }
}

// Each (head, tile) split into key ranges: out = sum_i e^(m_i - M) o_i / sum_i e^(m_i - M) l_i,
// M the largest m_i (a range with no visible key has m_i = -inf, l_i = 0, o_i = 0).
void Attention::merge_partials(const Call& call) {
    const int64_t hd = head_dim_, q_dim = n_head_ * hd;
    std::vector<const Task*>& parts = parts_;
    parts.clear();
    for (const Task& t : tasks_)
        if (t.partial >= 0) parts.push_back(&t);
    std::sort(parts.begin(), parts.end(), [](const Task* a, const Task* b) {
        return a->tile != b->tile ? a->tile < b->tile : a->head != b->head ? a->head < b->head : a->k0 < b->k0;
    });
    acc_.resize(hd);
    for (size_t i = 0; i < parts.size();) {
        size_t end = i;
        while (end < parts.size() && parts[end]->tile == parts[i]->tile && parts[end]->head == parts[i]->head) ++end;
        const int64_t t0 = parts[i]->tile * tile_tokens_, t1 = std::min(call.n, t0 + tile_tokens_);
        for (int64_t r = 0; r < (t1 - t0) * group_; ++r) {
            const auto slot_of = [&](size_t p) {
                return &partials_[static_cast<size_t>(parts[p]->partial * tile_rows_ * (hd + 2))];
            };
            float max_m = -INFINITY;
            for (size_t p = i; p < end; ++p) max_m = std::max(max_m, slot_of(p)[tile_rows_ * hd + r]);
            std::fill(acc_.begin(), acc_.end(), 0.0f);
            float sum = 0.0f;
            for (size_t p = i; p < end; ++p) {
                const float* slot = slot_of(p);
                const float mi = slot[tile_rows_ * hd + r], li = slot[tile_rows_ * hd + tile_rows_ + r];
                if (li == 0.0f) continue;
                const float w = std::exp(mi - max_m);
                sum += w * li;
                for (int64_t d = 0; d < hd; ++d) acc_[d] += w * slot[r * hd + d];
            }
            float* dst = call.out + (t0 + r / group_) * q_dim + (parts[i]->head * group_ + r % group_) * hd;
            for (int64_t d = 0; d < hd; ++d) dst[d] = acc_[d] / sum;
        }
        i = end;
    }
}

}  // namespace pyllama
