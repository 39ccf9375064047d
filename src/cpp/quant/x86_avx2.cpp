// The AVX2 level (AVX2 + FMA + F16C). Compiled with those flags only; see x86_kernels.h.
#include "quant/isa_kernels.h"
#include "quant/x86_kernels.h"

namespace pyllama {
namespace {
// Unsigned x signed bytes -> int16 pair sums (exact for the operand ranges used) -> int32.
struct MaddubsDot {
    static __m256i dot_u8s8(__m256i u, __m256i s) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    }
};
}  // namespace

const KernelTable kAvx2KernelTable{kX86Kernels<MaddubsDot>, sizeof kX86Kernels<MaddubsDot> / sizeof(MatmulKernel)};

}  // namespace pyllama
