"""pyllama: run Llama-family GGUF models on the CPU from Python."""
from ._core import PyllamaError

__all__ = ["PyllamaError"]
