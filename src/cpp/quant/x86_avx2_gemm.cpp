// The AVX2 level's GEMM (x86_gemm.h): unsigned x signed bytes through maddubs (int16 pair sums,
// exact here: at most 2 * 63 * 127) and madd.
#include "quant/isa_gemm.h"
#include "quant/x86_gemm.h"

namespace pyllama {
namespace {
// 4 bytes at p broadcast to all 8 int32 lanes.
__m256i broadcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

struct MaddubsGemmDot {
    static __m256i dpbusd4(__m256i acc, __m256i u, const int8_t* p) {
        const __m256i s = broadcast4(p);
        return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
    }
    static __m256i dpwssd2(__m256i acc, __m256i x, const int16_t* p) {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(x, broadcast4(p)));
    }
};
using Gemms = X86Gemms<Ymm8<MaddubsGemmDot>, Ymm8<MaddubsGemmDot>, 4, 4>;  // 16 registers
}  // namespace

const GemmTable kAvx2GemmTable{Gemms::table, sizeof Gemms::table / sizeof Gemms::table[0]};

}  // namespace pyllama
