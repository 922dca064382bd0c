"""odkd: Orderly Dual-Teacher Knowledge Distillation for lightweight 2D human pose estimation.

``odkd.load(checkpoint).predict(image)`` and ``odkd.draw(image, people)``: see :mod:`odkd.api`.
"""

from odkd._version import __version__

# The API pulls in torch and OpenCV; the CLI imports this package for every command (even
# `odkd --version`), so those names are resolved on first use only (PEP 562).
_API = ("load", "draw", "PoseModel", "Person")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from odkd import api

        return getattr(api, name)
    raise AttributeError(f"module 'odkd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
