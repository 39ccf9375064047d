// Float -> integer conversions exactly as ggml's reference quantizers perform them on x86-64,
// shared by the activation and weight quantizers. All are defined for every float, NaN and
// infinities included, and give the values ggml's build computes there.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace pyllama {

// A C cast of a float to a small integer type, as ggml's x86-64 build compiles it: truncation
// toward zero through a 32-bit integer conversion (cvttss2si), keeping the low byte. NaN and
// |v| >= 2^31 convert to the "integer indefinite" 0x80000000, whose low byte is 0.
inline uint8_t truncated_low_byte(float v) {
    if (!(std::fabs(v) < 2147483648.0f)) return 0;
    return static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(v)));
}

// (int8_t)roundf(v), as the reference Q8_0/Q8_1 quantizers store it: finite v is within
// [-127.5, 127.5] there by construction; v is infinite or NaN only when a block's scale
// underflows to a subnormal whose reciprocal overflows, which ggml's conversion turns into 0.
inline int8_t round_to_int8(float v) { return static_cast<int8_t>(truncated_low_byte(std::round(v))); }

// ggml's nearest_int: round to nearest, ties to even, by the float-addition trick (exact for
// |v| < 2^22; other values give a defined but meaningless result, the same one as in ggml).
inline int nearest_int(float v) {
    const float shifted = v + 12582912.0f;  // 1.5 * 2^23: the integer lands in the low mantissa bits
    int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace pyllama
