// One inference sequence over a LlamaModel: its KV cache, thread pool and scratch buffers.
// eval() appends tokens to the sequence, processing them n_batch at a time as matrix-matrix work.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "attention.h"
#include "kv_cache.h"
#include "llama.h"
#include "ops.h"
#include "threadpool.h"

namespace pyllama {

class InferenceContext {
public:
    // Throws pyllama::Error for n_ctx outside [1, trained context], n_threads < 1, n_batch < 1,
    // or a KV cache type other than F16 and F32.
    InferenceContext(std::shared_ptr<const LlamaModel> model, int64_t n_ctx, int n_threads, int64_t n_batch,
                     GGMLType kv_type);

    const LlamaModel& model() const { return *model_; }
    int64_t n_ctx() const { return kv_.n_ctx(); }
    int64_t n_batch() const { return n_batch_; }
    int n_threads() const { return pool_.size(); }
    int64_t n_past() const { return kv_.n_past(); }
    GGMLType kv_type() const { return kv_.type(); }
    void truncate(int64_t n) { kv_.truncate(n); }
    uint64_t pool_regions() const { return pool_.regions_run(); }

    // Appends n tokens. Writes logits (n_vocab floats per row) for every new position when
    // all_logits, else only for the last one. Validates every id and the context room first.
    void eval(const int32_t* tokens, int64_t n, bool all_logits, float* logits);
    // Appends n tokens like eval(), writing instead the last hidden state (after the output norm,
    // the input of the output layer) of every new position: n_embd floats per row.
    void eval_hidden(const int32_t* tokens, int64_t n, float* hidden);
    KVCache& kv_cache() { return kv_; }

private:
    // Checks ids and room, then runs the tokens n_batch at a time; batch(done, m) runs one.
    template <class Batch>
    void run_batches(const int32_t* tokens, int64_t n, Batch&& batch);
    // One batch of at most n_batch tokens at positions n_past()...: logits rows for the
    // positions from `first_logit` on or, when `hidden` is given, every position's last hidden state.
    void forward_batch(const int32_t* tokens, int64_t n, int64_t first_logit, float* logits, float* hidden = nullptr);
    // For rows r in [first, n) of x: x[r] += add[r] (unless add is null), then
    // xn[r - first] = rms_norm(x[r]) * weight.
    void add_and_norm(const float* add, const float* weight, int64_t first, int64_t n);
    // Rotates the new queries and keys and stores the keys and values in the cache.
    void rope_and_store(int64_t layer, int64_t n, int64_t pos0);

    std::shared_ptr<const LlamaModel> model_;
    ThreadPool pool_;
    KVCache kv_;
    Attention attention_;
    int64_t n_batch_;

    // Scratch, sized for n_batch tokens.
    std::vector<float> x_;      // residual stream   [n_batch, n_embd]
    std::vector<float> xn_;     // normalized input  [n_batch, n_embd]
    std::vector<float> q_;      // queries           [n_batch, q_dim]
    std::vector<float> k_;      // new keys          [n_batch, kv_dim]
    std::vector<float> v_;      // new values        [n_batch, kv_dim]
    std::vector<float> attn_;   // attention output  [n_batch, q_dim]
    std::vector<float> proj_;   // projections back  [n_batch, n_embd]
    std::vector<float> gate_;   // FFN gate          [n_batch, n_ff]
    std::vector<float> up_;     // FFN up            [n_batch, n_ff]
    std::vector<float> rope_cos_, rope_sin_;   // [n_batch, n_rot/2]
    MatmulInput input_;
};

}  // namespace pyllama
