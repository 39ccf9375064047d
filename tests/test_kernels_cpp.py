"""Runs tests/cpp/run_kernel_tests.sh: the C++ kernel test program built natively (x86 levels) and
cross-built for aarch64 and run under qemu (the NEON level), plus its check that no ISA-specific
object exports weak symbols. Needs g++, and on x86-64 g++-aarch64-linux-gnu and qemu-user
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
        assert "levels: scalar avx2" in proc.stdout  # this machine has at least AVX2
        assert "levels: scalar neon; 0 failures" in proc.stdout
