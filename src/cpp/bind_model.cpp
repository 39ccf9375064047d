#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bind.h"
#include "context.h"
#include "error.h"
#include "gguf.h"
#include "llama.h"

namespace py = pybind11;

namespace pyllama {

void bind_model(py::module_& m) {
    py::class_<LlamaModel, std::shared_ptr<LlamaModel>>(m, "LlamaModel")
        .def(py::init([](std::shared_ptr<GGUFFile> file, bool repack) {
                 py::gil_scoped_release release;
                 return std::make_shared<LlamaModel>(std::move(file), repack);
             }),
             py::arg("file"), py::arg("repack") = true)
        .def_property_readonly("repacked_matrices", &LlamaModel::repacked_matrices)
        .def_property_readonly("n_vocab", [](const LlamaModel& x) { return x.hparams().n_vocab; })
        .def_property_readonly("n_ctx_train", [](const LlamaModel& x) { return x.hparams().n_ctx_train; })
        .def_property_readonly("n_embd", [](const LlamaModel& x) { return x.hparams().n_embd; })
        .def_property_readonly("n_layer", [](const LlamaModel& x) { return x.hparams().n_layer; })
        .def_property_readonly("n_head", [](const LlamaModel& x) { return x.hparams().n_head; })
        .def_property_readonly("n_head_kv", [](const LlamaModel& x) { return x.hparams().n_head_kv; })
        .def_property_readonly("head_dim", [](const LlamaModel& x) { return x.hparams().head_dim; })
        .def_property_readonly("n_ff", [](const LlamaModel& x) { return x.hparams().n_ff; })
        .def_property_readonly("kv_bytes_per_token", [](const LlamaModel& x) {
            return 2 * x.hparams().n_layer * x.hparams().kv_dim() * static_cast<int64_t>(sizeof(uint16_t));
        });

    py::class_<InferenceContext>(m, "InferenceContext")
        .def(py::init([](std::shared_ptr<LlamaModel> model, int64_t n_ctx, int n_threads, int64_t n_batch,
                         const std::string& kv_type) {
                 GGMLType type;
                 if (kv_type == "f16") type = GGMLType::F16;
                 else if (kv_type == "f32") type = GGMLType::F32;
                 else throw Error("kv_cache_type must be 'f16' or 'f32', got '" + kv_type + "'");
                 py::gil_scoped_release release;
                 return new InferenceContext(std::move(model), n_ctx, n_threads, n_batch, type);
             }),
             py::arg("model"), py::arg("n_ctx"), py::arg("n_threads"), py::arg("n_batch"), py::arg("kv_type"))
        .def_property_readonly("n_ctx", &InferenceContext::n_ctx)
        .def_property_readonly("n_past", &InferenceContext::n_past)
        .def_property_readonly("n_batch", &InferenceContext::n_batch)
        .def_property_readonly("n_threads", &InferenceContext::n_threads)
        .def_property_readonly("kv_type",
                                [](const InferenceContext& c) { return c.kv_type() == GGMLType::F16 ? "f16" : "f32"; })
        .def_property_readonly("pool_regions", &InferenceContext::pool_regions,
                               "Parallel regions that woke the thread pool so far (for measuring).")
        .def("truncate", &InferenceContext::truncate, py::arg("n"))
        .def(
            "eval",
            [](InferenceContext& ctx, py::array_t<int32_t, py::array::c_style | py::array::forcecast> tokens,
               bool all_logits) {
                if (tokens.ndim() != 1) throw Error("tokens must be a 1-D array of token ids");
                const int64_t n = tokens.shape(0);
                const int64_t n_vocab = ctx.model().hparams().n_vocab;
                py::array_t<float> logits = all_logits ? py::array_t<float>({n, n_vocab})
                                                       : py::array_t<float>({n_vocab});
                const int32_t* ids = tokens.data();
                float* out = logits.mutable_data();
                {
                    py::gil_scoped_release release;
                    ctx.eval(ids, n, all_logits, out);
                }
                return logits;
            },
            py::arg("tokens"), py::arg("all_logits"),
            "Append tokens to the sequence; logits of every new position, or of the last one.")
        .def(
            "eval_hidden",
            [](InferenceContext& ctx, py::array_t<int32_t, py::array::c_style | py::array::forcecast> tokens) {
                if (tokens.ndim() != 1) throw Error("tokens must be a 1-D array of token ids");
                const int64_t n = tokens.shape(0);
                py::array_t<float> hidden({n, ctx.model().hparams().n_embd});
                const int32_t* ids = tokens.data();
                float* out = hidden.mutable_data();
                {
                    py::gil_scoped_release release;
                    ctx.eval_hidden(ids, n, out);
                }
                return hidden;
            },
            py::arg("tokens"), "Append tokens to the sequence; the last hidden state (output-normed) of each.")
        .def("state_bytes", [](InferenceContext& ctx, int64_t n) { return ctx.kv_cache().state_bytes(n); },
             py::arg("n"), "Bytes of the KV cache's contents for n positions.")
        .def(
            "save_state",
            [](InferenceContext& ctx) {
                const int64_t n = ctx.n_past();
                py::array_t<uint8_t> out(static_cast<py::ssize_t>(ctx.kv_cache().state_bytes(n)));
                ctx.kv_cache().save_state(n, out.mutable_data());
                return out;
            },
            "The KV cache's contents for the positions it holds (uint8 array).")
        .def(
            "load_state",
            [](InferenceContext& ctx, int64_t n, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> bytes) {
                if (n < 1 || n > ctx.n_ctx())
                    throw Error("a state of " + std::to_string(n) + " positions does not fit n_ctx " +
                                std::to_string(ctx.n_ctx()));
                if (bytes.ndim() != 1 || static_cast<size_t>(bytes.shape(0)) != ctx.kv_cache().state_bytes(n))
                    throw Error("a state of " + std::to_string(n) + " positions is " +
                                std::to_string(ctx.kv_cache().state_bytes(n)) + " bytes");
                ctx.kv_cache().load_state(n, bytes.data());
            },
            py::arg("n"), py::arg("bytes"), "Replace the KV cache's contents with a saved state of n positions.");
}

}  // namespace pyllama
