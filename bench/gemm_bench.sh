#!/usr/bin/env bash
# Builds and runs bench/gemm_bench.cpp against the core sources (x86-64).
# Usage: bench/gemm_bench.sh [THREADS] [cold | one Q4_K|Q6_K N_IN N_OUT N_TOKENS]
# GEMM_BENCH_DIR=DIR keeps the build (DIR/gemm_bench) for repeated runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${GEMM_BENCH_DIR:-$(mktemp -d)}"
[[ -n "${GEMM_BENCH_DIR:-}" ]] || trap 'rm -rf "$out"' EXIT
cpp="$root/src/cpp"
flags=(-std=c++17 -O3 -ffp-contract=off -I"$cpp")
objs=()
for spec in "$cpp/quant/x86_avx2.cpp:-mavx2 -mfma -mf16c" "$cpp/quant/x86_avx2_gemm.cpp:-mavx2 -mfma -mf16c" \
            "$cpp/quant/x86_avx512.cpp:-mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c" \
            "$cpp/quant/x86_avx512_gemm.cpp:-mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c"; do
    src="${spec%%:*}"
    # shellcheck disable=SC2086
    g++ "${flags[@]}" ${spec#*:} -c "$src" -o "$out/$(basename "$src" .cpp).o"
    objs+=("$out/$(basename "$src" .cpp).o")
done
g++ "${flags[@]}" "$root/bench/gemm_bench.cpp" "$cpp"/dispatch.cpp "$cpp"/ops.cpp "$cpp"/threadpool.cpp \
    $(ls "$cpp"/quant/*.cpp | grep -v '/x86_\|/arm_') "${objs[@]}" -o "$out/gemm_bench" -pthread
"$out/gemm_bench" "$@"
