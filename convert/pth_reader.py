"""PyTorch checkpoints (.pth, pytorch_model.bin) read without PyTorch and without running their code.

``torch.save`` writes a zip file: ``<name>/data.pkl`` is a pickle of the state dict, and each
tensor storage's raw bytes are a member ``<name>/data/<key>``, stored uncompressed. A pickle can
call any importable function, so it is read by an unpickler that knows only the handful of
globals a state dict of tensors needs, each mapped to a builder of our own; any other global
raises an error naming it, before anything is called. Tensors come out lazy: a shape, strides
and a place in the file, checked against the storage's size, and read only when asked.

The pre-1.6 format (a bare sequence of pickles, or a tar file) is refused.
"""
from __future__ import annotations

import lzma
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any, Dict, Tuple

from .._core import PyllamaError
from .tensors import STORED_DTYPES, RawFile, SourceTensor, StoredTensor, UnreadableTensor, open_and_load

# torch.<X>Storage -> our element type names ("F32" ... readable; the rest are recognised so that
# a checkpoint holding, say, an int64 buffer still loads, but cannot be converted).
_STORAGE_TYPES = {
    "FloatStorage": ("F32", 4), "HalfStorage": ("F16", 2), "BFloat16Storage": ("BF16", 2),
    "DoubleStorage": ("F64", 8), "LongStorage": ("I64", 8), "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2), "CharStorage": ("I8", 1), "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
}
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"


class _StorageType:
    """What the unpickler gives for torch.<X>Storage: only its element type."""
    __slots__ = ("dtype", "itemsize")

    def __init__(self, dtype: str, itemsize: int) -> None:
        self.dtype, self.itemsize = dtype, itemsize

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("unexpected state for a storage type")


class _Storage:
    """One tensor storage: where its bytes are in the file, how many elements, of which type."""
    __slots__ = ("key", "offset", "numel", "type")

    def __init__(self, key: str, offset: int, numel: int, storage_type: _StorageType) -> None:
        self.key, self.offset, self.numel, self.type = key, offset, numel, storage_type

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("unexpected state for a storage")


class _StateDict(dict):
    """collections.OrderedDict as the unpickler builds it. A module's state_dict() carries a
    ``_metadata`` attribute (pickled as BUILD state); it is dropped."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("unexpected state for a dict")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: str, zf: zipfile.ZipFile, raw: RawFile, prefix: str) -> None:
        super().__init__(file)
        self._path, self._zf, self._raw, self._prefix = path, zf, raw, prefix
        self._storages: Dict[str, _Storage] = {}
        self._globals = {
            ("collections", "OrderedDict"): _StateDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            **{("torch", name): _StorageType(*kind) for name, kind in _STORAGE_TYPES.items()},
        }

    def find_class(self, module: str, name: str) -> Any:
        found = self._globals.get((module, name))
        if found is None:
            raise PyllamaError(f"{self._path}: the checkpoint's pickle refers to {module}.{name}, which a file "
                               "of weights does not need; refusing to load it (it could run code)")
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        # torch.save: ("storage", storage type, key, device, number of elements)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0):
            raise PyllamaError(f"{self._path}: malformed storage reference {pid!r} in the pickle")
        _, storage_type, key, _, numel = pid
        known = self._storages.get(key)
        if known is not None:
            if known.type is not storage_type or known.numel != numel:
                raise PyllamaError(f"{self._path}: storage {key!r} is referenced with two different types or sizes")
            return known
        member = f"{self._prefix}data/{key}"
        offset, size = _member_data(self._zf, member, self._raw, self._path)
        if size != numel * storage_type.itemsize:
            raise PyllamaError(f"{self._path}: storage {member} holds {size} bytes, but the pickle says "
                               f"{numel} elements of {storage_type.itemsize} bytes")
        storage = self._storages[key] = _Storage(key, offset, numel, storage_type)
        return storage

    def _rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any, stride: Any,
                           requires_grad: Any = False, backward_hooks: Any = None, metadata: Any = None
                           ) -> SourceTensor:
        if not isinstance(storage, _Storage):
            raise PyllamaError(f"{self._path}: a tensor in the pickle has no storage")
        where = f"{self._path}: storage {storage.key}"
        if not (_is_index(storage_offset) and _is_index_tuple(size) and _is_index_tuple(stride)):
            raise PyllamaError(f"{where}: malformed tensor (offset {storage_offset!r}, size {size!r}, "
                               f"stride {stride!r})")
        if storage_offset > storage.numel:
            raise PyllamaError(f"{where}: tensor offset {storage_offset} is past the storage's "
                               f"{storage.numel} elements")
        kind = storage.type
        if kind.dtype not in STORED_DTYPES or not size:  # other types and scalars: never weights
            return UnreadableTensor(tuple(size), kind.dtype, where)
        return StoredTensor(self._raw, storage.offset + storage_offset * kind.itemsize,
                            (storage.numel - storage_offset) * kind.itemsize, size, stride, kind.dtype, where)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """nn.Parameter(tensor): the tensor."""
    if not isinstance(data, SourceTensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_index_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(_is_index(v) for v in value)


def _member_data(zf: zipfile.ZipFile, name: str, raw: RawFile, path: str) -> Tuple[int, int]:
    """(file offset, size) of an uncompressed zip member's bytes, read from its local header."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise PyllamaError(f"{path}: the pickle refers to storage {name}, which the archive lacks") from None
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
        raise PyllamaError(f"{path}: storage {name} is compressed or encrypted; torch.save stores them plainly")
    header = raw.read(info.header_offset, _LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_SIGNATURE:
        raise PyllamaError(f"{path}: bad zip local header for {name}")
    name_len, extra_len = fields[-2], fields[-1]
    offset = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if offset + info.file_size > raw.size:
        raise PyllamaError(f"{path}: storage {name} runs past the end of the file")
    return offset, info.file_size


def load_pth(path: str) -> Tuple[RawFile, Dict[str, SourceTensor]]:
    """The tensors of a torch.save'd state dict, by name, and the open file they read from
    (the caller closes it). Raises PyllamaError if the file is not such a checkpoint."""
    return open_and_load(path, _load)


# What the zipfile module raises on a malformed archive besides BadZipFile: an unsupported or
# encrypted member, a corrupt compressed stream, a record cut short.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
               zlib.error, lzma.LZMAError, OSError, ValueError, struct.error)


