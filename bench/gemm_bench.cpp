// Single-process timing of matmul (ops.h) on Q4_K/Q6_K weights: the GEMM over repacked tiles
// against the vec_dot path, per level, in GOP/s (2 operations per weight per token); "cold": one
// token against 40 matrices that no cache holds (generation's case), in GB/s of file-layout
// weights; "one": a single shape on the best level, in process CPU time.
// Built and run by bench/gemm_bench.sh; random bytes with sane fp16 scales stand in for weights.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "quant/blocks.h"
#include "threadpool.h"

using namespace pyllama;

namespace {

std::vector<uint8_t> random_rows(GGMLType type, int64_t n_in, int64_t n_out, std::mt19937& rng) {
    std::vector<uint8_t> w(row_size(type, n_in) * n_out);
    for (auto& b : w) b = static_cast<uint8_t>(rng());
    const size_t block = type == GGMLType::Q4_K ? sizeof(BlockQ4_K) : sizeof(BlockQ6_K);
    const std::vector<int> halves = type == GGMLType::Q4_K ? std::vector<int>{0, 2} : std::vector<int>{208};
    for (size_t off = 0; off < w.size(); off += block)
        for (int h : halves) std::memcpy(&w[off + h], to_half(1e-3f * (rng() % 100)).bytes, 2);
    return w;
}

double seconds_per_call(ThreadPool& pool, const WeightMatrix& w, MatmulInput& in, float* y) {
    matmul(pool, w, in, y);  // warm-up (and activation conversion, cached by MatmulInput)
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        int calls = 0;
        double elapsed = 0;
        do {
            matmul(pool, w, in, y);
            ++calls;
            elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        } while (elapsed < 0.2);
        best = std::min(best, elapsed / calls);
    }
    return best;
}

// Generation's case: one token against weights far larger than the caches (memory-bound), as
// GB/s of weights read (file layout) and the GEMM's speedup over vec_dot.
void bench_cold(ThreadPool& pool, std::mt19937& rng) {
    constexpr int kMatrices = 40;
    for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q6_K}) {
        const int64_t n_in = 2048, n_out = 5632;
        std::vector<std::vector<uint8_t>> bytes;
        std::vector<WeightMatrix> ws(kMatrices);
        for (int m = 0; m < kMatrices; ++m) {
            bytes.push_back(random_rows(type, n_in, n_out, rng));
            ws[m].type = type;
            ws[m].n_in = n_in;
            ws[m].n_out = n_out;
            ws[m].data = bytes.back().data();
            ws[m].row_bytes = row_size(type, n_in);
        }
        std::vector<float> x(n_in), y(n_out);
        std::normal_distribution<float> normal;
        for (float& v : x) v = normal(rng);
        MatmulInput in;
        in.set(x.data(), 1, n_in);
        auto time_all = [&] {
            double best = 1e30;
            for (int rep = 0; rep < 5; ++rep) {
                const auto t0 = std::chrono::steady_clock::now();
                for (const WeightMatrix& w : ws) matmul(pool, w, in, y.data());
                best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
            return best;
        };
        const double gb = double(kMatrices) * bytes[0].size() / 1e9;
        const double t_vec = time_all();
        for (WeightMatrix& w : ws) repack_weights(pool, w);
        const double t_gemm = time_all();
        std::printf("%-4s cold 1 token, %.2f GB: vec_dot %5.1f GB/s  gemm %5.1f GB/s  x%.2f\n", type_traits(type)->name,
                    gb, gb / t_vec, gb / t_gemm, t_vec / t_gemm);
    }
}

// One GEMM shape on the best level for about two seconds of CPU time: TYPE N_IN N_OUT N_TOKENS.
void bench_one(ThreadPool& pool, std::mt19937& rng, int argc, char** argv) {
    if (argc < 4) return;
    const GGMLType type = std::string(argv[0]) == "Q6_K" ? GGMLType::Q6_K : GGMLType::Q4_K;
    const int64_t n_in = std::atoll(argv[1]), n_out = std::atoll(argv[2]), n_tok = std::atoll(argv[3]);
    const std::vector<uint8_t> bytes = random_rows(type, n_in, n_out, rng);
    std::vector<float> x(n_tok * n_in), y(n_tok * n_out);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    MatmulInput in;
    in.set(x.data(), n_tok, n_in);
    WeightMatrix w;
    w.type = type;
    w.n_in = n_in;
    w.n_out = n_out;
    w.data = bytes.data();
    w.row_bytes = row_size(type, n_in);
    repack_weights(pool, w);
    matmul(pool, w, in, y.data());
    // Process CPU time, not wall time: the machine is shared, and a time slice given to another
    // process then does not count against the kernel (caches still do).
    auto cpu_seconds = [] {
        timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return ts.tv_sec + 1e-9 * ts.tv_nsec;
    };
    const double t0 = cpu_seconds();
    int64_t calls = 0;
    double elapsed = 0;
    do {
        matmul(pool, w, in, y.data());
        ++calls;
        elapsed = cpu_seconds() - t0;
    } while (elapsed < 2.0);
    std::printf("%s %lldx%lld tokens %lld: %.1f GOP/s, %.4g GOP total\n", type_traits(type)->name, (long long)n_in,
                (long long)n_out, (long long)n_tok, 2.0 * n_in * n_out * n_tok * calls / elapsed / 1e9,
                2.0 * n_in * n_out * n_tok * calls / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
    const int n_threads = argc > 1 ? std::atoi(argv[1]) : 1;
    std::mt19937 rng(1);
    ThreadPool pool(n_threads);
    if (argc > 2 && std::string(argv[2]) == "cold") return bench_cold(pool, rng), 0;
    if (argc > 2 && std::string(argv[2]) == "one") return bench_one(pool, rng, argc - 3, argv + 3), 0;
    struct Shape {
        int64_t n_in, n_out;
    };
    for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q6_K})
        for (Shape s : {Shape{2048, 2048}, Shape{2048, 5632}, Shape{5632, 2048}}) {
            const std::vector<uint8_t> bytes = random_rows(type, s.n_in, s.n_out, rng);
            for (int64_t n_tok : {1, 4, 64, 512}) {
                std::vector<float> x(n_tok * s.n_in), y(n_tok * s.n_out);
                std::normal_distribution<float> normal;
                for (float& v : x) v = normal(rng);
                MatmulInput in;
                in.set(x.data(), n_tok, s.n_in);
                for (Isa isa : available_isas()) {
                    if (isa == Isa::Scalar) continue;
                    set_isa(isa_name(isa));
                    WeightMatrix w;
                    w.type = type;
                    w.n_in = s.n_in;
                    w.n_out = s.n_out;
                    w.data = bytes.data();
                    w.row_bytes = row_size(type, s.n_in);
                    const double ops = 2.0 * s.n_in * s.n_out * n_tok;
                    const double t_vec = seconds_per_call(pool, w, in, y.data());
                    repack_weights(pool, w);
                    const double t_gemm = seconds_per_call(pool, w, in, y.data());
                    std::printf("%-4s %4lldx%-4lld tokens %3lld %-6s vec_dot %6.1f GOP/s  gemm %6.1f GOP/s  x%.2f\n",
                                type_traits(type)->name, (long long)s.n_in, (long long)s.n_out, (long long)n_tok,
                                isa_name(isa), ops / t_vec / 1e9, ops / t_gemm / 1e9, t_vec / t_gemm);
                    std::fflush(stdout);
                }
            }
        }
}
