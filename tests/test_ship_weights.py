"""tools/ship_weights.py: a run's checkpoint written as a shipped float16 model."""
import torch

from odkd.config import Config
from odkd.models import build_model
from odkd.models.checkpoint import build_from_checkpoint, read_checkpoint, save_checkpoint


def test_keypoints_only_drops_the_mask_head_and_keeps_the_heatmaps(tmp_path, load_tool):
    torch.manual_seed(0)
    model = build_model("movenet_lightning", 17, True).eval()
    cfg = Config()
    cfg.model.name, cfg.model.with_mask, cfg.data.input_size = "movenet_lightning", True, [64, 64]
    src, dst = str(tmp_path / "last.pt"), str(tmp_path / "ship.pt")
    save_checkpoint(src, model, extra={"config": cfg.to_dict()})
    assert load_tool("ship_weights").main([src, dst, "--keypoints-only"]) == 0
    shipped = read_checkpoint(dst)
    assert not any(k.startswith("mask_layer.") for k in shipped["state_dict"])
    assert shipped["model"]["with_mask"] is False and shipped["config"]["model"]["with_mask"] is False
    assert all(v.dtype == torch.float16 for v in shipped["state_dict"].values()
               if v.is_floating_point())
    small = build_from_checkpoint(dst).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, ref = small(x), model(x)
    assert "mask" not in out and "mask" in ref
    # float16 weights: the heatmaps move by rounding only (5e-5 measured, maps up to ~0.1)
    assert (out["heatmaps"] - ref["heatmaps"]).abs().max() < 2e-3
    # without the flag the mask head stays
    assert load_tool("ship_weights").main([src, str(tmp_path / "full.pt")]) == 0
    assert "mask" in build_from_checkpoint(str(tmp_path / "full.pt")).eval()(x)
