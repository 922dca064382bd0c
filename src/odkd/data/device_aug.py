"""Device-side augmentation: CPU workers decode, the GPU (or CPU) warps and encodes in batches.

The CPU path (:class:`odkd.data.dataset.TopDownDataset`) does per sample: decode -> sample the
augmentation -> ``cv2.warpAffine`` crop -> colour jitter -> heatmaps -> mask warp. With a fast
accelerator, the warp and the target encoding starve it. Here the work is split:

- :class:`DecodedDataset` (DataLoader workers): decode the image into a fixed-size uint8 canvas
  (zero padded; downscaled only when larger than ``data.device_max_side``), decode the instance
  mask into a canvas the same way, and draw the augmentation from the *same* per-sample RNG as
  the CPU path, through the same :class:`odkd.data.transforms.TrainAugment` (given a zero-row
  stand-in image, so it touches no pixels). Only a handful of scalars and the (flipped,
  pair-swapped) keypoints leave the worker with the canvas, and everything collates.
- :class:`DeviceAugment` (in the training process, on the device): batched affine matrices from
  (center, scale, rotation), the crop with ``affine_grid``/``grid_sample`` (the horizontal flip
  and the canvas downscale are folded into the sampling affine), colour jitter, normalisation,
  Gaussian heatmaps + target weights (the base set's :class:`odkd.codec.HeatmapCodec`, batched)
  and the instance-mask target (the 4x4-supersampled coverage of
  :func:`odkd.data.targets.warp_mask`).

Pixel-centre convention: odkd (and ``cv2.warpAffine``) put pixel centres on integer coordinates.
``grid_sample(align_corners=False)`` maps normalised -1/+1 to the outer *edges* of the border
pixels, so pixel ``i`` of an ``n``-pixel axis is at normalised ``(2 i + 1) / n - 1``; the
matrices below convert between the two explicitly, which makes the crop geometry identical to
the CPU path's. Remaining differences are cv2's fixed-point bilinear weights (1/32 pixel) and
uint8 rounding: a fraction of a grey level on average (see tests/test_device_aug.py).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from odkd.codec import HeatmapCodec
from odkd.data.dataset import IMAGENET_MEAN, IMAGENET_STD, TopDownDataset
from odkd.data.targets import _MASK_SUPERSAMPLE
from odkd.geometry import box_to_center_scale


class DecodedDataset(Dataset):
    """Decode-only view of a training :class:`TopDownDataset` for :class:`DeviceAugment`.

    Same records, same per-sample randomness (``base.rng_for(index)``, so call
    :meth:`set_epoch` as with the base set). ``max_side`` > 0 downscales images whose longer
    side exceeds it (the canvas is then at most ``max_side`` square); 0 keeps every image at
    full resolution in a canvas as large as the largest image.

    Sample fields: ``canvas`` uint8 (Hc, Wc, 3); ``mask_canvas`` uint8 (Hc, Wc) (or (1, 1) when
    masks are off); ``canvas_scale`` () canvas pixels per image pixel; ``width`` () image width
    (for the flip); ``center``, ``scale`` (2,) and ``rotation`` () after augmentation;
    ``flipped`` () bool; ``aug_keypoints`` (K, 3) augmented image-space keypoints; ``jitter``
    (2,) brightness and contrast factors (1, 1 when off); ``mask_weight``; and ``image_id``,
    ``score``, ``keypoints``, ``index`` as in the CPU sample dict.
    """

    def __init__(self, base: TopDownDataset, max_side: int = 0):
        self.base = base
        self.max_side = int(max_side)
        widths = [r.width for r in base.records] or [1]
        heights = [r.height for r in base.records] or [1]
        cw, ch = max(widths), max(heights)
        if self.max_side > 0:
            cw, ch = min(cw, self.max_side), min(ch, self.max_side)
        self.canvas_size = (int(cw), int(ch))  # (W, H)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def _fit(self, img: np.ndarray, interpolation: int) -> tuple[np.ndarray, float]:
        """Downscale to fit the canvas when needed; returns (image, canvas px per image px)."""
        h, w = img.shape[:2]
        f = min(1.0, self.canvas_size[0] / w, self.canvas_size[1] / h)
        if f < 1.0:
            size = (max(1, int(round(w * f))), max(1, int(round(h * f))))
            # cv2.resize maps pixel centres as x' = (x + 0.5) * sx - 0.5 with the exact ratio
            img = cv2.resize(img, size, interpolation=interpolation)
            f = size[0] / w  # the x ratio; y differs by < 1 px over the image: negligible
        return img, f

    def _paste(self, img: np.ndarray) -> np.ndarray:
        cw, ch = self.canvas_size
        out = np.zeros((ch, cw) + img.shape[2:], np.uint8)
        out[:img.shape[0], :img.shape[1]] = img
        return out

    def __getitem__(self, index: int) -> dict:
        b = self.base
        rec = b.records[index]
        image = b._image(rec)
        center, scale = box_to_center_scale(rec.bbox, b.aspect_ratio, b.cfg.padding)
        rng = b.rng_for(index)
        # Zero rows, full width: TrainAugment only needs the width to flip the geometry.
        stand_in = np.empty((0, rec.width, 3), np.uint8)
        aug = b.augment(stand_in, rec.keypoints.astype(np.float32).copy(), center, scale, rng)
        jitter = np.ones(2, np.float32)
        if b.cfg.color_jitter > 0:  # same draws, same order as transforms.color_jitter
            a = b.cfg.color_jitter
            jitter[0] = 1.0 + rng.uniform(-a, a)
            jitter[1] = 1.0 + rng.uniform(-a, a)

        canvas_img, f = self._fit(image, cv2.INTER_AREA)
        mask_canvas = np.zeros((1, 1), np.uint8)
        mask_weight = 0.0
        if b.return_image_mask and rec.segmentation is not None:
            full = b._mask(rec)
            if full.any():
                m, _ = self._fit(full, cv2.INTER_LINEAR)
                mask_canvas = self._paste(m)
                mask_weight = 1.0
        return {
            "canvas": torch.from_numpy(self._paste(canvas_img)),
            "mask_canvas": torch.from_numpy(mask_canvas),
            "canvas_scale": torch.tensor(f, dtype=torch.float64),
            "width": torch.tensor(float(rec.width), dtype=torch.float64),
            "center": torch.from_numpy(np.asarray(aug.center, np.float64)),
            "scale": torch.from_numpy(np.asarray(aug.scale, np.float64)),
            "rotation": torch.tensor(float(aug.rotation), dtype=torch.float64),
            "flipped": torch.tensor(bool(aug.flipped)),
            "aug_keypoints": torch.from_numpy(np.asarray(aug.keypoints, np.float32)),
            "jitter": torch.from_numpy(jitter),
            "mask_weight": torch.tensor(mask_weight, dtype=torch.float32),
            "image_id": torch.tensor(rec.image_id, dtype=torch.int64),
            "score": torch.tensor(rec.score, dtype=torch.float32),
            "keypoints": torch.from_numpy(rec.keypoints.astype(np.float32).copy()),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def _collate_masks(masks: list[torch.Tensor]) -> torch.Tensor:
    """Masks are (1, 1) placeholders for people without one; pad those to the canvas size."""
    shape = max((m.shape for m in masks), key=lambda s: s[0] * s[1])
    return torch.stack([m if m.shape == shape else torch.zeros(shape, dtype=m.dtype)
                        for m in masks])


def collate_decoded(samples: list[dict]) -> dict:
    """DataLoader ``collate_fn`` for :class:`DecodedDataset` (mask placeholders differ in shape)."""
    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        out[k] = _collate_masks(vals) if k == "mask_canvas" else torch.stack(vals)
    return out


def crop_affine(center: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor,
                output_size) -> torch.Tensor:
    """Batched :func:`odkd.geometry.get_affine_transform` (forward): (B, 3, 3) float64.

    That function builds a rotation+uniform-scale similarity from three point pairs; its
    closed form is ``A = k R(-rot)`` with ``k = out_w / scale_w`` and the translation that sends
    ``center`` to the output centre.
    """
    out_w, out_h = float(output_size[0]), float(output_size[1])
    rad = torch.deg2rad(rotation.double())
    k = out_w / scale[:, 0].double()
    c, s = torch.cos(rad) * k, torch.sin(rad) * k
    cx, cy = center[:, 0].double(), center[:, 1].double()
    mat = torch.zeros(center.shape[0], 3, 3, dtype=torch.float64, device=center.device)
    mat[:, 0, 0], mat[:, 0, 1] = c, s
    mat[:, 1, 0], mat[:, 1, 1] = -s, c
    mat[:, 0, 2] = out_w * 0.5 - (c * cx + s * cy)
    mat[:, 1, 2] = out_h * 0.5 - (-s * cx + c * cy)
    mat[:, 2, 2] = 1.0
    return mat


def _pixel_to_norm(n_w: float, n_h: float, device) -> torch.Tensor:
    """Pixel coordinates (centres on integers) -> grid_sample's align_corners=False coords."""
    return torch.tensor([[2.0 / n_w, 0.0, 1.0 / n_w - 1.0],
                         [0.0, 2.0 / n_h, 1.0 / n_h - 1.0],
                         [0.0, 0.0, 1.0]], dtype=torch.float64, device=device)


