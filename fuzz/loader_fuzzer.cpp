// libFuzzer target: the Llama model loader on top of the GGUF parser. Hyper-parameters,
// tensor names, shapes and types come from the input; a model that loads must be usable: the
// last row of every weight matrix and both ends of the embedding table are dequantized, so a
// shape the loader accepted but the file does not back shows up as an out-of-bounds read.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "error.h"
#include "gguf.h"
#include "llama.h"
#include "quant/quant.h"

namespace {

void read_last_row(const pyllama::WeightMatrix& w, std::vector<float>& buf) {
    buf.resize(static_cast<size_t>(w.n_in));
    pyllama::dequantize_row(w.type, w.data + (w.n_out - 1) * w.row_bytes, buf.data(), w.n_in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto file = std::make_shared<const pyllama::GGUFFile>("fuzz.gguf", data, size);
        const pyllama::LlamaModel m(file);
        std::vector<float> buf(static_cast<size_t>(m.hparams().n_embd));
        m.embed(0, buf.data());
        m.embed(static_cast<int32_t>(m.hparams().n_vocab - 1), buf.data());
        read_last_row(m.output, buf);
        for (const pyllama::LlamaLayer& L : m.layers)
            for (const pyllama::WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
                read_last_row(*w, buf);
    } catch (const pyllama::Error&) {
        // a clean rejection
    }
    return 0;
}
