// Single-thread vec_dot throughput of every kernel at every instruction-set level this CPU has,
// in Gelem/s (weight elements per second): medians over runs that alternate the levels, so a busy
// machine slows them alike. Weights are random blocks with realistic scales (float types: random
// values), activations a random row converted by each level's quantizer; both rows stay in cache
// at the default sizes, so this is the kernels' compute speed, not memory bandwidth.
// Build and run with bench/vec_dot_bench.sh [N [RUNS]].
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "dispatch.h"
#include "quant/blocks.h"
#include "quant/quant.h"

using namespace pyllama;

namespace {

struct TypeCase {
    GGMLType type;
    std::vector<int> half_fields;  // byte offsets of the fp16 scales in a block
};
const TypeCase kCases[] = {
    {GGMLType::F32, {}},      {GGMLType::F16, {}},       {GGMLType::BF16, {}},   {GGMLType::Q4_0, {0}},
    {GGMLType::Q4_1, {0, 2}}, {GGMLType::Q5_0, {0}},     {GGMLType::Q5_1, {0, 2}}, {GGMLType::Q8_0, {0}},
    {GGMLType::Q4_K, {0, 2}}, {GGMLType::Q5_K, {0, 2}}, {GGMLType::Q6_K, {208}},
};

// A 64-byte aligned copy (cache-line splits would otherwise depend on where malloc put the row).
struct AlignedRow {
    std::vector<uint8_t> storage;
    uint8_t* data;
    explicit AlignedRow(const std::vector<uint8_t>& bytes) : storage(bytes.size() + 64) {
        data = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
        std::memcpy(data, bytes.data(), bytes.size());
    }
};

std::vector<uint8_t> random_weights(std::mt19937& rng, const TypeCase& c, int64_t n) {
    std::normal_distribution<float> normal;
    const TypeTraits* t = type_traits(c.type);
    std::vector<uint8_t> w(row_size(c.type, n));
    if (t->block_size == 1) {
        std::vector<float> values(n);
        for (auto& v : values) v = 0.05f * normal(rng);
        quantize_activations(c.type, values.data(), w.data(), n);  // F32/F16/BF16: a plain conversion
        return w;
    }
    for (auto& b : w) b = static_cast<uint8_t>(rng());
    for (size_t block = 0; block < w.size() / t->type_size; ++block)
        for (int off : c.half_fields) std::memcpy(&w[block * t->type_size + off], to_half(0.01f * normal(rng)).bytes, 2);
    return w;
}

// Elements per second of one kernel, timed over at least 20 ms.
double rate(const MatmulKernel& k, int64_t n, const uint8_t* w, const uint8_t* a) {
    volatile float sink = 0.0f;
    int64_t calls = 0;
    const auto start = std::chrono::steady_clock::now();
    double seconds = 0.0;
    do {
        for (int i = 0; i < 16; ++i) sink = sink + k.vec_dot(n, w, a);
        calls += 16;
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (seconds < 0.02);
    return static_cast<double>(n) * static_cast<double>(calls) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
    const int64_t n = argc > 1 ? std::atoll(argv[1]) : 4096;
    const int runs = argc > 2 ? std::atoi(argv[2]) : 11;
    if (n <= 0 || n % 256 != 0 || runs <= 0) {
        std::fprintf(stderr, "usage: %s [N (a multiple of 256)] [RUNS]\n", argv[0]);
        return 2;
    }
    const std::vector<Isa>& levels = available_isas();
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::vector<float> x(n);
    for (auto& v : x) v = normal(rng);
    std::printf("Gelem/s, one thread, n = %lld, median of %d runs\n%-6s", static_cast<long long>(n), runs, "type");
    for (Isa isa : levels) std::printf(" %8s", isa_name(isa));
    std::printf("\n");
    for (const TypeCase& c : kCases) {
        const AlignedRow w(random_weights(rng, c, n));
        std::vector<AlignedRow> acts;
        for (Isa isa : levels) {
            set_isa(isa_name(isa));
            const MatmulKernel& k = matmul_kernel(c.type);
            std::vector<uint8_t> a(row_size(k.act_type, n));
            k.quantize_act(x.data(), a.data(), n);
            acts.emplace_back(a);
        }
        std::vector<std::vector<double>> rates(levels.size());
        for (int r = 0; r < runs; ++r)
            for (size_t l = 0; l < levels.size(); ++l) {
                set_isa(isa_name(levels[l]));
                rates[l].push_back(rate(matmul_kernel(c.type), n, w.data, acts[l].data));
            }
        std::printf("%-6s", type_traits(c.type)->name);
        for (auto& r : rates) {
            std::nth_element(r.begin(), r.begin() + r.size() / 2, r.end());
            std::printf(" %8.2f", r[r.size() / 2] * 1e-9);
        }
        std::printf("\n");
    }
    return 0;
}
