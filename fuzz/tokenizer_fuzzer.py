"""atheris target: the tokenizer built from GGUF metadata (Tokenizer.from_metadata), encode and decode.

    python fuzz/tokenizer_fuzzer.py -runs=N [libFuzzer flags] WORK_DIR fuzz/corpus/tokenizer
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports(include=["pyllama"]):
    import checks

if __name__ == "__main__":
    checks.fuzz_main(checks.check_gguf)
