"""pyllama: run Llama-family GGUF models on the CPU from Python."""
from ._core import PyllamaError
from .tokenizer import Tokenizer

__all__ = ["PyllamaError", "Tokenizer"]
