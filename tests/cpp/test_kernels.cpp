// Every kernel of every instruction-set level this CPU has (dispatch.h) against the scalar level,
// without Python: run natively for the x86 levels and under qemu-aarch64 for NEON (see
// run_kernel_tests.sh). The checks mirror tests/test_kernels_isa.py: activation bytes must be
// identical; vec_dot may differ from the scalar result only by float summation order, bounded by
// (2 terms + 8) u * magnitude on each side (magnitude: sum over elements of
// (|w - offset| + |offset|) * |a|, offset being the weight's min term). NEON's float rows must
// equal the scalar ones bit for bit; a NaN scale must give NaN; F16/BF16 conversion of special
// values (NaNs, infinities, subnormals, ties) must give the scalar bytes.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "quant/blocks.h"
#include "quant/gemm.h"
#include "quant/quant.h"
#include "quant/repack.h"
#include "test_summary.h"

using namespace pyllama;

namespace {

int g_failures = 0;
void fail(const std::string& what) {
    std::printf("FAIL %s\n", what.c_str());
    ++g_failures;
}

struct TypeCase {
    GGMLType type;
    int block_size;
    size_t block_bytes;
    std::vector<int> half_fields;    // byte offsets of fp16 scales
    int quant_begin, quant_end;      // quant bytes, zeroed to get the offsets (types with mins)
};

const TypeCase kCases[] = {
    {GGMLType::F32, 1, 4, {}, 0, 0},
    {GGMLType::F16, 1, 2, {}, 0, 0},
    {GGMLType::BF16, 1, 2, {}, 0, 0},
    {GGMLType::Q4_0, 32, 18, {0}, 0, 0},
    {GGMLType::Q4_1, 32, 20, {0, 2}, 4, 20},
    {GGMLType::Q5_0, 32, 22, {0}, 0, 0},
    {GGMLType::Q5_1, 32, 24, {0, 2}, 4, 24},
    {GGMLType::Q8_0, 32, 34, {0}, 0, 0},
    {GGMLType::Q4_K, 256, 144, {0, 2}, 16, 144},
    {GGMLType::Q5_K, 256, 176, {0, 2}, 16, 176},
    {GGMLType::Q6_K, 256, 210, {208}, 0, 0},
};

std::vector<uint8_t> random_weights(std::mt19937& rng, const TypeCase& c, int64_t n) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<uint8_t> w(static_cast<size_t>(n / c.block_size) * c.block_bytes);
    if (c.block_size == 1) {
        for (int64_t i = 0; i < n; ++i) {
            const float v = 0.05f * normal(rng);
            if (c.type == GGMLType::F32) {
                std::memcpy(&w[4 * i], &v, 4);
            } else if (c.type == GGMLType::BF16) {
                const uint16_t h = fp32_to_bf16(v);
                w[2 * i] = static_cast<uint8_t>(h & 0xff);
                w[2 * i + 1] = static_cast<uint8_t>(h >> 8);
            } else {
                std::memcpy(&w[2 * i], to_half(v).bytes, 2);
            }
        }
        return w;
    }
    for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
    for (size_t blk = 0; blk < w.size() / c.block_bytes; ++blk)
        for (int off : c.half_fields) {
            const Half h = to_half(std::ldexp(normal(rng), -(byte(rng) % 14)));
            std::memcpy(&w[blk * c.block_bytes + off], h.bytes, 2);
        }
    return w;
}

std::vector<float> random_activations(std::mt19937& rng, int64_t n) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::vector<float> x(n);
    for (auto& v : x) v = normal(rng) * (uniform(rng) < 0.01f ? 30.0f : 1.0f);
    if (n >= 128) std::fill(x.begin() + 64, x.begin() + 96, 0.0f);
    if (n >= 32) x[n / 2] = 2.5f * std::round(x[n / 2]);  // a likely exact tie somewhere
    return x;
}

// The activation row's values.
std::vector<double> activation_values(GGMLType act_type, const std::vector<uint8_t>& a, int64_t n) {
    std::vector<double> v(n);
    if (act_type == GGMLType::F32 || act_type == GGMLType::F16 || act_type == GGMLType::BF16 ||
        act_type == GGMLType::Q8_0) {
        std::vector<float> f(n);
        dequantize_row(act_type, a.data(), f.data(), n);
        for (int64_t i = 0; i < n; ++i) v[i] = f[i];
    } else if (act_type == GGMLType::Q8_1) {
        const auto* b = reinterpret_cast<const BlockQ8_1*>(a.data());
        for (int64_t i = 0; i < n; ++i) v[i] = double(to_float(b[i / kQK].d)) * b[i / kQK].qs[i % kQK];
    } else {  // Q8_K
        const auto* b = reinterpret_cast<const BlockQ8_K*>(a.data());
        for (int64_t i = 0; i < n; ++i) v[i] = double(b[i / kQK_K].d) * b[i / kQK_K].qs[i % kQK_K];
    }
    return v;
}

