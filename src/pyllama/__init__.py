"""pyllama: run Llama-family GGUF models on the CPU from Python.

    import pyllama
    model = pyllama.Model("model.gguf")
    for chunk in model.generate("The height of Mount Fuji is", max_tokens=64):
        print(chunk.text, end="", flush=True)

    pyllama.quantize("model.F16.gguf", "model.Q4_K_M.gguf", "Q4_K_M")
"""
from ._core import PyllamaError
from ._quantize import quantize
from .model import Chunk, Model
from .sampling import SamplingParams
from .tokenizer import Tokenizer

__all__ = ["Chunk", "Model", "PyllamaError", "SamplingParams", "Tokenizer", "quantize"]
