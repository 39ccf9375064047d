#include "dispatch.h"

#include <atomic>
#include <cstdlib>

#include "error.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define PYLLAMA_X86_64 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)  // Linux uapi asm/hwcap.h: the dotprod extension
#endif
#define PYLLAMA_AARCH64_LINUX 1
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#define PYLLAMA_AARCH64_APPLE 1
#endif

namespace pyllama {

namespace {

#if PYLLAMA_X86_64
// XCR0: which register state the OS saves on context switch. CPUID only says the CPU has the
// instructions; without OS support for the YMM/ZMM state they fault.
unsigned long long read_xcr0() {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

std::vector<Isa> detect() {
    std::vector<Isa> levels{Isa::Scalar};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return levels;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return levels;
    const unsigned long long xcr0 = read_xcr0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
    const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    if (__get_cpuid_max(0, nullptr) < 7) return levels;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30),
               avx512vl = b & (1u << 31), avx512vnni = c & (1u << 11);
    if (!(os_ymm && avx2 && fma && f16c)) return levels;
    levels.push_back(Isa::Avx2);
    if (os_zmm && avx512f && avx512bw && avx512vl && avx512vnni) levels.push_back(Isa::Avx512);
    return levels;
}
#elif PYLLAMA_AARCH64_LINUX
std::vector<Isa> detect() {
    std::vector<Isa> levels{Isa::Scalar};
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) levels.push_back(Isa::Neon);
    return levels;
}
#elif PYLLAMA_AARCH64_APPLE
std::vector<Isa> detect() {
    std::vector<Isa> levels{Isa::Scalar};
    int has = 0;
    size_t size = sizeof has;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &size, nullptr, 0) == 0 && has)
        levels.push_back(Isa::Neon);
    return levels;
}
#else
std::vector<Isa> detect() { return {Isa::Scalar}; }
#endif

constexpr Isa kAllIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon};

Isa available_isa_named(const std::string& name, const char* source) {
    for (Isa isa : kAllIsas) {
        if (name != isa_name(isa)) continue;
        for (Isa have : available_isas())
            if (have == isa) return isa;
        throw Error(std::string(source) + ": instruction set '" + name + "' is not supported by this CPU");
    }
    throw Error(std::string(source) + ": unknown instruction set '" + name +
                "' (expected scalar, avx2, avx512 or neon)");
}

Isa initial_isa() {
    const char* env = std::getenv("PYLLAMA_ISA");
    if (env && *env) return available_isa_named(env, "PYLLAMA_ISA");
    return available_isas().back();
}

// -1 until first use; then the Isa in use.
std::atomic<int> g_isa{-1};

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return "scalar";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
        case Isa::Neon: return "neon";
    }
    return "unknown";
}

const std::vector<Isa>& available_isas() {
    static const std::vector<Isa> levels = detect();
    return levels;
}

Isa current_isa() {
    int isa = g_isa.load(std::memory_order_acquire);
    if (isa < 0) {
        // Racing first uses compute the same answer; a bad PYLLAMA_ISA throws every time.
        isa = static_cast<int>(initial_isa());
        g_isa.store(isa, std::memory_order_release);
    }
    return static_cast<Isa>(isa);
}

void set_isa(const std::string& name) {
    g_isa.store(static_cast<int>(available_isa_named(name, "set_isa")), std::memory_order_release);
}

}  // namespace pyllama
