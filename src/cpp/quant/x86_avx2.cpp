// The AVX2 level (AVX2 + FMA + F16C). Compiled with those flags only; see x86_kernels.h.
#include "quant/isa_kernels.h"
#include "quant/x86_kernels.h"

namespace pyllama {
namespace {
struct MaddubsDot {
    // Unsigned x signed bytes -> int16 pair sums (exact for the operand ranges used) -> int32.
    static __m256i dot_u8s8(__m256i u, __m256i s) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
    }
    // Byte j takes byte j / 8 of `bits` (a shuffle within each 128-bit lane of the broadcast
    // word), then tests its bit j % 8.
    static __m256i spread_bits(uint32_t bits, __m256i v) {
        const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                                  _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                                                     0x0303030303030303));
        const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
        return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), v);
    }
};
}  // namespace

const KernelTable kAvx2KernelTable{kX86Kernels<MaddubsDot>, sizeof kX86Kernels<MaddubsDot> / sizeof(MatmulKernel)};

}  // namespace pyllama