double tolerance(const TypeCase& c, const MatmulKernel& k, const std::vector<uint8_t>& w,
                 const std::vector<uint8_t>& a, int64_t n) {
    std::vector<float> wv(n), off(n, 0.0f);
    dequantize_row(c.type, w.data(), wv.data(), n);
    if (c.quant_end > 0) {
        std::vector<uint8_t> zeroed = w;
        for (size_t blk = 0; blk < w.size() / c.block_bytes; ++blk)
            std::memset(&zeroed[blk * c.block_bytes + c.quant_begin], 0, c.quant_end - c.quant_begin);
        dequantize_row(c.type, zeroed.data(), off.data(), n);
    }
    const std::vector<double> av = activation_values(k.act_type, a, n);
    double magnitude = 0.0;
    for (int64_t i = 0; i < n; ++i)
        magnitude += (std::fabs(double(wv[i]) - off[i]) + std::fabs(double(off[i]))) * std::fabs(av[i]);
    const double terms = c.block_size > 1 ? double(n / c.block_size) : double(n / 32 + 32);
    return 2 * (2 * terms + 8) * std::ldexp(1.0, -24) * magnitude;
}

void check_case(const std::string& level, const TypeCase& c, std::mt19937& rng, int64_t n) {
    const std::vector<uint8_t> w = random_weights(rng, c, n);
    const std::vector<float> x = random_activations(rng, n);
    set_isa("scalar");
    const MatmulKernel ref = matmul_kernel(c.type);
    std::vector<uint8_t> a(row_size(ref.act_type, n));
    ref.quantize_act(x.data(), a.data(), n);
    const float expected = ref.vec_dot(n, w.data(), a.data());
    set_isa(level);
    const MatmulKernel k = matmul_kernel(c.type);
    const std::string what = level + " " + type_traits(c.type)->name + " n=" + std::to_string(n);
    std::vector<uint8_t> a2(a.size());
    k.quantize_act(x.data(), a2.data(), n);
    if (a2 != a) fail(what + ": activation bytes differ");
    const float got = k.vec_dot(n, w.data(), a.data());
    const double tol = tolerance(c, ref, w, a, n);
    if (!(std::fabs(double(got) - expected) <= tol))
        fail(what + ": " + std::to_string(got) + " vs scalar " + std::to_string(expected) + " tol " + std::to_string(tol));
    // NEON's float rows keep the scalar kernel's partial sums and order (arm_neon.cpp): bit-equal.
    if (level == "neon" && c.block_size == 1 && std::memcmp(&got, &expected, sizeof got) != 0)
        fail(what + ": " + std::to_string(got) + " is not bit-equal to scalar " + std::to_string(expected));
}

// F16/BF16 activation conversion of special values (NaNs with payloads, infinities, signed zeros,
// subnormals, rounding ties, overflow) at every row length around the vector widths.
void check_float_quantizers(const std::string& level) {
    const uint32_t special[] = {0x7fc00000, 0x7f800001, 0xffbfffff, 0x7fff8000, 0x7f800000, 0xff800000, 0x00000000,
                                0x80000000, 0x00000001, 0x807fffff, 0x00008000, 0x3f808000, 0x3f818000, 0x3f80ffff,
                                0x7f7fffff, 0x477ff000, 0x477fefff, 0x33000000, 0x33000001, 0x38800000, 0x387fe000};
    std::vector<float> x;
    for (uint32_t u : special) x.push_back(bits_to_float(u));
    for (int i = 0; i < 20; ++i) x.push_back(0.37f * float(i) - 3.0f);
    for (GGMLType t : {GGMLType::F16, GGMLType::BF16})
        for (size_t n = 1; n <= x.size(); ++n)
            for (size_t start : {size_t(0), (x.size() - n) / 2}) {  // the specials in the vectors and in the tail
                std::vector<uint8_t> ref(2 * n), got(2 * n);
                set_isa("scalar");
                matmul_kernel(t).quantize_act(x.data() + start, ref.data(), int64_t(n));
                set_isa(level);
                matmul_kernel(t).quantize_act(x.data() + start, got.data(), int64_t(n));
                if (got != ref)
                    fail(level + " " + type_traits(t)->name + " special values [" + std::to_string(start) + ", +" +
                         std::to_string(n) + ")");
            }
}

