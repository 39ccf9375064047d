// The end of a kernel test program: prints its totals and the instruction-set levels it ran on,
// and gives the exit code. With no SIMD level available only the scalar reference ran, so nothing
// was compared: that is a failure too.
#pragma once
#include <cstdio>

#include "dispatch.h"

namespace pyllama {

inline int test_summary(const char* label, int checks, int failures) {
    std::printf("%s%d checks on levels:", label, checks);
    for (Isa isa : available_isas()) std::printf(" %s", isa_name(isa));
    std::printf("; %d failures\n", failures);
    if (available_isas().size() < 2) {
        std::printf("FAIL no SIMD level available: nothing was tested\n");
        return 1;
    }
    return failures ? 1 : 0;
}

}  // namespace pyllama
