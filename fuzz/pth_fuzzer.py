"""atheris target: the PyTorch checkpoint reader (convert/pth_reader.py: zip archive + restricted unpickler).

    python fuzz/pth_fuzzer.py -runs=N [libFuzzer flags] WORK_DIR fuzz/corpus/pth
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports(include=["pyllama.convert", "zipfile"]):
    import checks

if __name__ == "__main__":
    checks.fuzz_main(checks.check_pth)
