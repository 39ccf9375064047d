// Run-time choice of instruction set for the hot kernels. The core is compiled for the baseline
// of its architecture; kernels for wider instruction sets live in files compiled with their own
// flags (quant/x86_avx2.cpp, quant/x86_avx512.cpp, quant/arm_neon.cpp) and are only ever called
// when the running CPU (and OS, for the register state) supports them.
#pragma once
#include <string>
#include <vector>

namespace pyllama {

// Ordered from least to most capable within an architecture.
enum class Isa {
    Scalar,  // portable C++
    Avx2,    // x86-64: AVX2 + FMA + F16C
    Avx512,  // x86-64: the above + AVX-512 F, BW, VL and VNNI
    Neon,    // aarch64: NEON (baseline) + dotprod
};

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512", "neon"

// The levels this CPU supports, least capable first (always starts with Scalar).
const std::vector<Isa>& available_isas();

// The level in use. Chosen on first use: the most capable available one, or the one named by the
// environment variable PYLLAMA_ISA (which throws pyllama::Error if the name is unknown or the CPU
// lacks that level).
Isa current_isa();

// Switch level (tests use this to run every variant in one process). Throws pyllama::Error for an
// unknown name or an unavailable level. Not meant to be called while inference runs on other threads.
void set_isa(const std::string& name);

}  // namespace pyllama
