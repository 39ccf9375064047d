// IEEE half and bfloat16 <-> float conversions, bit-exact and portable (no F16C needed).
#pragma once
#include <cstdint>
#include <cstring>

namespace pyllama {

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// Exact: every half is representable as a float.
inline float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
    if (exp != 0) return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return bits_to_float(sign);
    // subnormal half: mant * 2^-24, exact in float
    const float mag = static_cast<float>(mant) * bits_to_float(0x33800000u);  // 2^-24
    return sign ? -mag : mag;
}

// Round to nearest even, as the hardware conversion (vcvtps2ph) and numpy do.
inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = float_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00 | ((abs >> 13) & 0x3ff));  // nan
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
    if (abs < 0x38800000u) {  // result is subnormal or zero
        // add 0.5 in the half-subnormal scale: float arithmetic rounds to nearest even for us
        const float mag = bits_to_float(abs) + 0.5f;
        return static_cast<uint16_t>(sign | (float_to_bits(mag) - 0x3f000000u));
    }
    uint32_t mant_odd = (abs >> 13) & 1;
    uint32_t r = abs + 0xc8000fffu + mant_odd;  // rebias exponent (-112<<23) and round
    return static_cast<uint16_t>(sign | (r >> 13));
}

inline float bf16_to_fp32(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t fp32_to_bf16(float f) {
    uint32_t u = float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet nan
    return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

}  // namespace pyllama
