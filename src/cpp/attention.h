// Causal grouped-query attention of a batch of new tokens over the KV cache, flash-attention
// style: scores for a tile of queries against a step of keys at a time, an online softmax, and
// the weighted values accumulated as the steps go, so that no row of n_ctx scores is ever stored
// and a batch of many tokens is matrix-matrix work.
//
// A task is one key/value head and a tile of consecutive tokens: the query heads that share that
// key/value head, for every token of the tile, are the rows of one matrix, so each cached key and
// value is read once per tile instead of once per query head and token. When there are too few
// tiles to keep every thread busy (generating one token, say), a tile's keys are also split into
// ranges whose partial results are merged afterwards. Threads take tasks most expensive first
// (later tokens see more keys), so they finish together.
#pragma once
#include <cstdint>
#include <vector>

#include "kv_cache.h"
#include "threadpool.h"

namespace pyllama {

class Attention {
public:
    // n_head query heads of head_dim, n_head_kv key/value heads (n_head a multiple of it), for
    // pools of up to n_threads threads; batches are usually at most max_tokens tokens (smaller
    // tiles for small batches). Throws pyllama::Error on a shape it cannot run.
    Attention(int64_t n_head, int64_t n_head_kv, int64_t head_dim, int64_t max_tokens, int n_threads);

    // The attention output of the n tokens at positions pos0 ... pos0 + n - 1,
    // whose keys and values the cache already holds for `layer`: q and out are n rows of
    // n_head * head_dim floats (head after head); token t attends to positions 0 ... pos0 + t.
    void run(ThreadPool& pool, const KVCache& kv, int64_t layer, const float* q, int64_t n, int64_t pos0, float* out);

private:
    struct Task {
        int64_t head;      // key/value head
        int64_t tile;      // tokens tile * tile_tokens_ ...
        int64_t k0, k1;    // the key positions it covers
        int64_t partial;   // slot of its partial result, or -1: it covers every key and writes `out`
        int64_t cost;      // rows x keys
    };
    struct Call;  // one run()'s arguments
    void plan(int64_t n, int64_t pos0, int n_threads);
    template <class T>
    void run_task(const Task& task, const Call& call, int thread);
    void merge_partials(const Call& call);
    int64_t scratch_per_thread() const;

    int64_t n_head_, n_head_kv_, head_dim_, group_;
    int64_t tile_tokens_;  // tokens per tile: group_ * tile_tokens_ query rows
    int64_t tile_rows_;
    std::vector<Task> tasks_;
    int64_t n_partials_ = 0;
    std::vector<float> scratch_;   // per thread: queries, scores, output [tile_rows_ x ...], m, l, corr
    std::vector<float> partials_;  // per slot: output [tile_rows_ x head_dim], m, l [tile_rows_]
    std::vector<const Task*> parts_;  // merge_partials' work lists
    std::vector<float> acc_;
};

}  // namespace pyllama
