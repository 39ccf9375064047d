#!/usr/bin/env bash
# Builds bench/vec_dot_bench.cpp with the kernel sources and the per-file instruction-set flags
# CMakeLists.txt uses (Release: -O3), then runs it. Usage: bench/vec_dot_bench.sh [N [RUNS]]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cpp="$root/src/cpp"
flags=(-std=c++17 -O3 -DNDEBUG -ffp-contract=off -I"$cpp")
sources=("$cpp/dispatch.cpp" "$cpp/quant/kernels.cpp" "$cpp/quant/vec_dot_scalar.cpp" "$cpp/quant/quantize_act.cpp"
         "$cpp/quant/types.cpp" "$cpp/quant/type_errors.cpp" "$root/bench/vec_dot_bench.cpp")
case "$(uname -m)" in
    x86_64)
        g++ "${flags[@]}" -mavx2 -mfma -mf16c -c "$cpp/quant/x86_avx2.cpp" -o "$out/avx2.o"
        g++ "${flags[@]}" -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c \
            -c "$cpp/quant/x86_avx512.cpp" -o "$out/avx512.o"
        ;;
    aarch64) g++ "${flags[@]}" -march=armv8.2-a+dotprod -c "$cpp/quant/arm_neon.cpp" -o "$out/neon.o" ;;
esac
g++ "${flags[@]}" "${sources[@]}" "$out"/*.o -o "$out/vec_dot_bench" -pthread
"$out/vec_dot_bench" "$@"
