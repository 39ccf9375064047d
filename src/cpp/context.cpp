#include "context.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#include "simd/kernels.h"

namespace pyllama {

namespace {

int64_t checked_n_ctx(const LlamaModel& model, int64_t n_ctx) {
    const int64_t trained = model.hparams().n_ctx_train;
    if (n_ctx < 1 || n_ctx > trained)
        throw Error("n_ctx " + std::to_string(n_ctx) + " is outside [1, " + std::to_string(trained) +
                    "], the model's trained context");
    return n_ctx;
}

// Rows per chunk of the row-wise parallel loops: about this many floats, so that a single token's
// row (or a few) runs on the caller without waking the pool.
constexpr int64_t kRowChunkFloats = 1 << 14;
int64_t rows_per_chunk(int64_t row_len) { return std::max<int64_t>(1, kRowChunkFloats / row_len); }

}  // namespace

InferenceContext::InferenceContext(std::shared_ptr<const LlamaModel> model, int64_t n_ctx, int n_threads,
                                   int64_t n_batch, GGMLType kv_type)
    : model_(std::move(model)),
      pool_(n_threads),
      kv_(model_->hparams().n_layer, checked_n_ctx(*model_, n_ctx), model_->hparams().n_head_kv,
          model_->hparams().head_dim, kv_type),
      attention_(model_->hparams().n_head, model_->hparams().n_head_kv, model_->hparams().head_dim,
                 std::max<int64_t>(1, std::min(n_batch, n_ctx)), n_threads),
      n_batch_(n_batch) {
    if (n_batch < 1) throw Error("n_batch must be at least 1, got " + std::to_string(n_batch));
    const LlamaHParams& hp = model_->hparams();
    n_batch_ = std::min(n_batch, n_ctx);
    const size_t nb = static_cast<size_t>(n_batch_);
    x_.resize(nb * hp.n_embd);
    xn_.resize(nb * hp.n_embd);
    q_.resize(nb * hp.q_dim());
    k_.resize(nb * hp.kv_dim());
    v_.resize(nb * hp.kv_dim());
    attn_.resize(nb * hp.q_dim());
    proj_.resize(nb * hp.n_embd);
    gate_.resize(nb * hp.n_ff);
    up_.resize(nb * hp.n_ff);
    rope_cos_.resize(nb * hp.n_rot / 2);
    rope_sin_.resize(nb * hp.n_rot / 2);
}

template <class Batch>
void InferenceContext::run_batches(const int32_t* tokens, int64_t n, Batch&& batch) {
    const LlamaHParams& hp = model_->hparams();
    if (n <= 0) throw Error("eval needs at least one token");
    if (n > n_ctx() - n_past())
        throw Error("context is full: " + std::to_string(n_past()) + " tokens held + " + std::to_string(n) +
                    " new > n_ctx " + std::to_string(n_ctx()));
    for (int64_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= hp.n_vocab)
            throw Error("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                        " is out of range [0, " + std::to_string(hp.n_vocab) + ")");
    const int64_t start = n_past();
    try {
        for (int64_t done = 0; done < n; done += n_batch_) batch(done, std::min(n_batch_, n - done));
    } catch (...) {
        kv_.truncate(start);  // leave the sequence as it was
        throw;
    }
}

void InferenceContext::eval(const int32_t* tokens, int64_t n, bool all_logits, float* logits) {
    const int64_t n_vocab = model_->hparams().n_vocab;
    run_batches(tokens, n, [&](int64_t done, int64_t m) {
        if (all_logits) {
            forward_batch(tokens + done, m, 0, logits + done * n_vocab);
        } else {
            // Only the sequence's last position needs logits.
            const bool last = done + m == n;
            forward_batch(tokens + done, m, last ? m - 1 : m, logits);
        }
    });
}

void InferenceContext::eval_hidden(const int32_t* tokens, int64_t n, float* hidden) {
    const int64_t d = model_->hparams().n_embd;
    run_batches(tokens, n, [&](int64_t done, int64_t m) { forward_batch(tokens + done, m, m, nullptr, hidden + done * d); });
}

void InferenceContext::forward_batch(const int32_t* tokens, int64_t n, int64_t first_logit, float* logits,
                                     float* hidden) {
    const LlamaModel& M = *model_;
    const LlamaHParams& hp = M.hparams();
    const int64_t pos0 = n_past();
    const int64_t d = hp.n_embd;

    for (int64_t t = 0; t < n; ++t) M.embed(tokens[t], &x_[t * d]);

    RopeParams rope;
    rope.n_rot = static_cast<int>(hp.n_rot);
    rope.freq_base = hp.rope_freq_base;
    rope.freq_scale = hp.rope_freq_scale;
    rope.freq_factors = M.rope_freqs.empty() ? nullptr : M.rope_freqs.data();
    const int64_t half = hp.n_rot / 2;
    for (int64_t t = 0; t < n; ++t) rope_table(rope, pos0 + t, &rope_cos_[t * half], &rope_sin_[t * half]);

    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const LlamaLayer& L = M.layers[il];

        // Attention block: x += Wo attention(rope(Wq xn), rope(Wk xn), Wv xn), xn = norm(x).
        // Each block's residual add (its output waits in proj_) is done by the next norm.
        add_and_norm(il == 0 ? nullptr : proj_.data(), L.attn_norm.data(), 0, n);
        input_.set(xn_.data(), n, d);
        matmul(pool_, {{&L.wq, q_.data()}, {&L.wk, k_.data()}, {&L.wv, v_.data()}}, input_);
        rope_and_store(il, n, pos0);
        attention_.run(pool_, kv_, il, q_.data(), n, pos0, attn_.data());
        input_.set(attn_.data(), n, hp.q_dim());
        matmul(pool_, L.wo, input_, proj_.data());

        // Feed-forward block: x += W_down (silu(W_gate xn) * W_up xn), xn = norm(x)
        add_and_norm(proj_.data(), L.ffn_norm.data(), 0, n);
        input_.set(xn_.data(), n, d);
        matmul(pool_, {{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, input_);
        const SimdKernels& kernels = simd_kernels();
        pool_.parallel_for(n * hp.n_ff, kRowChunkFloats, [&](int64_t begin, int64_t end) {
            kernels.silu_mul(&gate_[begin], &up_[begin], end - begin);
        });
        input_.set(gate_.data(), n, hp.n_ff);
        matmul(pool_, L.w_down, input_, proj_.data());
    }
    kv_.advance(n);

    if (hidden) {
        add_and_norm(proj_.data(), M.output_norm.data(), 0, n);
        std::copy(xn_.begin(), xn_.begin() + n * d, hidden);
        return;
    }
    const int64_t n_out = n - first_logit;
    if (n_out <= 0) return;
    add_and_norm(proj_.data(), M.output_norm.data(), first_logit, n);  // only the rows that need logits
    input_.set(xn_.data(), n_out, d);
    matmul(pool_, M.output, input_, logits);
}

void InferenceContext::add_and_norm(const float* add, const float* weight, int64_t first, int64_t n) {
    const int64_t d = model_->hparams().n_embd;
    const float eps = model_->hparams().rms_eps;
    pool_.parallel_for(n - first, rows_per_chunk(d), [&](int64_t begin, int64_t end) {
        float* x = &x_[(first + begin) * d];
        if (add)
            for (int64_t i = 0; i < (end - begin) * d; ++i) x[i] += add[(first + begin) * d + i];
        rms_norm(x, weight, &xn_[begin * d], end - begin, d, eps);
    });
}

void InferenceContext::rope_and_store(int64_t layer, int64_t n, int64_t pos0) {
    const LlamaHParams& hp = model_->hparams();
    const int64_t half = hp.n_rot / 2;
    const int64_t row = hp.q_dim() + 3 * hp.kv_dim();  // floats touched per token
    pool_.parallel_for(n, rows_per_chunk(row), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
            rope_apply(&q_[t * hp.q_dim()], static_cast<int>(hp.n_head), static_cast<int>(hp.head_dim),
                       static_cast<int>(hp.n_rot), &rope_cos_[t * half], &rope_sin_[t * half]);
            rope_apply(&k_[t * hp.kv_dim()], static_cast<int>(hp.n_head_kv), static_cast<int>(hp.head_dim),
                       static_cast<int>(hp.n_rot), &rope_cos_[t * half], &rope_sin_[t * half]);
            kv_.store(layer, pos0 + t, &k_[t * hp.kv_dim()], &v_[t * hp.kv_dim()]);
        }
    });
}

}  // namespace pyllama
