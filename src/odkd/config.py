"""Typed configs: dataclasses loaded from YAML with dotted ``key=value`` overrides.

No global state: every entry point builds a :class:`Config` and passes it down.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints

import yaml


from odkd.errors import OdkdError


class ConfigError(OdkdError):
    """A config file or override is malformed; the message names the file and key."""


@dataclass
class DataConfig:
    train_ann: str = ""                 # COCO person_keypoints json
    train_images: str = ""              # folder with the images referenced by file_name
    val_ann: str = ""
    val_images: str = ""
    input_size: list = field(default_factory=lambda: [192, 256])   # (width, height)
    heatmap_stride: int = 4             # heatmaps at 1/4 resolution
    # (x, y) heatmap cells from where a model puts a joint's peak to the joint. 0 for models
    # trained on odkd's (HRNet's) targets; MoveNet's heads peak at the floor of the joint's
    # cell, and its TF padding adds 1/8 cell: 0.375 (docs/method.md "MoveNet's heatmaps")
    heatmap_offset: list = field(default_factory=lambda: [0.0, 0.0])
    sigma: float = 2.0                  # Gaussian sigma in heatmap pixels
    padding: float = 1.25               # box padding before the crop
    scale_factor: float = 0.35          # train: random scale in [1-s, 1+s]
    rotation_factor: float = 45.0       # train: random rotation in [-r, r] degrees (prob rot_prob)
    rot_prob: float = 0.6
    flip: bool = True                   # train: horizontal flip with pair swap
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    color_jitter: float = 0.0           # brightness/contrast jitter amplitude (0 = off)
    flip_pairs: list | None = None      # explicit [[l, r], ...]; default from keypoint names
    upper_body_ids: list | None = None  # for half-body; default from COCO-17 names
    boxes: str = "gt"                   # eval boxes: "gt" or a detection json (COCO results)
    det_score_thr: float = 0.0
    workers: int = 2
    cache_images: bool = False          # decode every image once into RAM (small datasets)
    device_aug: bool = False            # train: crop/flip/jitter/targets batched on the device
    device_max_side: int = 0            # device_aug: downscale images larger than this (0 = never)
    occlusion: float = 0.0              # train on teacher views: chance of 1-2 occluding patches


@dataclass
class ModelConfig:
    name: str = "hrnet_w32"             # see odkd.models.MODEL_BUILDERS
    num_joints: int = 17
    with_mask: bool = False             # extra segmentation output (senior teacher / students)
    init: str = ""                      # optional checkpoint to initialise from (any known format)


@dataclass
class TrainConfig:
    epochs: int = 210
    batch_size: int = 32
    lr: float = 1e-3
    lr_steps: list = field(default_factory=lambda: [170, 200])
    lr_factor: float = 0.1
    warmup_iters: int = 0
    weight_decay: float = 0.0
    optimizer: str = "adam"             # adam | adamw | sgd
    amp: str = "none"                   # none | bf16
    # Weight of the GT mask BCE when model.with_mask, in training and distillation alike (the
    # one knob for it). BCE is ~100x the heatmap MSE, so 1.0 lets the mask swamp the keypoints
    # (demo: ST teacher PCK 33.9 vs 37.8 for the keypoint-only PT).
    mask_loss_weight: float = 0.01
    grad_clip: float = 0.0
    # BatchNorm layers keep their running statistics (eval mode) while the rest trains: for
    # fine-tuning a pretrained model on small batches
    freeze_bn: bool = False
    # Quantization-aware training: round the activations to uint8 per tensor in the forward
    # pass, as `odkd export --int8` does, so the int8 export loses less (odkd.models.fake_quant).
    # Off: 200 fine-tuning steps with it gave no measurable gain (results/real_distill/qat)
    qat: bool = False
    seed: int = 0
    deterministic: bool = False
    eval_every: int = 10                # epochs; 0 = only at the end
    save_every: int = 1                 # epochs between last.pt writes (0 = only at the end)
    log_every: int = 20
    max_iters_per_epoch: int = 0        # 0 = full epoch (debug knob)
    threads: int = 0                    # torch intra-op threads on CPU (0 = torch default)
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    channels_last: bool = True          # NHWC activations (CUDA and CPU)
    compile: bool = False               # torch.compile the student (and the teachers)
    compile_mode: str = "default"       # torch.compile mode; "reduce-overhead" adds CUDA graphs
    sync_bn: bool = True                # under DDP: BatchNorm statistics over the global batch


@dataclass
class EvalConfig:
    batch_size: int = 64
    flip_test: bool = True
    shift_heatmap: bool = True          # shift flipped heatmaps by (stride-1)/stride px (see decode.flip_back)
    decode: str = "quarter"             # quarter | dark
    oks_nms_thr: float = 0.9
    in_vis_thr: float = 0.2             # keypoint score above which it counts in rescoring
    rescore: bool = True
    # Evaluation precision, independent of train.amp: a bf16-trained model is still scored in
    # fp32 unless asked (none | bf16).
    amp: str = "none"
    # odkd | hrnet: hrnet reproduces the official HRNet test rules (GT box w-1/h-1 clipped to
    # W-1/H-1, unclipped detection boxes, both-axes 2..w-2 quarter offset, non-positive maps at
    # the crop corner, 1-px flip shift); see engine.evaluate.PROTOCOLS.
    protocol: str = "odkd"


@dataclass
class TeacherConfig:
    checkpoint: str = ""                # odkd checkpoint (or any format odkd convert reads)
    model: str = ""                     # architecture name when the checkpoint lacks one
    with_mask: bool = False
    # A real teacher (odkd.teachers: movenet-lightning, movenet-thunder+blazepose-heavy, ...):
    # its keypoints, confidences and mask are computed once per view into distill.cache.
    name: str = ""
    # imitate the real teacher's own heatmaps (cached as uint8; BlazePose has them) instead of
    # Gaussians at its keypoints
    own_heatmaps: bool = False


@dataclass
class DistillConfig:
    # The paper's terms. Defaults and the measurements behind them: docs/method.md.
    # The loss formula: odkd (GT + teacher imitation + ST segmentation, module distill.losses)
    # or fpd (Fast Pose Distillation: (1-fpd_alpha)*MSE(GT) + fpd_alpha*MSE(teacher)).
    method: str = "odkd"
    # Which teacher teaches at which step (the timing; FPD from the PT is schedule pt_only).
    schedule: str = "orderly"           # orderly | simultaneous | reverse | pt_only | st_only | none
    pt: TeacherConfig = field(default_factory=TeacherConfig)        # primary teacher (weaker)
    st: TeacherConfig = field(default_factory=lambda: TeacherConfig(with_mask=True))  # senior teacher
    pt_fraction: float = 0.5            # orderly: PT for this fraction of the steps, then ST
    gt_weight: float = 1.0
    kd_weight: float = 1.0              # weight of teacher keypoint imitation
    # Weight of ST mask imitation (the GT mask BCE is train.mask_loss_weight). Measured on the
    # demo (seed 0, both terms at this weight): 1.0 -> val PCK 19.6, 0.01 -> 41.6 (scratch 37.7).
    seg_weight: float = 0.01
    fpd_alpha: float = 0.5              # FPD: (1-a)*MSE(GT) + a*MSE(teacher)
    binarize_targets: list = field(default_factory=lambda: ["teacher"])  # any of gt, teacher
    binarize_mode: str = "mask"         # none | hard | mask (docs/method.md "Binarization")
    binarize_tau: float = 0.5           # threshold as a fraction of each map's peak
    # Real teachers (pt.name / st.name): outputs cached once per augmented view of each person
    # of data.train_ann (module distill.cache); "" = a folder under $ODKD_CACHE/views.
    cache: str = ""
    views: int = 4                      # views per person (view 0 is the plain box)
    # seed of the views (the data, shared by every run; train.seed drives the rest)
    views_seed: int = 0
    # Per-joint weight of a real teacher's target from its confidence c: hard = 1 if c >= thr,
    # soft = c if c >= thr (0 below). Chosen on LSP 1001-2000: docs/results.md.
    conf_rule: str = "hard"
    conf_thr: float = 0.3
    people: int = 0                     # train on this many of the cached people (0 = all)
    # Labelled people (a COCO keypoints json, e.g. SynthPose) mixed into the real teacher
    # views: they teach through their ground truth only (distill.gt_weight), the views through
    # the teachers. Measured on the real recipe: docs/results.md.
    mix_ann: str = ""
    mix_images: str = ""


@dataclass
class Config:
    workdir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self, *sections: str, leave_out: tuple = ()) -> str:
        """Stable short hash of the given sections (all when none), for caching runs, without
        the ``section.field`` entries of ``leave_out`` (the hash is unchanged when empty)."""
        d = self.to_dict()
        if sections:
            d = {k: d[k] for k in sections}
        for dotted in leave_out:
            section, name = dotted.split(".", 1)
            del d[section][name]
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert a YAML/override value to the dataclass field type, with a clear error."""
    origin = get_origin(typ)
    if typ is Any:
        return value
    if origin is not None and type(None) in get_args(typ):  # Optional[...] / X | None
        if value is None:
            return None
        inner = [a for a in get_args(typ) if a is not type(None)][0]
        return _coerce(value, inner, where)
    if is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(typ, value, where)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")
        try:
            out = typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return out
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    if typ is list or origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return value
    return value


