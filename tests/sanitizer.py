"""The CI's AddressSanitizer job runs the suite with PYLLAMA_SANITIZED=1 on a sanitized build.
ASan's shadow memory and allocation quarantine change how much memory a process holds, so tests
that measure resident memory are skipped there (they run in the normal build); nothing else is."""
import os

import pytest

SANITIZED = os.environ.get("PYLLAMA_SANITIZED") == "1"

measures_memory = pytest.mark.skipif(
    SANITIZED, reason="measures resident memory, which AddressSanitizer changes (runs in the normal build)")