def sampling_theta(mat_fwd: torch.Tensor, output_size, canvas_size, width: torch.Tensor,
                   flipped: torch.Tensor, canvas_scale: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` theta: output pixel -> (flipped) image -> image -> canvas.

    The CPU path warps the mirrored image; a mirrored image pixel ``x`` is pixel
    ``width - 1 - x`` of the original, and the canvas holds the original downscaled by
    ``canvas_scale`` (pixel centres: ``x_c = (x + 0.5) f - 0.5``).
    """
    dev = mat_fwd.device
    b = mat_fwd.shape[0]
    out_to_norm = _pixel_to_norm(float(output_size[0]), float(output_size[1]), dev)
    canvas_to_norm = _pixel_to_norm(float(canvas_size[0]), float(canvas_size[1]), dev)
    flip = torch.eye(3, dtype=torch.float64, device=dev).repeat(b, 1, 1)
    fl = flipped.to(dev).bool()
    flip[fl, 0, 0] = -1.0
    flip[fl, 0, 2] = width.to(dev).double()[fl] - 1.0
    f = canvas_scale.to(dev).double()
    down = torch.zeros(b, 3, 3, dtype=torch.float64, device=dev)
    down[:, 0, 0], down[:, 1, 1], down[:, 2, 2] = f, f, 1.0
    down[:, 0, 2] = down[:, 1, 2] = 0.5 * f - 0.5
    theta = canvas_to_norm @ down @ flip @ torch.linalg.inv(mat_fwd) @ torch.linalg.inv(out_to_norm)
    return theta[:, :2].float()


class DeviceAugment:
    """Turn a :func:`collate_decoded` batch into the training fields of the CPU sample dict.

    ``__call__(batch)`` returns ``image`` (B, 3, H, W) float32 normalised, ``heatmap``,
    ``target_weight``, ``mask``, ``mask_weight``, ``center``, ``scale``, ``rotation`` on
    ``device``. ``round_crop`` rounds the crop to integers like the CPU path's uint8 image
    (needed for the colour jitter to match; cheap). ``codec``: the base set's by default.
    """

    def __init__(self, base: TopDownDataset, canvas_size, device: torch.device | str,
                 round_crop: bool = True, codec: HeatmapCodec | None = None):
        self.codec = codec or base.codec
        self.input_size = self.codec.input_size
        self.heatmap_size = self.codec.heatmap_size
        self.canvas_size = tuple(canvas_size)
        self.device = torch.device(device)
        self.round_crop = round_crop
        self.mean = torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1).to(self.device)
        self.std = torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1).to(self.device)

    @classmethod
    def for_dataset(cls, ds: DecodedDataset, device) -> "DeviceAugment":
        return cls(ds.base, ds.canvas_size, device)

    def to_device(self, batch: dict) -> dict:
        nb = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=nb) for k, v in batch.items()}

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict:
        batch = self.to_device(batch)
        b = batch["canvas"].shape[0]
        center, scale, rot = batch["center"], batch["scale"], batch["rotation"]
        geo = (batch["width"], batch["flipped"], batch["canvas_scale"])

        # --- crop
        mat_in = crop_affine(center, scale, rot, self.input_size)
        theta = sampling_theta(mat_in, self.input_size, self.canvas_size, *geo)
        w_in, h_in = self.input_size
        grid = F.affine_grid(theta, [b, 3, h_in, w_in], align_corners=False)
        src = batch["canvas"].permute(0, 3, 1, 2).float()
        crop = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
        if self.round_crop:
            crop = crop.round()
        jitter = batch["jitter"].float()
        if bool((jitter != 1).any()):
            # transforms.color_jitter: brightness, then contrast about the image mean, uint8
            crop = crop * jitter[:, 0].view(b, 1, 1, 1)
            mean = crop.mean(dim=(1, 2, 3), keepdim=True)
            crop = (crop - mean) * jitter[:, 1].view(b, 1, 1, 1) + mean
            crop = torch.floor((crop + 0.5).clamp(0, 255))
        image = (crop / 255.0 - self.mean) / self.std

        # --- keypoints -> heatmap coordinates -> Gaussian targets
        mat_hm = crop_affine(center, scale, rot, self.heatmap_size)
        kp = batch["aug_keypoints"].double()
        xy = kp[..., :2] @ mat_hm[:, :2, :2].transpose(1, 2) + mat_hm[:, None, :2, 2]
        # float32 like the CPU path's affine_points output, so both encode the same coordinates
        kp_hm = torch.cat([xy.float().double(), kp[..., 2:3]], dim=-1)
        heatmap, target_weight = self.codec.encode_torch(kp_hm)
        w, h = self.heatmap_size

        # --- instance mask: 4x4 supersampled coverage >= 1/2, as targets.warp_mask
        mask_weight = batch["mask_weight"].float()
        mask = torch.zeros(b, 1, h, w, device=self.device)
        if bool((mask_weight > 0).any()) and batch["mask_canvas"].shape[-1] > 1:
            s = _MASK_SUPERSAMPLE
            theta_hm = sampling_theta(mat_hm, self.heatmap_size, self.canvas_size, *geo)
            grid = F.affine_grid(theta_hm, [b, 1, h * s, w * s], align_corners=False)
            src = (batch["mask_canvas"] > 0).float()[:, None]
            fine = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
            mask = (F.avg_pool2d(fine, s) >= 0.5).float() * (mask_weight > 0).view(b, 1, 1, 1)
        return {"image": image, "heatmap": heatmap, "target_weight": target_weight,
                "mask": mask, "mask_weight": mask_weight, "center": center.float(),
                "scale": scale.float(), "rotation": rot.float()}
