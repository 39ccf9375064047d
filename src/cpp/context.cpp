#include "context.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>

#include "error.h"
#include "quant/float16.h"

namespace pyllama {

namespace {

// fp16 -> fp32 by table: the attention loops read every cached key and value once per query.
const float* fp16_table() {
    static const std::vector<float> table = [] {
        std::vector<float> t(65536);
        for (uint32_t h = 0; h < 65536; ++h) t[h] = fp16_to_fp32(static_cast<uint16_t>(h));
        return t;
    }();
    return table.data();
}

// Reads one cached element as float.
template <class T>
struct CacheReader;
template <>
struct CacheReader<float> {
    float operator()(float x) const { return x; }
};
template <>
struct CacheReader<uint16_t> {
    const float* table = fp16_table();
    float operator()(uint16_t h) const { return table[h]; }
};

int64_t checked_n_ctx(const LlamaModel& model, int64_t n_ctx) {
    const int64_t trained = model.hparams().n_ctx_train;
    if (n_ctx < 1 || n_ctx > trained)
        throw Error("n_ctx " + std::to_string(n_ctx) + " is outside [1, " + std::to_string(trained) +
                    "], the model's trained context");
    return n_ctx;
}

void add_into(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

InferenceContext::InferenceContext(std::shared_ptr<const LlamaModel> model, int64_t n_ctx, int n_threads,
                                   int64_t n_batch, GGMLType kv_type)
    : model_(std::move(model)),
      pool_(n_threads),
      kv_(model_->hparams().n_layer, checked_n_ctx(*model_, n_ctx), model_->hparams().kv_dim(), kv_type),
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
    scores_.resize(static_cast<size_t>(n_threads) * n_ctx);
}

void InferenceContext::eval(const int32_t* tokens, int64_t n, bool all_logits, float* logits) {
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
        for (int64_t done = 0; done < n; done += n_batch_) {
            const int64_t m = std::min(n_batch_, n - done);
            if (all_logits) {
                forward_batch(tokens + done, m, 0, logits + done * hp.n_vocab);
            } else {
                // Only the sequence's last position needs logits.
                const bool last = done + m == n;
                forward_batch(tokens + done, m, last ? m - 1 : m, logits);
            }
        }
    } catch (...) {
        kv_.truncate(start);  // leave the sequence as it was
        throw;
    }
}

void InferenceContext::forward_batch(const int32_t* tokens, int64_t n, int64_t first_logit, float* logits) {
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

        // Attention block: x += Wo * attention(rope(Wq xn), rope(Wk xn), Wv xn)
        rms_norm(x_.data(), L.attn_norm.data(), xn_.data(), n, d, hp.rms_eps);
        input_.set(xn_.data(), n, d);
        matmul(pool_, {{&L.wq, q_.data()}, {&L.wk, k_.data()}, {&L.wv, v_.data()}}, input_);
        for (int64_t t = 0; t < n; ++t) {
            rope_apply(&q_[t * hp.q_dim()], static_cast<int>(hp.n_head), static_cast<int>(hp.head_dim),
                       rope.n_rot, &rope_cos_[t * half], &rope_sin_[t * half]);
            rope_apply(&k_[t * hp.kv_dim()], static_cast<int>(hp.n_head_kv), static_cast<int>(hp.head_dim),
                       rope.n_rot, &rope_cos_[t * half], &rope_sin_[t * half]);
            kv_.store(il, pos0 + t, &k_[t * hp.kv_dim()], &v_[t * hp.kv_dim()]);
        }
        attention(il, n, pos0);
        input_.set(attn_.data(), n, hp.q_dim());
        matmul(pool_, L.wo, input_, proj_.data());
        add_into(x_.data(), proj_.data(), n * d);

        // Feed-forward block: x += W_down (silu(W_gate xn) * W_up xn)
        rms_norm(x_.data(), L.ffn_norm.data(), xn_.data(), n, d, hp.rms_eps);
        input_.set(xn_.data(), n, d);
        matmul(pool_, {{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, input_);
        silu_mul(gate_.data(), up_.data(), n * hp.n_ff);
        input_.set(gate_.data(), n, hp.n_ff);
        matmul(pool_, L.w_down, input_, proj_.data());
        add_into(x_.data(), proj_.data(), n * d);
    }
    kv_.advance(n);

    const int64_t n_out = n - first_logit;
    if (n_out <= 0) return;
    rms_norm(&x_[first_logit * d], M.output_norm.data(), xn_.data(), n_out, d, hp.rms_eps);
    input_.set(xn_.data(), n_out, d);
    matmul(pool_, M.output, input_, logits);
}

void InferenceContext::attention(int64_t layer, int64_t n, int64_t pos0) {
    if (kv_.type() == GGMLType::F16) attend<uint16_t>(layer, n, pos0);
    else attend<float>(layer, n, pos0);
}

template <class T>
void InferenceContext::attend(int64_t layer, int64_t n, int64_t pos0) {
    const LlamaHParams& hp = model_->hparams();
    const int64_t hd = hp.head_dim;
    const int64_t group = hp.n_head / hp.n_head_kv;  // query heads sharing one key/value head
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const CacheReader<T> load;
    const int64_t n_ctx = kv_.n_ctx();

    std::atomic<int64_t> next_task{0};
    pool_.run([&](int ith, int) {
        float* scores = &scores_[static_cast<size_t>(ith) * n_ctx];
        for (int64_t task; (task = next_task.fetch_add(1, std::memory_order_relaxed)) < n * hp.n_head;) {
            const int64_t t = task / hp.n_head, h = task % hp.n_head;
            const int64_t kv_off = (h / group) * hd;
            const float* q = &q_[t * hp.q_dim() + h * hd];
            const int64_t n_keys = pos0 + t + 1;  // causal: this token and all before it
            for (int64_t j = 0; j < n_keys; ++j) {
                const T* k = kv_.k<T>(layer, j) + kv_off;
                float dot = 0.0f;
                for (int64_t i = 0; i < hd; ++i) dot += q[i] * load(k[i]);
                scores[j] = dot * scale;
            }
            softmax(scores, n_keys);
            float* out = &attn_[t * hp.q_dim() + h * hd];
            std::fill(out, out + hd, 0.0f);
            for (int64_t j = 0; j < n_keys; ++j) {
                const T* v = kv_.v<T>(layer, j) + kv_off;
                const float p = scores[j];
                for (int64_t i = 0; i < hd; ++i) out[i] += p * load(v[i]);
            }
        }
    });
}

}  // namespace pyllama