def _load(path: str, raw: RawFile) -> Dict[str, SourceTensor]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        head = raw.read(0, min(raw.size, 512))
        if head[:1] == b"\x80" or b"ustar" in head[257:262]:
            raise PyllamaError(f"{path}: a PyTorch checkpoint in the legacy pre-1.6 format, which is not "
                               "supported; load and re-save it with a current PyTorch") from None
        raise PyllamaError(f"{path}: not a PyTorch checkpoint (not a zip archive)") from None
    except _ZIP_ERRORS as exc:
        raise PyllamaError(f"{path}: malformed zip archive: {exc}") from None
    with zf:
        try:
            state = _load_state(path, raw, zf)
        except PyllamaError:
            raise
        except _ZIP_ERRORS as exc:  # e.g. a member's local header that disagrees with the directory
            raise PyllamaError(f"{path}: malformed zip archive: {exc}") from None
    if not isinstance(state, dict):
        raise PyllamaError(f"{path}: the checkpoint holds a {type(state).__name__}, not a dict of tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, SourceTensor):
            raise PyllamaError(f"{path}: entry {name!r} is not a tensor (a state dict of tensors was expected)")
    return dict(state)


def _load_state(path: str, raw: RawFile, zf: zipfile.ZipFile) -> Any:
    """The object pickled in the archive's one <name>/data.pkl."""
    pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise PyllamaError(f"{path}: not a PyTorch checkpoint (expected one <name>/data.pkl, found {pickles})")
    prefix = pickles[0][:-len("data.pkl")]
    if prefix + "byteorder" in zf.namelist():
        with zf.open(prefix + "byteorder") as f:
            if f.read(len(b"little") + 1) != b"little":  # never more: a compressed member can be a bomb
                raise PyllamaError(f"{path}: saved on a big-endian machine, which is not supported")
    # torch.save stores the pickle uncompressed; refusing any other keeps what the unpickler can
    # build bounded by the file's size (a deflated stream can expand a thousandfold).
    if zf.getinfo(pickles[0]).compress_type != zipfile.ZIP_STORED:
        raise PyllamaError(f"{path}: {pickles[0]} is compressed; torch.save stores it plainly")
    with zf.open(pickles[0]) as f:
        try:
            return _RestrictedUnpickler(f, path, zf, raw, prefix).load()
        except PyllamaError:
            raise
        except Exception as exc:  # a malformed pickle: any of the unpickler's many errors
            raise PyllamaError(f"{path}: malformed pickle in {pickles[0]}: {exc}") from None
