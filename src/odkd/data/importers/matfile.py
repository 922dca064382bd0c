"""Read the numeric arrays of a MATLAB level-5 MAT-file (what ``save`` writes by default).

scipy.io.loadmat would do this, but scipy is not an odkd dependency and LSP's ``joints.mat``
only needs plain numeric matrices, a handful of documented tags ("MAT-File Format", MathWorks):
a 128-byte header, then data elements (tag = type + byte count, padded to 8 bytes; a "small"
element packs both into 4 bytes), ``miCOMPRESSED`` wrapping one zlib-compressed element, and
``miMATRIX`` holding flags, dimensions, name and the column-major real part.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from odkd.errors import DataError

_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
              12: "i8", 13: "u8"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
# numeric mxCLASS ids -> numpy dtype (the stored type may be narrower: MATLAB saves space)
_MX_NUMERIC = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
               14: "i8", 15: "u8"}
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 16: "function"}


def load_mat(path: str) -> dict[str, np.ndarray]:
    """Numeric variables of a level-5 MAT-file by name (other kinds are left out).

    A file that is not a level-5 MAT-file (v4, v7.3/HDF5, something else) or whose elements
    are truncated or inconsistent raises DataError naming the file.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) < 128:
        raise DataError(f"{path}: not a MATLAB MAT-file (shorter than its 128-byte header)")
    text = raw[:116]
    if text.startswith(b"MATLAB 7.3") or raw[512:520] == b"\x89HDF\r\n\x1a\n":
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) MAT-file; save it with -v7 (or -v6) "
                        "to import it")
    if not text.startswith(b"MATLAB 5.0 MAT-file"):
        raise DataError(f"{path}: header: not a MATLAB level-5 MAT-file (starts with "
                        f"{text[:20]!r})")
    endian = raw[126:128]
    if endian == b"IM":
        bo = "<"
    elif endian == b"MI":
        bo = ">"
    else:
        raise DataError(f"{path}: header: unknown byte-order mark {endian!r}")
    out: dict[str, np.ndarray] = {}
    try:
        for mi, body in _elements(raw, 128, len(raw), bo, top=True):
            if mi == _MI_COMPRESSED:
                try:
                    inner = zlib.decompress(body)
                except zlib.error as e:
                    raise ValueError(f"compressed element does not inflate ({e})") from None
                for mi2, body2 in _elements(inner, 0, len(inner), bo, top=True):
                    if mi2 == _MI_MATRIX:
                        _matrix(body2, bo, out)
            elif mi == _MI_MATRIX:
                _matrix(body, bo, out)
    except (ValueError, struct.error) as e:
        raise DataError(f"{path}: malformed MAT-file data ({e})") from None
    return out


def _elements(buf: bytes, pos: int, end: int, bo: str, top: bool = False):
    """Yield (type, payload) of the data elements in ``buf[pos:end]``."""
    while pos < end:
        if end - pos < 4:
            raise ValueError(f"truncated element tag at byte {pos}")
        first = struct.unpack_from(bo + "I", buf, pos)[0]
        if first >> 16:  # small data element: 2-byte count, 2-byte type, 4 bytes of data
            mi, n = first & 0xFFFF, first >> 16
            if n > 4:
                raise ValueError(f"small element of {n} bytes at byte {pos}")
            yield mi, buf[pos + 4:pos + 4 + n]
            pos += 8
            continue
        if end - pos < 8:
            raise ValueError(f"truncated element tag at byte {pos}")
        mi, n = first, struct.unpack_from(bo + "I", buf, pos + 4)[0]
        start = pos + 8
        if start + n > end:
            raise ValueError(f"element at byte {pos} claims {n} bytes, {end - start} left")
        yield mi, buf[start:start + n]
        # top-level compressed elements are not padded; everything else is to 8 bytes
        pos = start + n if (top and mi == _MI_COMPRESSED) else start + n + (-n % 8)


def _numeric(mi: int, body: bytes, bo: str) -> np.ndarray:
    if mi not in _MI_DTYPES:
        raise ValueError(f"numeric data of unknown type {mi}")
    dt = np.dtype(bo + _MI_DTYPES[mi])
    if len(body) % dt.itemsize:
        raise ValueError(f"{len(body)} bytes is not a whole number of {dt.name} values")
    return np.frombuffer(body, dtype=dt)


def _matrix(body: bytes, bo: str, out: dict[str, np.ndarray]) -> None:
    parts = list(_elements(body, 0, len(body), bo))
    if not parts:  # an empty miMATRIX is how MATLAB writes an empty cell entry
        return
    if len(parts) < 3:
        raise ValueError("matrix element without flags, dimensions and name")
    flags = _numeric(*parts[0], bo)
    cls = int(flags[0]) & 0xFF
    is_complex = bool(int(flags[0]) & 0x800)
    dims = [int(d) for d in _numeric(*parts[1], bo)]
    name = bytes(parts[2][1]).decode("ascii", "replace")
    if cls not in _MX_NUMERIC:
        return  # cells, structs, strings: nothing the importers read
    if len(parts) < 4:
        raise ValueError(f"variable {name!r}: no data")
    if is_complex:
        raise ValueError(f"variable {name!r}: complex data")
    data = _numeric(*parts[3], bo).astype(_MX_NUMERIC[cls])
    if data.size != int(np.prod(dims)):
        raise ValueError(f"variable {name!r}: {data.size} values for dimensions "
                         f"{'x'.join(map(str, dims))}")
    out[name] = data.reshape(dims, order="F")  # MATLAB stores column-major
