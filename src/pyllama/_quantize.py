"""pyllama.quantize(): write a GGUF model with its weights converted to another type, as llama.cpp's
llama-quantize does (same per-tensor types, same bytes, same file layout).

The source is read tensor by tensor and converted a slab of rows at a time, so memory stays
bounded whatever the model size. The output goes to a temporary file beside the destination,
renamed into place only once complete.
"""
from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, List, NamedTuple, Optional, Union

from . import _core
from ._gguf_layout import header, padding, tensor_info, uint32_entry
from ._quant_rule import FILE_TYPES, ModelShape, TensorSpec, n_dims, plan
from ._system import physical_cores

QUANTIZATION_VERSION = 2  # ggml's GGML_QNT_VERSION, recorded as general.quantization_version
SLAB_ELEMENTS = 1 << 23   # elements converted per step (32 MiB as floats)

# Keys llama-quantize does not copy: the two it sets at the end, and split-file bookkeeping.
_REPLACED_KEYS = ("general.quantization_version", "general.file_type")
_DROPPED_KEYS = ("split.no", "split.count", "split.tensors.count")

PathLike = Union[str, "os.PathLike[str]"]


class _GGMLType(NamedTuple):
    id: int
    block_size: int
    type_size: int
    can_dequantize: bool
    can_quantize: bool


_TYPES: Dict[str, _GGMLType] = {name: _GGMLType(*info) for name, info in _core.ggml_types().items()}


@dataclass(frozen=True)
class _Tensor:
    """One tensor of the output: where its source bytes are and what it becomes."""
    spec: TensorSpec
    new_type: str
    src_offset: int  # in the source file
    offset: int      # in the output's data section

    @property
    def row_len(self) -> int:
        return self.spec.shape[0]

    @property
    def n_rows(self) -> int:
        n = 1
        for d in self.spec.shape[1:]:
            n *= d
        return n

    def row_bytes(self, type_name: str) -> int:
        t = _TYPES[type_name]
        return self.row_len // t.block_size * t.type_size

    @property
    def src_nbytes(self) -> int:
        return self.n_rows * self.row_bytes(self.spec.type)

    @property
    def nbytes(self) -> int:
        return self.n_rows * self.row_bytes(self.new_type)


