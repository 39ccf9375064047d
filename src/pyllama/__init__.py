"""pyllama: run Llama-family GGUF models on the CPU from Python.

    import pyllama
    model = pyllama.Model("model.gguf")
    for chunk in model.generate("The height of Mount Fuji is", max_tokens=64):
        print(chunk.text, end="", flush=True)

    pyllama.quantize("model.F16.gguf", "model.Q4_K_M.gguf", "Q4_K_M")
"""
from ._core import PyllamaError
# The function pyllama.convert replaces the attribute of the same name that importing the
# subpackage pyllama.convert sets; the subpackage stays importable (from pyllama.convert import ...).
from .convert import ConversionSummary, convert
from ._quantize import quantize
from .model import Chunk, Model
from .sampling import SamplingParams
from .tokenizer import Tokenizer

__all__ = ["Chunk", "ConversionSummary", "Model", "PyllamaError", "SamplingParams", "Tokenizer", "convert",
           "quantize"]
