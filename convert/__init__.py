"""Checkpoint conversion: Meta and Hugging Face Llama checkpoints to GGUF, without PyTorch.

Installed as the subpackage ``pyllama.convert``. Its public entry point is the function of the
same name, which pyllama's __init__ binds over the subpackage attribute: ``pyllama.convert`` is
the function, and the modules here are imported with ``from pyllama.convert import ...``.
"""
from .converter import ConversionSummary, convert

__all__ = ["ConversionSummary", "convert"]
