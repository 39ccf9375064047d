"""pyllama: run Llama-family GGUF models on the CPU from Python.

    import pyllama
    model = pyllama.Model("model.gguf")
    for chunk in model.generate("The height of Mount Fuji is", max_tokens=64):
        print(chunk.text, end="", flush=True)

    pyllama.quantize("model.F16.gguf", "model.Q4_K_M.gguf", "Q4_K_M")
"""
import logging

from ._core import PyllamaError
# The function pyllama.convert replaces the attribute of the same name that importing the
# subpackage pyllama.convert sets; the subpackage stays importable (from pyllama.convert import ...).
from .convert import ConversionSummary, convert
from ._quantize import quantize
from .chat import ChatTemplateError
from .generation import Chunk, Completion, Generation, GenerationStats, TokenLogprob
from .model import Model
from .scoring import Perplexity
from .sampling import SamplingParams
from .tokenizer import Tokenizer

# A library logs and lets the application decide: without this, Python's last-resort handler
# would print warnings to stderr.
logging.getLogger("pyllama").addHandler(logging.NullHandler())

__all__ = ["ChatTemplateError", "Chunk", "Completion", "ConversionSummary", "Generation", "GenerationStats", "Model",
           "Perplexity", "PyllamaError", "SamplingParams", "TokenLogprob", "Tokenizer", "convert", "quantize"]
