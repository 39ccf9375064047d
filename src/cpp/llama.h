// The Llama architecture (Llama 1/2/3, Mistral, TinyLlama, SmolLM) as llama.cpp writes it to GGUF:
// hyper-parameters from metadata, weights as zero-copy views into the mapped file (each checked
// by name and shape at load), and the forward pass over a batch of tokens.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf.h"
#include "ops.h"

namespace pyllama {

struct LlamaHParams {
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int64_t n_embd = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;      // per head, for queries and keys (= values)
    int64_t n_ff = 0;
    int64_t n_rot = 0;         // leading dims of each head that rotate
    float rms_eps = 1e-5f;
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;   // 1 / linear scaling factor

    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_head_kv * head_dim; }
};

struct LlamaLayer {
    std::vector<float> attn_norm;  // [n_embd]
    WeightMatrix wq;               // n_embd -> n_head * head_dim
    WeightMatrix wk;               // n_embd -> n_head_kv * head_dim
    WeightMatrix wv;               // n_embd -> n_head_kv * head_dim
    WeightMatrix wo;               // n_head * head_dim -> n_embd
    std::vector<float> ffn_norm;   // [n_embd]
    WeightMatrix w_gate;           // n_embd -> n_ff
    WeightMatrix w_up;             // n_embd -> n_ff
    WeightMatrix w_down;           // n_ff -> n_embd
};

class LlamaModel {
public:
    // Throws pyllama::Error naming the key or tensor when the file is not a usable llama model.
    // With `repack`, the matrices that the level in use (dispatch.h) has a GEMM for are repacked
    // into row-interleaved tiles (quant/repack.h) and their pages of the file released.
    explicit LlamaModel(std::shared_ptr<const GGUFFile> file, bool repack = true);

    const LlamaHParams& hparams() const { return hp_; }
    const GGUFFile& file() const { return *file_; }

    // How many of the matrices (layers' and output) are held repacked.
    int repacked_matrices() const;

    // Writes the embedding of `token` (n_embd floats).
    void embed(int32_t token, float* out) const;

    WeightMatrix tok_embd;            // n_embd x n_vocab rows (row t is token t's embedding)
    std::vector<float> output_norm;   // [n_embd]
    WeightMatrix output;              // n_embd -> n_vocab (tok_embd when the file ties them)
    std::vector<float> rope_freqs;    // [n_rot/2] divisors, empty unless the file has rope_freqs.weight
    std::vector<LlamaLayer> layers;

private:
    void repack_matrices();

    std::shared_ptr<const GGUFFile> file_;
    LlamaHParams hp_;
};

}  // namespace pyllama
