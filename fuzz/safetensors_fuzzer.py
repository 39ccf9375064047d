"""atheris target: the safetensors reader (convert/safetensors_reader.py).

    python fuzz/safetensors_fuzzer.py -runs=N [libFuzzer flags] WORK_DIR fuzz/corpus/safetensors
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports(include=["pyllama.convert", "json"]):
    import checks

if __name__ == "__main__":
    checks.fuzz_main(checks.check_safetensors)
