#!/usr/bin/env bash
# Builds tests/cpp/test_kernels.cpp with the matmul kernel sources and tests/cpp/test_simd_kernels.cpp
# with the simd/ kernels and attention natively (x86-64: the AVX2 and AVX-512 levels) and, when the
# cross toolchain is installed (g++-aarch64-linux-gnu, qemu-user), for aarch64 (the NEON level)
# run under qemu-aarch64. Also checks that the ISA-specific objects define no weak (COMDAT)
# symbols: an inline function compiled with AVX/dotprod flags could be picked by the linker for the
# baseline code and fault on older CPUs.
# Usage: tests/cpp/run_kernel_tests.sh [--require-cross]
# EXTRA_CXXFLAGS are added to the native build only (the CI passes the sanitizers, which
# qemu-user cannot host).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cpp="$root/src/cpp"
quant_sources=("$cpp/dispatch.cpp" "$cpp/quant/kernels.cpp" "$cpp/quant/vec_dot_scalar.cpp" "$cpp/quant/quantize_act.cpp"
                "$cpp/quant/dequantize.cpp" "$cpp/quant/types.cpp" "$cpp/quant/type_errors.cpp" "$cpp/quant/repack.cpp"
                "$cpp/quant/gemm.cpp" "$cpp/quant/gemm_scalar.cpp" "$root/tests/cpp/test_kernels.cpp")
simd_sources=("$cpp/dispatch.cpp" "$cpp/simd/kernels.cpp" "$cpp/attention.cpp" "$cpp/kv_cache.cpp" "$cpp/threadpool.cpp"
              "$cpp/quant/types.cpp" "$root/tests/cpp/test_simd_kernels.cpp")
# The ISA-specific files of each group, with their flags (as CMakeLists.txt gives them).
avx2="-mavx2 -mfma -mf16c"
avx512="-mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c"
neon="-march=armv8.2-a+dotprod"
quant_x86=("$cpp/quant/x86_avx2.cpp:$avx2" "$cpp/quant/x86_avx2_gemm.cpp:$avx2"
           "$cpp/quant/x86_avx512.cpp:$avx512" "$cpp/quant/x86_avx512_gemm.cpp:$avx512")
simd_x86=("$cpp/simd/x86_avx2.cpp:$avx2" "$cpp/simd/x86_avx512.cpp:$avx512")
quant_neon=("$cpp/quant/arm_neon.cpp:$neon" "$cpp/quant/arm_neon_gemm.cpp:$neon")
simd_neon=("$cpp/simd/arm_neon.cpp:$neon")
flags=(-std=c++17 -O2 -Wall -Wextra -Werror -ffp-contract=off -I"$cpp")

# build_and_run COMPILER NAME SOURCES_ARRAY RUNNER... -- ISA_SOURCE:FLAGS...
build_and_run() {
    local cxx="$1" name="$2"; local -n sources="$3"; shift 3
    local runner=() extra=()
    # shellcheck disable=SC2206
    [[ "$cxx" == g++ ]] && extra=(${EXTRA_CXXFLAGS:-})
    while [[ "$1" != "--" ]]; do runner+=("$1"); shift; done
    shift
    local objs=()
    for spec in "$@"; do
        local src="${spec%%:*}" isa_flags="${spec#*:}"
        local obj="$out/$name-$(basename "$src" .cpp).o"
        # shellcheck disable=SC2086
        "$cxx" "${flags[@]}" "${extra[@]}" $isa_flags -c "$src" -o "$obj"
        # (DW.ref.__gxx_personality_v0 is data: the exception tables' pointer to the C++ runtime's
        # personality routine, which instrumented builds emit; it is not code of ours.)
        if nm -C "$obj" | grep -E ' [WVu] ' | grep -v ' DW\.ref\.__gxx_personality_v0$' ; then
            echo "FAIL $src: weak symbols above would let ISA-specific code replace baseline code"; exit 1
        fi
        objs+=("$obj")
    done
    "$cxx" "${flags[@]}" "${extra[@]}" "${sources[@]}" "${objs[@]}" -o "$out/$name" -pthread
    echo "== $name"
    "${runner[@]}" "$out/$name"
}

case "$(uname -m)" in
    x86_64)
        build_and_run g++ x86_64-quant quant_sources -- "${quant_x86[@]}"
        build_and_run g++ x86_64-simd simd_sources -- "${simd_x86[@]}"
        ;;
    aarch64)
        build_and_run g++ aarch64-quant quant_sources -- "${quant_neon[@]}"
        build_and_run g++ aarch64-simd simd_sources -- "${simd_neon[@]}"
        exit 0
        ;;
esac

if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
    build_and_run aarch64-linux-gnu-g++ aarch64-quant quant_sources qemu-aarch64 -L /usr/aarch64-linux-gnu -- "${quant_neon[@]}"
    build_and_run aarch64-linux-gnu-g++ aarch64-simd simd_sources qemu-aarch64 -L /usr/aarch64-linux-gnu -- "${simd_neon[@]}"
elif [[ "${1:-}" == "--require-cross" ]]; then
    echo "FAIL aarch64-linux-gnu-g++ / qemu-aarch64 not installed (apt-get install g++-aarch64-linux-gnu qemu-user)"
    exit 1
fi
