#include "llama.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <thread>

#include "error.h"
#include "mapped_file.h"
#include "quant/quant.h"
#include "quant/repack.h"
#include "threadpool.h"

namespace pyllama {

namespace {

std::string where(const GGUFFile& f) { return f.path() + ": "; }

// Every size read from metadata, and every product of two of them the model computes before the
// tensors confirm it (the attention widths n_head * head_dim), stays below 2^40, so no int64
// arithmetic on them can overflow.
constexpr int64_t kMaxSize = int64_t(1) << 40;
// The tensors every block has of its own (blk.<i>.<name>).
constexpr const char* kLayerTensors[] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight",
                                         "attn_v.weight", "attn_output.weight", "ffn_norm.weight",
                                         "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};

int64_t require_uint(const GGUFFile& f, const std::string& key) {
    auto v = f.get_uint(key);
    if (!v) throw Error(where(f) + "missing metadata key '" + key + "'");
    if (*v > uint64_t(kMaxSize)) throw Error(where(f) + "metadata '" + key + "' = " + std::to_string(*v) + " is out of range");
    return static_cast<int64_t>(*v);
}

int64_t optional_uint(const GGUFFile& f, const std::string& key, int64_t fallback) {
    return f.get_uint(key) ? require_uint(f, key) : fallback;
}

float optional_float(const GGUFFile& f, const std::string& key, float fallback) {
    auto v = f.get_float(key);
    if (!v) return fallback;
    if (!std::isfinite(*v)) throw Error(where(f) + "metadata '" + key + "' is not a finite number");
    return static_cast<float>(*v);
}

const TensorInfo& require_tensor(const GGUFFile& f, const std::string& name) {
    const TensorInfo* t = f.find_tensor(name);
    if (!t) throw Error(where(f) + "missing tensor '" + name + "'");
    const TypeTraits* tt = type_traits(t->type);
    if (!tt->can_compute)
        throw Error(where(f) + "tensor '" + name + "' has type " + tt->name + ", which pyllama cannot compute");
    return *t;
}

void check_shape(const GGUFFile& f, const TensorInfo& t, int64_t ne0, int64_t ne1) {
    const bool ok = t.ne[0] == ne0 && t.ne[1] == ne1 && t.ne[2] == 1 && t.ne[3] == 1;
    if (!ok)
        throw Error(where(f) + "tensor '" + t.name + "' has shape " + t.shape_string() + ", expected [" +
                    std::to_string(ne0) + (ne1 == 1 ? "" : ", " + std::to_string(ne1)) + "]");
}

WeightMatrix load_matrix(const GGUFFile& f, const std::string& name, int64_t n_in, int64_t n_out) {
    const TensorInfo& t = require_tensor(f, name);
    check_shape(f, t, n_in, n_out);
    matmul_kernel(t.type);  // throws when no kernel can multiply this type
    WeightMatrix w;
    w.type = t.type;
    w.n_in = n_in;
    w.n_out = n_out;
    w.data = t.data;
    w.row_bytes = row_size(t.type, n_in);
    return w;
}

std::vector<float> load_vector(const GGUFFile& f, const std::string& name, int64_t n) {
    const TensorInfo& t = require_tensor(f, name);
    check_shape(f, t, n, 1);
    std::vector<float> v(n);
    dequantize_row(t.type, t.data, v.data(), n);
    return v;
}

LlamaHParams read_hparams(const GGUFFile& f) {
    auto arch = f.get_string("general.architecture");
    if (!arch) throw Error(where(f) + "missing metadata key 'general.architecture'");
    if (*arch != "llama")
        throw Error(where(f) + "unsupported architecture '" + *arch + "' (pyllama runs 'llama')");
    if (optional_uint(f, "llama.expert_count", 0) > 0)
        throw Error(where(f) + "mixture-of-experts llama models (llama.expert_count > 0) are not supported");

    LlamaHParams hp;
    hp.n_ctx_train = require_uint(f, "llama.context_length");
    hp.n_embd = require_uint(f, "llama.embedding_length");
    hp.n_layer = require_uint(f, "llama.block_count");
    hp.n_ff = require_uint(f, "llama.feed_forward_length");
    hp.n_head = require_uint(f, "llama.attention.head_count");
    hp.n_head_kv = optional_uint(f, "llama.attention.head_count_kv", hp.n_head);
    if (hp.n_ctx_train <= 0 || hp.n_embd <= 0 || hp.n_layer <= 0 || hp.n_ff <= 0 || hp.n_head <= 0 ||
        hp.n_head_kv <= 0)
        throw Error(where(f) + "context length, embedding length, block count, feed-forward length and "
                               "head counts must all be positive");
    if (hp.n_head % hp.n_head_kv != 0)
        throw Error(where(f) + "llama.attention.head_count (" + std::to_string(hp.n_head) +
                    ") is not a multiple of llama.attention.head_count_kv (" + std::to_string(hp.n_head_kv) + ")");
    hp.head_dim = optional_uint(f, "llama.attention.key_length", hp.n_embd / hp.n_head);
    const int64_t v_dim = optional_uint(f, "llama.attention.value_length", hp.head_dim);
    if (v_dim != hp.head_dim)
        throw Error(where(f) + "llama.attention.value_length (" + std::to_string(v_dim) +
                    ") differs from key_length (" + std::to_string(hp.head_dim) + "); not supported");
    if (hp.head_dim <= 0 || hp.head_dim % 2 != 0)
        throw Error(where(f) + "attention head size " + std::to_string(hp.head_dim) + " must be positive and even");
    if (hp.head_dim > kMaxSize / hp.n_head)
        throw Error(where(f) + "attention width head_count * head size (" + std::to_string(hp.n_head) + " * " +
                    std::to_string(hp.head_dim) + ") is out of range");
    hp.n_rot = optional_uint(f, "llama.rope.dimension_count", hp.head_dim);
    if (hp.n_rot <= 0 || hp.n_rot % 2 != 0 || hp.n_rot > hp.head_dim)
        throw Error(where(f) + "llama.rope.dimension_count (" + std::to_string(hp.n_rot) +
                    ") must be even and at most the head size (" + std::to_string(hp.head_dim) + ")");
    hp.rms_eps = optional_float(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (!(hp.rms_eps > 0.0f)) throw Error(where(f) + "llama.attention.layer_norm_rms_epsilon must be positive");
    hp.rope_freq_base = optional_float(f, "llama.rope.freq_base", 10000.0f);
    if (!(hp.rope_freq_base > 0.0f)) throw Error(where(f) + "llama.rope.freq_base must be positive");

    // RoPE scaling as llama.cpp reads it: an absent type means linear; the factor comes from
    // rope.scaling.factor or the older rope.scale_linear; 0 means none; type "none" never scales.
    const std::string scaling = f.get_string("llama.rope.scaling.type").value_or("linear");
    float factor = 1.0f;
    if (scaling == "linear") {
        factor = optional_float(f, "llama.rope.scaling.factor", optional_float(f, "llama.rope.scale_linear", 0.0f));
        if (factor == 0.0f) factor = 1.0f;
    } else if (scaling != "none") {
        throw Error(where(f) + "RoPE scaling type '" + scaling + "' is not supported (only linear)");
    }
    if (!(factor > 0.0f)) throw Error(where(f) + "RoPE scaling factor must be positive");
    hp.rope_freq_scale = 1.0f / factor;
    return hp;
}

}  // namespace

LlamaModel::LlamaModel(std::shared_ptr<const GGUFFile> file, bool repack) : file_(std::move(file)) {
    const GGUFFile& f = *file_;
    hp_ = read_hparams(f);

    const TensorInfo& emb = require_tensor(f, "token_embd.weight");
    hp_.n_vocab = emb.ne[1];
    if (hp_.n_vocab <= 0 || hp_.n_vocab > std::numeric_limits<int32_t>::max())
        throw Error(where(f) + "token_embd.weight has " + std::to_string(hp_.n_vocab) +
                    " rows; the vocabulary size must be in [1, 2^31) (token ids are int32)");
    tok_embd = load_matrix(f, "token_embd.weight", hp_.n_embd, hp_.n_vocab);
    if (auto declared = f.get_uint("llama.vocab_size"); declared && static_cast<int64_t>(*declared) != hp_.n_vocab)
        throw Error(where(f) + "llama.vocab_size (" + std::to_string(*declared) +
                    ") disagrees with token_embd.weight's " + std::to_string(hp_.n_vocab) + " rows");
    output_norm = load_vector(f, "output_norm.weight", hp_.n_embd);
    // No output.weight: the output projection is tied to the token embedding.
    output = f.find_tensor("output.weight") ? load_matrix(f, "output.weight", hp_.n_embd, hp_.n_vocab) : tok_embd;
    if (f.find_tensor("rope_freqs.weight")) rope_freqs = load_vector(f, "rope_freqs.weight", hp_.n_rot / 2);

    // block_count comes from the file. Before anything is allocated per block, a count the tensor
    // table cannot back fails naming the first missing tensor: tensor names are unique, so blocks
    // 0..max_blocks need more tensors than the file has and one of them must be missing.
    const int64_t max_blocks = static_cast<int64_t>(f.tensors().size() / std::size(kLayerTensors));
    if (hp_.n_layer > max_blocks)
        for (int64_t i = 0; i <= max_blocks; ++i)
            for (const char* name : kLayerTensors) require_tensor(f, "blk." + std::to_string(i) + "." + name);
    layers.resize(hp_.n_layer);
    for (int64_t i = 0; i < hp_.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LlamaLayer& L = layers[i];
        L.attn_norm = load_vector(f, p + "attn_norm.weight", hp_.n_embd);
        L.wq = load_matrix(f, p + "attn_q.weight", hp_.n_embd, hp_.q_dim());
        L.wk = load_matrix(f, p + "attn_k.weight", hp_.n_embd, hp_.kv_dim());
        L.wv = load_matrix(f, p + "attn_v.weight", hp_.n_embd, hp_.kv_dim());
        L.wo = load_matrix(f, p + "attn_output.weight", hp_.q_dim(), hp_.n_embd);
        L.ffn_norm = load_vector(f, p + "ffn_norm.weight", hp_.n_embd);
        L.w_gate = load_matrix(f, p + "ffn_gate.weight", hp_.n_embd, hp_.n_ff);
        L.w_up = load_matrix(f, p + "ffn_up.weight", hp_.n_embd, hp_.n_ff);
        L.w_down = load_matrix(f, p + "ffn_down.weight", hp_.n_ff, hp_.n_embd);
    }
    if (repack) repack_matrices();
}

void LlamaModel::repack_matrices() {
    ThreadPool pool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    auto repack = [&](WeightMatrix& w) {
        if (!worth_repacking(w)) return;
        repack_weights(pool, w);
        // embed() keeps reading the token embedding's rows from the file when the output is tied to it.
        if (w.data != tok_embd.data) release_mapped_pages(w.data, w.n_tiles * kTileRows * w.row_bytes);
    };
    for (LlamaLayer& L : layers)
        for (WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) repack(*w);
    repack(output);
}

int LlamaModel::repacked_matrices() const {
    int n = output.repacked ? 1 : 0;
    for (const LlamaLayer& L : layers)
        for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) n += w->repacked ? 1 : 0;
    return n;
}

void LlamaModel::embed(int32_t token, float* out) const {
    if (token < 0 || token >= hp_.n_vocab)
        throw Error("token id " + std::to_string(token) + " is out of range [0, " + std::to_string(hp_.n_vocab) + ")");
    dequantize_row(tok_embd.type, tok_embd.data + token * tok_embd.row_bytes, out, hp_.n_embd);
}

}  // namespace pyllama