# What to write instead of the spelling of FPD before distill.method existed.
FPD_HINT = ("FPD is a loss of its own, not a schedule: write distill.method=fpd with "
            "distill.schedule=pt_only (FPD from the PT) or distill.schedule=st_only (from the ST)")


def _build(cls, data: dict, where: str):
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    if cls is DistillConfig and "fpd_teacher" in data:
        raise ConfigError(f"{where}.fpd_teacher: no longer a key; {FPD_HINT}")
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    defaults = {f.name: f.default_factory() for f in fields(cls)
                if f.default_factory is not dataclasses.MISSING}
    kwargs = {}
    for k, v in data.items():
        # A partial mapping for a nested section keeps that section's own defaults
        # (e.g. distill.st.with_mask=True) rather than the nested class's bare defaults.
        if is_dataclass(defaults.get(k)) and isinstance(v, dict):
            v = _merge(dataclasses.asdict(defaults[k]), v)
        kwargs[k] = _coerce(v, hints[k], f"{where}.{k}" if where else k)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (e.g. train.epochs=10)")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


def _deep_set(d: dict, path: list[str], value: Any) -> None:
    for p in path[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {'.'.join(path)}: {p} is not a section")
    d[path[-1]] = value


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str) -> dict:
    """Read a YAML config; ``_base_: other.yaml`` (relative path) is merged underneath."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML config file") from None
    except (PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({type(e).__name__})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("_base_", None)
    if base:
        data = _merge(load_yaml(os.path.join(os.path.dirname(path), base)), data)
    return data


def load_config(path: str | None = None, overrides: list[str] | tuple = (),
                base: dict | None = None) -> Config:
    # a deep copy: overrides are set in place, and a caller's base (an experiment's shared
    # `base`) must not take on one run's overrides for the next run
    data: dict = copy.deepcopy(base) if base else {}
    src = path or "<defaults>"
    if path:
        data = _merge(data, load_yaml(resolve_config_path(path)))
    for ov in overrides:
        keys, value = parse_override(ov)
        _deep_set(data, keys, value)
    try:
        return _build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{src}: {e}") from None


def resolve_config_path(path: str) -> str:
    """Accept a file path or the name of a config shipped with odkd (e.g. ``demo``).

    A folder is never a config: ``odkd train demo_scale`` next to a folder ``demo_scale/``
    (a run's workdir, say) still means the shipped config.
    """
    if os.path.isfile(path):
        return path
    here = shipped_config_dir()
    for cand in (os.path.join(here, path), os.path.join(here, path + ".yaml")):
        if os.path.isfile(cand):
            return cand
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a folder, not a YAML config file (nor the name of a "
                          "shipped config; `odkd configs` lists them)")
    raise ConfigError(f"config file not found: {path} (nor a shipped config in {here}; "
                      "`odkd configs` lists them)")


def shipped_config_dir() -> str:
    return os.path.join(os.path.dirname(__file__), "configs")


def shipped_configs() -> list[tuple[str, str, str]]:
    """(name, command, first comment line) of each config shipped with odkd; command is
    ``experiment`` for experiment files (they list ``methods``), else ``train``."""
    out = []
    here = shipped_config_dir()
    for name in sorted(os.listdir(here)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(here, name)) as f:
            text = f.read()
        about = next((ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")),
                     "")
        data = yaml.safe_load(text) or {}
        out.append((name[:-len(".yaml")], "experiment" if "methods" in data else "train", about))
    return out


def upgrade_saved_config(saved: dict, distilled: bool) -> dict:
    """A complete config dict saved by an odkd from before ``distill.method`` (a checkpoint's
    ``config``, a run's config.yaml), rewritten in today's keys for the same training.

    Then, FPD was ``distill.schedule: fpd`` with ``distill.fpd_teacher``, and a distillation
    run (``distilled``) weighted its GT mask BCE by ``distill.seg_weight`` instead of
    ``train.mask_loss_weight``. Dicts that already have ``distill.method`` come back unchanged.
    """
    dist = saved.get("distill")
    if not isinstance(dist, dict) or "method" in dist:
        return saved
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}
    dist = out["distill"]
    teacher = dist.pop("fpd_teacher", "pt")
    if dist.get("schedule") == "fpd":
        dist["method"], dist["schedule"] = "fpd", f"{teacher}_only"
    else:
        dist["method"] = "odkd"
        if distilled and "seg_weight" in dist and isinstance(out.get("train"), dict):
            out["train"]["mask_loss_weight"] = dist["seg_weight"]
    return out


def save_config(cfg: Config, path: str) -> None:
    from odkd.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
