"""HeatmapCodec: the one object that knows how keypoints become heatmaps and back.

Training targets (:class:`odkd.data.dataset.TopDownDataset`, :class:`odkd.data.device_aug.
DeviceAugment`), evaluation (:func:`odkd.engine.evaluate.run_evaluation`) and inference
(:class:`odkd.deploy.infer.TopDownPredictor`, ``odkd.load``) all take the same codec, so input
size, heatmap stride, sigma, decoder and flip shift cannot drift apart between them (as
mmpose's codec objects are shared by its targets, heads and inferencers).

The package owns both directions: :mod:`odkd.codec.encode` (Gaussian heatmaps, numpy and
torch) and :mod:`odkd.codec.decode` (argmax + quarter offset, DARK, ``flip_back``). It sits
below data, eval and deploy, which all use it, and imports only :mod:`odkd.config` and
:mod:`odkd.geometry`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odkd.codec.decode import decode_heatmaps, flip_back, get_max_preds
from odkd.codec.encode import encode_heatmaps, encode_heatmaps_torch
from odkd.config import Config, ConfigError, DataConfig, EvalConfig

__all__ = ["DECODERS", "PROTOCOLS", "HeatmapCodec", "predict_heatmaps", "encode_heatmaps",
           "encode_heatmaps_torch", "decode_heatmaps", "flip_back", "get_max_preds"]

DECODERS = ("quarter", "dark")
PROTOCOLS = ("odkd", "hrnet")


def _inside_map(x, y, w: int, h: int):
    """A joint counts only when its nearest heatmap pixel exists: x in [-0.5, w - 0.5) (numpy or
    torch)."""
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints <-> Gaussian heatmaps, with the flip-test undo. Fields follow the config:

    ``input_size`` (W, H) and ``heatmap_stride`` (``data.*``; heatmaps are W/stride x
    H/stride), ``sigma`` (``data.sigma``, heatmap pixels), ``decoder`` (``eval.decode``:
    ``quarter`` or ``dark``; a field named ``decode`` would hide the method), ``dark_kernel``
    (DARK's blur), ``protocol`` (``eval.protocol``: the decoding rules, ``odkd`` or ``hrnet``)
    and ``flip_shift`` (heatmap pixels the flipped maps are shifted right, see
    :func:`odkd.codec.decode.flip_back`; None: the exact ``(stride - 1) / stride - 2 offset_x``).
    ``offset`` (``data.heatmap_offset``): (x, y) cells from a model's peak to the joint; targets
    are encoded that far before the joint and decoding adds it back.
    """

    input_size: tuple[int, int]
    heatmap_stride: int = 4
    sigma: float = 2.0
    decoder: str = "quarter"
    dark_kernel: int = 11
    protocol: str = "odkd"
    flip_shift: float | None = None
    offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        size, stride = self.input_size, self.heatmap_stride
        ok = (isinstance(size, (list, tuple)) and len(size) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size))
        if not ok:
            raise ConfigError(f"data.input_size: expected [width, height] of positive integers, "
                              f"got {size!r}")
        if stride <= 0 or size[0] % stride or size[1] % stride:
            raise ConfigError(f"data.input_size {list(size)} must be divisible by "
                              f"data.heatmap_stride {stride}")
        if not self.sigma > 0:
            raise ConfigError(f"data.sigma: must be > 0, got {self.sigma}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"eval.protocol: expected one of {', '.join(PROTOCOLS)}, got "
                              f"{self.protocol!r}")
        if self.decoder not in DECODERS:
            raise ConfigError(f"eval.decode: expected quarter or dark, got {self.decoder!r}")
        if self.protocol == "hrnet" and self.decoder != "quarter":
            raise ConfigError("eval.protocol hrnet decodes with the quarter offset; "
                              f"eval.decode={self.decoder} is not part of it")
        if self.dark_kernel < 1 or self.dark_kernel % 2 == 0:
            raise ConfigError(f"dark_kernel must be a positive odd integer, got "
                              f"{self.dark_kernel}")
        off = tuple(float(v) for v in self.offset)
        if len(off) != 2 or not all(abs(v) < 1 for v in off):
            raise ConfigError(f"data.heatmap_offset: expected [x, y] cells in (-1, 1), got "
                              f"{list(self.offset)!r}")
        object.__setattr__(self, "offset", off)
        # mirrored, a peak offset o moves the other way: the flipped maps need 2 o less shift
        shift = (stride - 1) / stride - 2 * off[0] if self.flip_shift is None \
            else float(self.flip_shift)
        if shift < -1:
            raise ConfigError(f"flip_shift must be >= -1, got {self.flip_shift}")
        # frozen: normalise through object.__setattr__ so equal settings compare equal
        object.__setattr__(self, "input_size", (size[0], size[1]))
        object.__setattr__(self, "flip_shift", shift)

    # ------------------------------------------------------------------------------ builders
    @classmethod
    def from_data_config(cls, data: DataConfig, ev: EvalConfig | None = None) -> "HeatmapCodec":
        """From ``data`` (sizes, sigma) and ``ev`` (decoder, protocol, shift; defaults when
        None, e.g. for a dataset that only encodes)."""
        ev = ev or EvalConfig()
        stride = data.heatmap_stride
        if not ev.shift_heatmap:
            shift = 0.0
        elif ev.protocol == "hrnet":
            shift = 1.0   # HRNet's integer shift, part of its test protocol
        else:
            shift = None
        return cls(input_size=data.input_size, heatmap_stride=stride, sigma=data.sigma,
                   decoder=ev.decode, protocol=ev.protocol, flip_shift=shift,
                   offset=tuple(getattr(data, "heatmap_offset", (0.0, 0.0))))

    @classmethod
    def from_config(cls, cfg: Config) -> "HeatmapCodec":
        return cls.from_data_config(cfg.data, cfg.eval)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return (self.input_size[0] // self.heatmap_stride,
                self.input_size[1] // self.heatmap_stride)

    # ------------------------------------------------------------------------------ encoding
    def encode(self, kpts_hm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, 3) keypoints ``[x, y, v]`` in heatmap coordinates -> (heatmaps (K, h, w),
        target_weight (K,)) float32. Joints whose nearest heatmap pixel is off the map get
        weight 0, then :func:`odkd.codec.encode.encode_heatmaps`."""
        k = np.array(kpts_hm, copy=True)
        if self.offset != (0.0, 0.0):
            k = k.astype(np.float64)
            k[..., :2] -= np.asarray(self.offset)
        if k.ndim == 2 and k.shape[1] >= 3:
            w, h = self.heatmap_size
            k[~_inside_map(k[:, 0], k[:, 1], w, h), 2] = 0
        return encode_heatmaps(k, self.heatmap_size, self.sigma)

    def encode_torch(self, kpts_hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched :meth:`encode` on the tensor's device: (B, K, 3) -> (B, K, h, w), (B, K)."""
        w, h = self.heatmap_size
        if self.offset != (0.0, 0.0):
            kpts_hm = torch.cat([kpts_hm[..., :2] - kpts_hm.new_tensor(self.offset),
                                 kpts_hm[..., 2:]], dim=-1)
        inside = _inside_map(kpts_hm[..., 0], kpts_hm[..., 1], w, h)
        vis = torch.where(inside, kpts_hm[..., 2], torch.zeros_like(kpts_hm[..., 2]))
        k = torch.cat([kpts_hm[..., :2], vis[..., None]], dim=-1)
        return encode_heatmaps_torch(k, self.heatmap_size, self.sigma)

    # ------------------------------------------------------------------------------ decoding
    def decode(self, heatmaps, centers, scales) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, h, w) heatmaps of the crops ``centers`` / ``scales`` (N, 2) -> image
        keypoints (N, K, 2) and scores (N, K) (:func:`odkd.codec.decode.decode_heatmaps`)."""
        return decode_heatmaps(heatmaps, centers, scales, method=self.decoder,
                               dark_kernel=self.dark_kernel, protocol=self.protocol,
                               offset=self.offset)

    def flip_back(self, heatmaps, flip_pairs):
        """Maps of a horizontally flipped input back into the unflipped crop, shifted right by
        ``flip_shift`` (:func:`odkd.codec.decode.flip_back`)."""
        return flip_back(heatmaps, flip_pairs, shift=self.flip_shift,
                         stride=self.heatmap_stride)


@torch.no_grad()
def predict_heatmaps(model, images: torch.Tensor, codec: HeatmapCodec, flip_pairs,
                     flip_test: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(heatmaps, mask logits or None) of a batch of crops, float32 on the model's device; with
    ``flip_test`` averaged with those of the mirrored input (undone by ``codec.flip_back``).
    Evaluation and inference both run models through this."""
    out = model(images)
    heat = out["heatmaps"].float()
    mask = out["mask"].float() if "mask" in out else None
    if flip_test:
        fout = model(torch.flip(images, dims=[3]))
        heat = 0.5 * (heat + codec.flip_back(fout["heatmaps"].float(), flip_pairs))
        if mask is not None:
            mask = 0.5 * (mask + codec.flip_back(fout["mask"].float(), []))
    return heat, mask
