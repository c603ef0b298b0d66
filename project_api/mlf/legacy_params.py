"""TVM's binary NDArray ``.params`` format (``tvm.runtime.save_param_dict``), as legacy Model
Library Format archives store their weights in ``parameters/<model>.params``.

Layout (little endian): uint64 magic 0xF7E58D4F05049CB7, uint64 reserved, the names as a
vector<string> (uint64 count, then per name uint64 length + UTF-8 bytes), then the arrays as a
vector<NDArray> (uint64 count, then per array: uint64 magic 0xDD5E40F096B4A13F, uint64 reserved,
DLDevice (int32 type, int32 id), int32 ndim, DLDataType (uint8 code, uint8 bits, uint16 lanes),
int64 shape[ndim], int64 data bytes, the data).
"""

from __future__ import annotations

import struct
from typing import Dict

import numpy as np

PARAMS_MAGIC = 0xF7E58D4F05049CB7
NDARRAY_MAGIC = 0xDD5E40F096B4A13F
_DL_CODES = {0: "int", 1: "uint", 2: "float"}


class ParamsFormatError(ValueError):
    """A .params blob that cannot be decoded; the message says where it breaks."""


def dtype_name(code: int, bits: int, lanes: int) -> str:
    if lanes != 1:
        raise ParamsFormatError(f"vector dtype (lanes={lanes}) is not supported")
    if code == 1 and bits == 1:
        return "bool"
    if code not in _DL_CODES or bits not in (8, 16, 32, 64):
        raise ParamsFormatError(f"DLDataType code {code}, bits {bits} has no numpy equivalent")
    name = f"{_DL_CODES[code]}{bits}"
    if name == "float8":
        raise ParamsFormatError("8-bit floats are not supported")
    return name


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ParamsFormatError(f"truncated: {what} ends at byte {self.pos + size} of {len(self.data)}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def bytes(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise ParamsFormatError(f"truncated: {what} ends at byte {self.pos + count} of {len(self.data)}")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk


def load_params(data: bytes) -> Dict[str, np.ndarray]:
    """Decode a .params blob into {name: array} (arrays own their data, C order)."""
    reader = _Reader(data)
    magic, _reserved = reader.take("<QQ", "the header")
    if magic != PARAMS_MAGIC:
        raise ParamsFormatError(f"not a TVM params blob (magic {magic:#x}, expected {PARAMS_MAGIC:#x})")
    (count,) = reader.take("<Q", "the name count")
    if count > len(data):
        raise ParamsFormatError(f"claims {count} names in {len(data)} bytes")
    names = []
    for index in range(count):
        (length,) = reader.take("<Q", f"the length of name {index}")
        names.append(reader.bytes(length, f"name {index}").decode("utf-8", "replace"))
    (arrays,) = reader.take("<Q", "the array count")
    if arrays != count:
        raise ParamsFormatError(f"{count} names but {arrays} arrays")
    result: Dict[str, np.ndarray] = {}
    for name in names:
        what = f"array '{name}'"
        magic, _reserved = reader.take("<QQ", f"the header of {what}")
        if magic != NDARRAY_MAGIC:
            raise ParamsFormatError(f"{what} has magic {magic:#x}, expected {NDARRAY_MAGIC:#x}")
        _device_type, _device_id, ndim = reader.take("<iii", f"the device and rank of {what}")
        code, bits, lanes = reader.take("<BBH", f"the dtype of {what}")
        if not 0 <= ndim <= 32:
            raise ParamsFormatError(f"{what} has rank {ndim}")
        shape = reader.take(f"<{ndim}q", f"the shape of {what}") if ndim else ()
        (nbytes,) = reader.take("<q", f"the size of {what}")
        dtype = dtype_name(code, bits, lanes)
        itemsize = 1 if dtype == "bool" else np.dtype(dtype).itemsize
        expected = int(np.prod(shape, dtype=np.int64)) * itemsize
        if nbytes != expected:
            raise ParamsFormatError(f"{what} is {dtype}{list(shape)} ({expected} B) but stores {nbytes} B")
        raw = reader.bytes(nbytes, f"the data of {what}")
        array = np.frombuffer(raw, dtype=np.uint8 if dtype == "bool" else np.dtype(dtype).newbyteorder("<"))
        result[name] = array.astype(dtype).reshape(shape)
    if reader.pos != len(data):
        raise ParamsFormatError(f"{len(data) - reader.pos} trailing bytes after the last array")
    return result


def save_params(params: Dict[str, np.ndarray]) -> bytes:
    """The inverse of load_params (tests synthesise legacy archives with it)."""
    codes = {"i": 0, "u": 1, "f": 2}
    out = [struct.pack("<QQQ", PARAMS_MAGIC, 0, len(params))]
    for name in params:
        encoded = name.encode("utf-8")
        out.append(struct.pack("<Q", len(encoded)) + encoded)
    out.append(struct.pack("<Q", len(params)))
    for array in params.values():
        array = np.array(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        code, bits = (1, 1) if array.dtype == np.bool_ else (codes[array.dtype.kind], array.dtype.itemsize * 8)
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        out.append(struct.pack("<QQiiiBBH", NDARRAY_MAGIC, 0, 1, 0, array.ndim, code, bits, 1))
        out.append(struct.pack(f"<{array.ndim}q", *array.shape) + struct.pack("<q", len(data)) + data)
    return b"".join(out)
