"""Model builders. Every pose model's ``forward(x)`` returns a dict:
``{"heatmaps": (N, K, H/4, W/4)}`` plus ``"mask": (N, 1, H/4, W/4)`` logits when built with
``with_mask=True``.

The table below is explicit (name -> module, function); no registry magic.
"""
from __future__ import annotations

import importlib

MODEL_BUILDERS: dict[str, tuple[str, str]] = {
    "hrnet_w16": ("odkd.models.hrnet", "hrnet_w16"),
    "hrnet_w32": ("odkd.models.hrnet", "hrnet_w32"),
    "hrnet_w48": ("odkd.models.hrnet", "hrnet_w48"),
    "mobilenetv2": ("odkd.models.simplebaseline", "simplebaseline_mobilenetv2"),
    "shufflenetv2": ("odkd.models.simplebaseline", "simplebaseline_shufflenetv2"),
    "litehrnet_18": ("odkd.models.litehrnet", "litehrnet_18"),
    "movenet_lightning": ("odkd.models.movenet", "movenet_lightning"),
    "movenet_thunder": ("odkd.models.movenet", "movenet_thunder"),
    "effnet_lite3_fpn": ("odkd.models.efficientnet_lite", "effnet_lite3_fpn"),
}


def build_model(name: str, num_joints: int = 17, with_mask: bool = False):
    from odkd.errors import OdkdError

    if name not in MODEL_BUILDERS:
        raise OdkdError(f"unknown model {name!r}; choose one of {sorted(MODEL_BUILDERS)}")
    module, fn = MODEL_BUILDERS[name]
    model = getattr(importlib.import_module(module), fn)(num_joints=num_joints, with_mask=with_mask)
    model.odkd_name = name
    return model
