// Test and measurement hooks for the forward pass's non-matmul parts: attention over a KV cache
// filled from arrays, the activation kernel, and the thread pool's cost per parallel region.
// They run the instruction-set level in use (set_isa). Not part of pyllama's public API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <string>

#include "attention.h"
#include "bind.h"
#include "error.h"
#include "kv_cache.h"
#include "simd/kernels.h"
#include "threadpool.h"

namespace py = pybind11;

namespace pyllama {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// q: [n, n_head * head_dim] queries of the tokens at positions n_keys - n ... n_keys - 1;
// k, v: [n_keys, n_head_kv * head_dim], every position's key and value. Returns [n, n_head * head_dim].
py::array_t<float> attention(FloatArray q, FloatArray k, FloatArray v, int64_t n_head, int64_t n_head_kv,
                             const std::string& kv_type, int n_threads, int64_t n_batch) {
    if (q.ndim() != 2 || k.ndim() != 2 || v.ndim() != 2) throw Error("attention: q, k and v must be 2-D");
    const int64_t n = q.shape(0), n_keys = k.shape(0);
    if (n_head <= 0 || n_head_kv <= 0 || q.shape(1) % n_head != 0) throw Error("attention: bad head counts");
    const int64_t head_dim = q.shape(1) / n_head;
    if (k.shape(1) != n_head_kv * head_dim || v.shape(0) != n_keys || v.shape(1) != k.shape(1) || n > n_keys || n < 1)
        throw Error("attention: shapes of q, k, v do not agree");
    const GGMLType type = kv_type == "f16" ? GGMLType::F16 : kv_type == "f32" ? GGMLType::F32 : GGMLType::Q8_0;
    if (type == GGMLType::Q8_0) throw Error("attention: kv_type must be 'f16' or 'f32'");
    py::array_t<float> out({n, q.shape(1)});
    const float* qd = q.data();
    const float* kd = k.data();
    const float* vd = v.data();
    float* od = out.mutable_data();
    {
        py::gil_scoped_release release;
        KVCache cache(1, n_keys, n_head_kv, head_dim, type);
        for (int64_t p = 0; p < n_keys; ++p) cache.store(0, p, kd + p * k.shape(1), vd + p * k.shape(1));
        ThreadPool pool(n_threads);
        Attention attn(n_head, n_head_kv, head_dim, n_batch, n_threads);
        attn.run(pool, cache, 0, qd, n, n_keys - n, od);
    }
    return out;
}

py::array_t<float> silu_mul(FloatArray gate, FloatArray up) {
    if (gate.ndim() != 1 || up.ndim() != 1 || gate.shape(0) != up.shape(0))
        throw Error("silu_mul: gate and up must be 1-D arrays of one length");
    py::array_t<float> out(gate.shape(0));
    std::copy(gate.data(), gate.data() + gate.shape(0), out.mutable_data());
    simd_kernels().silu_mul(out.mutable_data(), up.data(), gate.shape(0));
    return out;
}

// Microseconds per parallel region of n_chunks chunks that count their calls and busy-wait
// chunk_us microseconds each (0: return at once), averaged over
// n_regions regions run back to back (after a warm-up); the share of chunks the caller's thread
// ran; and whether every chunk of every region ran exactly once.
py::tuple pool_region_cost(int n_threads, int64_t n_regions, int64_t n_chunks, double chunk_us) {
    if (n_regions < 1 || n_chunks < 1) throw Error("pool_region_cost: n_regions and n_chunks must be positive");
    py::gil_scoped_release release;
    ThreadPool pool(n_threads);
    std::vector<std::atomic<int64_t>> calls(static_cast<size_t>(n_chunks));
    std::atomic<int64_t> by_caller{0};
    const auto body = [&](int64_t chunk, int thread) {
        calls[static_cast<size_t>(chunk)].fetch_add(1, std::memory_order_relaxed);
        if (thread == 0) by_caller.fetch_add(1, std::memory_order_relaxed);
        if (chunk_us > 0) {
            const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double, std::micro>(chunk_us);
            while (std::chrono::steady_clock::now() < until) {
            }
        }
    };
    for (int i = 0; i < 1000; ++i) pool.run_chunks(n_chunks, body);
    for (auto& c : calls) c.store(0);
    by_caller.store(0);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_regions; ++i) pool.run_chunks(n_chunks, body);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    bool once = true;
    for (auto& c : calls) once = once && c.load() == n_regions;
    py::gil_scoped_acquire acquire;
    return py::make_tuple(us / static_cast<double>(n_regions),
                          static_cast<double>(by_caller.load()) / static_cast<double>(n_regions * n_chunks), once);
}

// Runs a region of n_chunks chunks on one pool where chunk fail_chunk throws, then a normal
// region: (the message that reached the caller, whether the next region ran every chunk once).
py::tuple pool_after_failure(int n_threads, int64_t n_chunks, int64_t fail_chunk) {
    py::gil_scoped_release release;
    ThreadPool pool(n_threads);
    std::string message;
    try {
        pool.run_chunks(n_chunks, [&](int64_t chunk, int) {
            if (chunk == fail_chunk) throw Error("chunk " + std::to_string(chunk) + " failed");
        });
    } catch (const Error& e) {
        message = e.what();
    }
    std::vector<std::atomic<int>> calls(static_cast<size_t>(n_chunks));
    pool.run_chunks(n_chunks, [&](int64_t chunk, int) { calls[static_cast<size_t>(chunk)].fetch_add(1); });
    bool once = true;
    for (auto& c : calls) once = once && c.load() == 1;
    py::gil_scoped_acquire acquire;
    return py::make_tuple(message, once);
}

}  // namespace

void bind_ops(py::module_& m) {
    m.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("n_head"), py::arg("n_head_kv"),
          py::arg("kv_type"), py::arg("n_threads"), py::arg("n_batch"),
          "Test hook: causal attention of the last len(q) positions over keys k and values v, stored in a "
          "KV cache of kv_type, by the current level's kernels (n_batch sets the query tiling).");
    m.def("silu_mul", &silu_mul, py::arg("gate"), py::arg("up"),
          "Test hook: silu(gate) * up by the current level's kernel.");
    m.def("pool_region_cost", &pool_region_cost, py::arg("n_threads"), py::arg("n_regions"), py::arg("n_chunks"), py::arg("chunk_us"),
          "Measurement hook: (microseconds per parallel region of n_chunks chunks of chunk_us each, share of chunks the "
          "caller ran, whether every chunk ran exactly once).");
    m.def("pool_after_failure", &pool_after_failure, py::arg("n_threads"), py::arg("n_chunks"), py::arg("fail_chunk"),
          "Test hook: (error message a throwing chunk gave the caller, whether the next region ran normally).");
}

}  // namespace pyllama
