"""Runs tests/cpp/run_kernel_tests.sh: the C++ test programs of the matmul kernels and of the simd/
kernels with attention, built natively (x86 levels) and cross-built for aarch64 and run under qemu
(the NEON level), plus its check that no ISA-specific object exports weak symbols. Needs g++, and on x86-64 g++-aarch64-linux-gnu and qemu-user
(.ci/run installs them)."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent / "cpp" / "run_kernel_tests.sh"


def test_cpp_kernel_tests_pass():
    proc = subprocess.run([str(SCRIPT), "--require-cross"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    if platform.machine() in ("x86_64", "AMD64"):
        for program in ("x86_64-quant", "x86_64-simd", "aarch64-quant", "aarch64-simd"):
            assert f"== {program}\n" in proc.stdout
        assert "\nsimd: " in proc.stdout
        assert proc.stdout.count("levels: scalar avx2") == 2  # this machine has at least AVX2
        assert proc.stdout.count("levels: scalar neon; 0 failures") == 2
