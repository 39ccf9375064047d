"""pyllama.convert: a Meta or Hugging Face Llama checkpoint folder -> a GGUF file.

The file is written tensor by tensor, a few megabytes at a time, to a temporary file beside the
destination, which is renamed only once complete: the destination never holds a half-written
file. Quantized types go through an unquantized temporary GGUF that pyllama.quantize reads.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .._core import PyllamaError
from .gguf_writer import GGML_BF16, GGML_F16, GGML_F32, GGUFStreamWriter, Metadata, TensorInfo
from .hf_source import is_hf_folder, open_hf
from .meta_source import is_meta_folder, open_meta
from .model_plan import ARCH, ModelPlan

PathLike = Union[str, "os.PathLike[str]"]

# Output type name -> (ggml type of 2-D weights, general.file_type as llama.cpp numbers it).
FLOAT_TYPES = {"F32": (GGML_F32, 0), "F16": (GGML_F16, 1), "BF16": (GGML_BF16, 32)}
GGML_QUANT_VERSION = 2
CHUNK_BYTES = 4 << 20  # float32 bytes converted at a time


@dataclass(frozen=True)
class ConversionSummary:
    """What pyllama.convert did."""
    source: str
    destination: str
    source_format: str   # "meta" or "hf"
    type: str            # the output type, e.g. "F16" or "Q4_K_M"
    n_tensors: int
    n_parameters: int
    source_bytes: int    # size of the checkpoint's weight files
    output_bytes: int
    seconds: float

    def __str__(self) -> str:
        return (f"{self.destination}: {self.type}, {self.n_tensors} tensors, {self.n_parameters / 1e6:.1f}M parameters, "
                f"{self.output_bytes / 1e6:.1f} MB from {self.source_bytes / 1e6:.1f} MB of {self.source_format} "
                f"checkpoint in {self.seconds:.1f} s")


def convert(src: PathLike, dst: PathLike, *, type: str = "Q4_K_M", tokenizer_model: Optional[PathLike] = None,
            force: bool = False, progress: bool = True, n_threads: Optional[int] = None) -> ConversionSummary:
    """Convert a Llama checkpoint folder to a GGUF file.

    src: a Meta folder (params.json, consolidated.NN.pth, tokenizer.model here or in the parent
        folder) or a Hugging Face folder (config.json, model*.safetensors or pytorch_model*.bin,
        tokenizer.model or tokenizer.json, tokenizer_config.json).
    dst: the .gguf to write; an existing file is an error (FileExistsError) unless force=True.
    type: "F32", "F16" or "BF16" (1-D norm weights stay F32, as llama.cpp writes them), or a
        quantized type such as "Q4_K_M" or "Q8_0", made by pyllama.quantize from an F16
        intermediate (F32 when the checkpoint is not F16, so nothing is rounded twice).
    tokenizer_model: a SentencePiece tokenizer.model to use instead of the folder's.
    progress: show a progress bar (tqdm). n_threads: threads for quantization.
    Raises FileNotFoundError for missing files, PyllamaError (a ValueError) for anything
    malformed or unsupported, OSError when the destination cannot be written.
    """
    start = time.monotonic()
    type_name = _check_type(type)
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
    src_path, dst_path = Path(os.fspath(src)), Path(os.fspath(dst))
    _check_destination(dst_path, force)
    quantize = None if type_name in FLOAT_TYPES else _quantizer()
    plan = open_checkpoint(src_path, None if tokenizer_model is None else Path(os.fspath(tokenizer_model)))
    try:
        sources = {os.path.realpath(f.path) for f in plan.files}
        if os.path.realpath(dst_path) in sources:
            raise ValueError(f"{dst_path}: the destination is one of the checkpoint's own files")
        plan.check()
        source_bytes = sum(f.size for f in plan.files)
        if quantize is None:
            with _atomic_destination(dst_path, force) as tmp:
                n_tensors, n_params = write_gguf(plan, tmp, type_name, progress, str(dst_path))
        else:
            # F16 sources quantize from F16 (as llama.cpp's usual f16 -> llama-quantize route);
            # anything else from F32, which holds F32 and BF16 weights exactly.
            all_f16 = all(t.dtype == "F16" for t in plan.tensors.values() if len(t.shape) == 2)
            with _temporary_file(dst_path.parent, dst_path.name + ".") as intermediate:
                n_tensors, n_params = write_gguf(plan, intermediate, "F16" if all_f16 else "F32", progress,
                                                 f"the intermediate file for {dst_path}")
                plan.close()  # the checkpoint is no longer needed while quantizing
                with _atomic_destination(dst_path, force) as tmp:
                    quantize(intermediate, tmp, type_name, n_threads=n_threads, force=True, progress=progress)
    finally:
        plan.close()
    return ConversionSummary(str(src_path), str(dst_path), plan.source_format, type_name, n_tensors, n_params,
                             source_bytes, dst_path.stat().st_size, time.monotonic() - start)


def open_checkpoint(folder: Path, tokenizer_model: Optional[Path]) -> ModelPlan:
    """The conversion plan of a checkpoint folder, whichever format it is."""
    if not folder.exists():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    if not folder.is_dir():
        raise PyllamaError(f"{folder}: expected a checkpoint folder, not a file")
    if is_hf_folder(folder):
        return open_hf(folder, tokenizer_model)
    if is_meta_folder(folder):
        return open_meta(folder, tokenizer_model)
    if (folder / "config.json").is_file():
        raise PyllamaError(f"{folder}: config.json but no model*.safetensors or pytorch_model*.bin weights")
    raise PyllamaError(f"{folder}: neither a Hugging Face checkpoint (config.json and model*.safetensors or "
                       "pytorch_model*.bin) nor a Meta one (params.json and consolidated.NN.pth)")


def _check_type(type_name: object) -> str:
    if not isinstance(type_name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", type_name):
        raise ValueError(f"type must be a type name such as 'F16' or 'Q4_K_M', got {type_name!r}")
    return type_name.upper()


def _quantizer() -> Callable[..., object]:
    try:
        from .. import quantize  # pyllama.quantize, imported only when needed
    except ImportError as exc:
        raise PyllamaError(f"quantized output needs pyllama.quantize, which is not available: {exc}") from None
    return quantize


def _check_destination(dst: Path, force: bool) -> None:
    if dst.is_dir():
        raise IsADirectoryError(errno.EISDIR, "the destination is a folder", str(dst))
    if not force and (dst.exists() or dst.is_symlink()):
        raise FileExistsError(errno.EEXIST, "the destination exists (pass force=True to replace it)", str(dst))
    if not dst.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the destination's folder does not exist", str(dst.parent))


@contextmanager
def _temporary_file(folder: Path, prefix: str) -> Iterator[str]:
    """A new empty file in `folder` (with the permissions any new file gets), deleted on leaving."""
    while True:
        name = str(folder / f".{prefix}{secrets.token_hex(6)}.tmp")
        try:
            open(name, "xb").close()
            break
        except FileExistsError:
            continue
    try:
        yield name
    finally:
        if os.path.exists(name):
            os.unlink(name)


@contextmanager
def _atomic_destination(dst: Path, force: bool) -> Iterator[str]:
    """A temporary path beside `dst` to write; renamed to `dst` if the block succeeds."""
    with _temporary_file(dst.parent, dst.name + ".") as tmp:
        yield tmp
        _check_destination(dst, force)  # again: it may have appeared meanwhile
        os.replace(tmp, dst)


def _output_infos(plan: ModelPlan, type_name: str) -> List[Tuple[TensorInfo, str]]:
    """Tensors in llama.cpp's loading order (by layer, then name) with their GGUF types:
    1-D tensors stay F32."""
    weight_type = FLOAT_TYPES[type_name][0]

    def order(name: str) -> Tuple[int, str]:
        m = re.match(r"blk\.(\d+)\.", name)
        return (int(m.group(1)) if m else -1, name)

    return [(TensorInfo(name, plan.tensors[name].shape, GGML_F32 if len(plan.tensors[name].shape) == 1 else weight_type),
             name) for name in sorted(plan.tensors, key=order)]


def _metadata(plan: ModelPlan, type_name: str) -> Metadata:
    md = Metadata()
    md.add_string("general.architecture", ARCH)
    md.add_string("general.type", "model")
    md.add_string("general.name", plan.name)
    plan.params.add_to(md)
    md.add_uint32("general.file_type", FLOAT_TYPES[type_name][1])
    md.add_uint32("general.quantization_version", GGML_QUANT_VERSION)
    plan.vocab.add_to(md)
    return md


def encode(values: np.ndarray, ggml_type: int) -> np.ndarray:
    """float32 values in a GGUF float type, rounded as llama.cpp's converter rounds them."""
    if ggml_type == GGML_F32:
        return values.astype("<f4", copy=False)
    if ggml_type == GGML_F16:
        with np.errstate(over="ignore"):  # beyond F16's range becomes inf, as in llama.cpp
            return values.astype("<f2")
    # BF16: round to nearest even; NaNs stay NaN (made quiet) instead of rounding to inf.
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    bits = np.where((bits & 0x7FFFFFFF) > 0x7F800000, (bits & np.uint32(0xFFFF0000)) | np.uint32(64 << 16), bits)
    return ((bits.astype(np.uint64) + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype("<u2")


def write_gguf(plan: ModelPlan, path: str, type_name: str, progress: bool, target: str) -> Tuple[int, int]:
    """Write the plan as a GGUF file of `type_name` ("F32", "F16" or "BF16") to `path`; `target`
    names the file in error messages. Returns (tensor count, parameter count)."""
    infos = _output_infos(plan, type_name)
    md = _metadata(plan, type_name)
    bar = None
    try:
        with open(path, "wb", buffering=0) as f:
            writer = GGUFStreamWriter(f, md, [info for info, _ in infos], target)
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=writer.total_bytes, unit="B", unit_scale=True, desc=os.path.basename(target))
            for info, name in infos:
                writer.write_tensor(_chunks(plan.tensors[name], info.ggml_type, bar))
            writer.finish()
    finally:
        if bar is not None:
            bar.close()
    return len(infos), sum(int(np.prod(info.shape)) for info, _ in infos)


def _chunks(tensor, ggml_type: int, bar) -> Iterator[np.ndarray]:
    row_bytes = 4 * max(1, tensor.n_elements // max(1, tensor.n_rows))
    step = max(1, CHUNK_BYTES // row_bytes)
    for start in range(0, tensor.n_rows, step):
        out = encode(tensor.rows(start, min(start + step, tensor.n_rows)), ggml_type)
        if bar is not None:
            bar.update(out.nbytes)
        yield out