// A NaN scale (a NaN element for float rows) in block 2 makes the dot product NaN.
void check_nan(const std::string& level, const TypeCase& c, std::mt19937& rng) {
    const int64_t n = 5 * (c.block_size > 1 ? c.block_size : 37);
    std::vector<uint8_t> w = random_weights(rng, c, n);
    const std::vector<float> x = random_activations(rng, n);
    std::vector<std::pair<size_t, size_t>> fields;  // (offset, size) of the value made NaN
    for (int off : c.half_fields) fields.emplace_back(2 * c.block_bytes + off, 2);
    if (c.block_size == 1) fields.emplace_back(2 * c.block_bytes, c.block_bytes);
    set_isa(level);
    const MatmulKernel k = matmul_kernel(c.type);
    std::vector<uint8_t> a(row_size(k.act_type, n));
    k.quantize_act(x.data(), a.data(), n);
    for (auto [off, size] : fields) {
        std::vector<uint8_t> bad = w;
        const uint32_t nan = size == 4 ? 0x7fc00000u : c.type == GGMLType::BF16 ? 0x7fc0u : 0x7e00u;
        std::memcpy(&bad[off], &nan, size);  // little-endian
        if (!std::isnan(k.vec_dot(n, bad.data(), a.data())))
            fail(level + " " + type_traits(c.type)->name + ": NaN at byte " + std::to_string(off) + " lost");
    }
}

// The GEMM over repacked tiles (quant/gemm.h) for n_out rows (whole tiles only) and n_tokens
// activation rows: every level's must equal the scalar vec_dot exactly (exact integer sums, then
// the same float operations in the same order, one row per vector lane).
void check_gemm(const TypeCase& c, std::mt19937& rng, int64_t n, int64_t n_tiles, int64_t n_tokens) {
    const int64_t n_out = n_tiles * kTileRows;
    const size_t row_bytes = row_size(c.type, n);
    std::vector<uint8_t> w;
    for (int64_t o = 0; o < n_out; ++o) {
        const std::vector<uint8_t> row = random_weights(rng, c, n);
        w.insert(w.end(), row.begin(), row.end());
    }
    set_isa("scalar");
    const MatmulKernel ref = matmul_kernel(c.type);
    const size_t act_row = row_size(ref.act_type, n);
    std::vector<uint8_t> act(act_row * n_tokens);
    for (int64_t t = 0; t < n_tokens; ++t) ref.quantize_act(random_activations(rng, n).data(), &act[t * act_row], n);
    std::vector<uint8_t> tiles(n_tiles * repacked_tile_bytes(c.type, n));
    repack_tiles(c.type, w.data(), row_bytes, n, 0, n_tiles, tiles.data());
    for (Isa isa : available_isas()) {
        const GemmKernel* gemm = find_gemm(c.type, isa);
        if (!gemm) continue;
        std::vector<float> y(n_tokens * n_out);
        std::vector<int16_t> sums(n_tokens * (n / 32));
        activation_sums32(act.data(), n_tokens, n, sums.data());
        gemm->gemm(n, tiles.data(), n_tiles, act.data(), sums.data(), n_tokens, y.data(), n_out);
        const std::string what = std::string(isa_name(isa)) + " gemm " + type_traits(c.type)->name + " n=" +
                                 std::to_string(n) + " rows=" + std::to_string(n_out) + " tokens=" + std::to_string(n_tokens);
        for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t o = 0; o < n_out; ++o) {
                const std::vector<uint8_t> wrow(w.begin() + o * row_bytes, w.begin() + (o + 1) * row_bytes);
                const std::vector<uint8_t> arow(act.begin() + t * act_row, act.begin() + (t + 1) * act_row);
                const float expected = ref.vec_dot(n, wrow.data(), arow.data());
                const float got = y[t * n_out + o];
                if (got != expected) {
                    fail(what + " row " + std::to_string(o) + " token " + std::to_string(t) + ": " + std::to_string(got) +
                         " vs scalar vec_dot " + std::to_string(expected));
                    return;
                }
            }
    }
}

}  // namespace

int main() {
    std::mt19937 rng(1234);
    int checks = 0;
    for (Isa isa : available_isas()) {
        if (isa == Isa::Scalar) continue;
        for (const TypeCase& c : kCases) {
            for (int blocks : {1, 2, 3, 9, 33})
                for (int trial = 0; trial < 4; ++trial, ++checks)
                    check_case(isa_name(isa), c, rng, int64_t(blocks) * (c.block_size > 1 ? c.block_size : 37));
            check_nan(isa_name(isa), c, rng);
            ++checks;
        }
        check_float_quantizers(isa_name(isa));
        ++checks;
    }
    for (const TypeCase& c : kCases) {
        if (!has_repacked_layout(c.type)) continue;
        for (int blocks : {1, 3})
            for (int64_t n_tokens : {1, 2, 3, 5, 9})
                for (int64_t n_tiles : {1, 3}) {
                    check_gemm(c, rng, int64_t(blocks) * c.block_size, n_tiles, n_tokens);
                    ++checks;
                }
    }
    return test_summary("", checks, g_failures);
}
