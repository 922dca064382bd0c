"""odkd: Orderly Dual-Teacher Knowledge Distillation for lightweight 2D human pose estimation."""

__version__ = "0.1.0"
