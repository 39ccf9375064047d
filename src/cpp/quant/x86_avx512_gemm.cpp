// The AVX-512 level's GEMM (x86_gemm.h): VNNI's dpbusd (4 byte products per int32 lane) and
// dpwssd (2 int16 products), on 256-bit registers (AVX512VL), which also gives 32 of them.
#include "quant/isa_gemm.h"
#include "quant/x86_gemm.h"

namespace pyllama {
namespace {
struct VnniGemmDot {
    static __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
    static __m256i dpwssd(__m256i acc, __m256i x, __m256i y) { return _mm256_dpwssd_epi32(acc, x, y); }
};
using Gemms = X86Gemms<VnniGemmDot, 4>;
}  // namespace

const GemmTable kAvx512GemmTable{Gemms::table, sizeof Gemms::table / sizeof Gemms::table[0]};

}  // namespace pyllama
