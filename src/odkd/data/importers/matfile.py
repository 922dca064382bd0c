"""MATLAB ``.mat`` files (LSP's ``joints.mat``) through scipy.io.loadmat, with odkd's errors."""
from __future__ import annotations

import numpy as np

from odkd.errors import DataError


def load_mat(path: str) -> dict[str, np.ndarray]:
    """Numeric variables of a MAT-file by name (structs, cells and strings are left out).

    An unreadable, truncated or non-MAT file raises DataError naming the file; a v7.3 (HDF5)
    file, which scipy does not read, says how to re-save it.
    """
    import scipy.io   # lazy: only the importers need scipy

    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if head.startswith(b"MATLAB 7.3"):
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) MAT-file; save it with -v7 (or -v6) "
                        "to import it")
    try:
        raw = scipy.io.loadmat(path)
    except NotImplementedError as e:   # scipy's word for v7.3
        raise DataError(f"{path}: {e}; save it with -v7 (or -v6) to import it") from None
    except Exception as e:   # scipy raises ValueError, TypeError, zlib.error, ... on bad bytes
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{path}: not a readable MATLAB MAT-file ({msg})") from None
    return {k: v for k, v in raw.items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}