def quantize(src: PathLike, dst: PathLike, type: str = "Q4_K_M", *, n_threads: Optional[int] = None,
             force: bool = False, progress: bool = False) -> Path:
    """Write `dst`, the GGUF model `src` with its weights converted to `type`.

    `type` is a llama.cpp file type (any case): Q4_K_M (default), Q4_K_S, Q5_K_M, Q5_K_S, Q6_K,
    Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16 or F32. Each tensor gets the type llama-quantize
    (without an importance matrix) gives it in such a file, and the same bytes. `src` may hold
    F32/F16/BF16 or already quantized weights (they are dequantized first; tensors already of
    their target type are copied). Metadata is copied, with general.file_type and
    general.quantization_version set.

    Raises ValueError for an unknown type, FileNotFoundError for a missing source,
    FileExistsError if `dst` exists and `force` is false, and PyllamaError (a ValueError) for a
    source pyllama cannot quantize. No file is left under `dst` unless it is complete.
    Returns the destination path.
    """
    file_type = _file_type(type)
    src_path, dst_path = Path(os.fspath(src)), Path(os.fspath(dst))
    if not src_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "source model not found", str(src_path))
    if not force and dst_path.exists():
        raise FileExistsError(errno.EEXIST, "destination exists (not replaced unless forced)", str(dst_path))
    if not dst_path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "destination folder not found", str(dst_path.parent))
    threads = physical_cores() if n_threads is None else n_threads
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")

    source = _core.GGUFFile(src_path)
    tensors = _output_tensors(source, file_type)
    kv = _output_metadata(source, file_type)
    infos = [tensor_info(t.spec.name, t.spec.shape[:n_dims(t.spec.shape)], _TYPES[t.new_type].id, t.offset)
             for t in tensors]

    tmp = dst_path.parent / f".{dst_path.name}.{secrets.token_hex(4)}.part"
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(t.src_nbytes for t in tensors), unit="B", unit_scale=True, desc=dst_path.name)
    try:
        with open(tmp, "xb") as out, open(src_path, "rb") as inp:
            out.write(header(kv, infos, source.alignment))
            for t in tensors:
                if bar is not None:
                    bar.set_postfix_str(_describe(t), refresh=False)
                _write_tensor(out, inp, source, t, threads)
                out.write(bytes(padding(t.nbytes, source.alignment)))
                if bar is not None:
                    bar.update(t.src_nbytes)
            out.flush()
            os.fsync(out.fileno())
        if not force and dst_path.exists():
            raise FileExistsError(errno.EEXIST, "destination appeared while quantizing", str(dst_path))
        os.replace(tmp, dst_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        if bar is not None:
            bar.close()
    return dst_path


def _file_type(name: str) -> str:
    key = name.upper() if isinstance(name, str) else name
    if key not in FILE_TYPES:
        raise ValueError(f"unknown quantization type {name!r}; valid types: {', '.join(FILE_TYPES)}")
    return key


def _model_shape(source: "_core.GGUFFile") -> ModelShape:
    arch = source.get_string("general.architecture")
    if arch != "llama":
        raise _core.PyllamaError(f"{source.path}: architecture {arch!r} cannot be quantized "
                                 "(pyllama quantizes 'llama' models)")
    n_layer = source.get_u32("llama.block_count")
    n_head = source.get_u32("llama.attention.head_count")
    if n_layer is None or n_head is None:
        raise _core.PyllamaError(f"{source.path}: missing llama.block_count or llama.attention.head_count")
    n_head_kv = source.get_u32("llama.attention.head_count_kv")
    return ModelShape(n_layer=n_layer, n_head=n_head, n_head_kv=n_head if n_head_kv is None else n_head_kv,
                      n_expert=source.get_u32("llama.expert_count") or 0)


def _output_tensors(source: "_core.GGUFFile", file_type: str) -> List[_Tensor]:
    """The output's tensors in order, with their types and data offsets; refuses, before anything
    is written, a tensor whose source type cannot be converted."""
    if (source.get_uint("split.count") or 1) > 1:
        raise _core.PyllamaError(f"{source.path}: split GGUF files cannot be quantized")
    specs = [TensorSpec(t.name, tuple(t.shape), t.type_name) for t in source.tensors]
    src_offsets = {t.name: source.data_offset + t.offset for t in source.tensors}
    tensors: List[_Tensor] = []
    offset = 0
    for spec, new_type in plan(file_type, specs, _model_shape(source)):
        if new_type != spec.type and not _TYPES[spec.type].can_dequantize:
            raise _core.PyllamaError(f"{source.path}: tensor '{spec.name}' is {spec.type}, which pyllama "
                                     f"cannot convert to {new_type}")
        t = _Tensor(spec, new_type, src_offsets[spec.name], offset)
        tensors.append(t)
        offset += t.nbytes + padding(t.nbytes, source.alignment)
    return tensors


def _output_metadata(source: "_core.GGUFFile", file_type: str) -> List[bytes]:
    """The source's key-value entries in order, then general.quantization_version and
    general.file_type (llama.cpp moves a key it sets to the end)."""
    # A general.alignment entry is kept, and the output is laid out with it. (llama.cpp keeps the
    # entry too but always pads to 32 bytes, which breaks the file for any other alignment.)
    entries = [record for key, record in source.kv_records() if key not in _REPLACED_KEYS + _DROPPED_KEYS]
    entries.append(uint32_entry("general.quantization_version", QUANTIZATION_VERSION))
    entries.append(uint32_entry("general.file_type", FILE_TYPES[file_type][0]))
    return entries


def _write_tensor(out: BinaryIO, inp: BinaryIO, source: "_core.GGUFFile", t: _Tensor, n_threads: int) -> None:
    """Append tensor t's output bytes: a copy when its type does not change, else its rows
    converted a slab at a time."""
    if t.row_len == 0 or t.n_rows == 0:
        return
    src_row = t.row_bytes(t.spec.type)
    rows_per_slab = max(1, SLAB_ELEMENTS // max(1, t.row_len))
    buf = bytearray(min(t.n_rows, rows_per_slab) * src_row)
    inp.seek(t.src_offset)
    for first in range(0, t.n_rows, rows_per_slab):
        n_rows = min(rows_per_slab, t.n_rows - first)
        view = memoryview(buf)[:n_rows * src_row]
        if inp.readinto(view) != len(view):
            raise _core.PyllamaError(f"{source.path}: file ends inside tensor '{t.spec.name}'")
        if t.new_type == t.spec.type:
            out.write(view)
            continue
        new_id = _TYPES[t.new_type].id
        rows = _core.requantize(_TYPES[t.spec.type].id, view, new_id, t.row_len, n_threads)
        if not _core.row_data_is_valid(new_id, rows, n_rows * t.row_len):
            raise _core.PyllamaError(
                f"{source.path}: tensor '{t.spec.name}' has infinite or NaN values as {t.new_type} "
                "(its weights hold inf/NaN or exceed the range of the type's fp16 scales)")
        out.write(rows)


def _describe(t: _Tensor) -> str:
    """The progress bar's note on the tensor being written, e.g. "blk.0.ffn_down.weight F16->Q6_K"."""
    change = t.spec.type if t.new_type == t.spec.type else f"{t.spec.type}->{t.new_type}"
    return f"{t.spec.name} {change}"
