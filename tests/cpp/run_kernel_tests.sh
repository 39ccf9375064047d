#!/usr/bin/env bash
# Builds tests/cpp/test_kernels.cpp with the kernel sources natively (x86-64: the AVX2 and AVX-512
# levels) and, when the cross toolchain is installed (g++-aarch64-linux-gnu, qemu-user), for
# aarch64 (the NEON level) run under qemu-aarch64. Also checks that the ISA-specific objects
# define no weak (COMDAT) symbols: an inline function compiled with AVX/dotprod flags could be
# picked by the linker for the baseline code and fault on older CPUs.
# Usage: tests/cpp/run_kernel_tests.sh [--require-cross]
# EXTRA_CXXFLAGS are added to the native build only (the CI passes the sanitizers, which
# qemu-user cannot host).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cpp="$root/src/cpp"
common=("$cpp/dispatch.cpp" "$cpp/quant/kernels.cpp" "$cpp/quant/vec_dot_scalar.cpp" "$cpp/quant/quantize_act.cpp"
        "$cpp/quant/dequantize.cpp" "$cpp/quant/types.cpp" "$cpp/quant/type_errors.cpp" "$root/tests/cpp/test_kernels.cpp")
flags=(-std=c++17 -O2 -Wall -Wextra -Werror -ffp-contract=off -I"$cpp")

# build_and_run COMPILER NAME RUNNER... -- ISA_SOURCE:FLAGS...
build_and_run() {
    local cxx="$1" name="$2"; shift 2
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
        if nm -C "$obj" | grep -E ' [WVu] ' ; then
            echo "FAIL $src: weak symbols above would let ISA-specific code replace baseline code"; exit 1
        fi
        objs+=("$obj")
    done
    "$cxx" "${flags[@]}" "${extra[@]}" "${common[@]}" "${objs[@]}" -o "$out/$name" -pthread
    echo "== $name"
    "${runner[@]}" "$out/$name"
}

case "$(uname -m)" in
    x86_64)
        build_and_run g++ x86_64 -- \
            "$cpp/quant/x86_avx2.cpp:-mavx2 -mfma -mf16c" \
            "$cpp/quant/x86_avx512.cpp:-mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c"
        ;;
    aarch64)
        build_and_run g++ aarch64 -- "$cpp/quant/arm_neon.cpp:-march=armv8.2-a+dotprod"
        exit 0
        ;;
esac

if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
    build_and_run aarch64-linux-gnu-g++ aarch64 qemu-aarch64 -L /usr/aarch64-linux-gnu -- \
        "$cpp/quant/arm_neon.cpp:-march=armv8.2-a+dotprod"
elif [[ "${1:-}" == "--require-cross" ]]; then
    echo "FAIL aarch64-linux-gnu-g++ / qemu-aarch64 not installed (apt-get install g++-aarch64-linux-gnu qemu-user)"
    exit 1
fi
