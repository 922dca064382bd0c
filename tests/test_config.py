import pytest

from odkd.config import ConfigError, load_config, save_config


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  name: hrnet_w48\ntrain:\n  epochs: 5\n")
    (tmp_path / "c.yaml").write_text("_base_: base.yaml\ntrain:\n  lr: 0.01\n")
    cfg = load_config(str(tmp_path / "c.yaml"), ["train.epochs=7", "data.input_size=[64,96]",
                                                 "distill.st.checkpoint=st.pt"])
    assert cfg.model.name == "hrnet_w48" and cfg.train.lr == 0.01 and cfg.train.epochs == 7
    assert cfg.data.input_size == [64, 96] and cfg.distill.st.checkpoint == "st.pt"
    assert cfg.distill.st.with_mask is True  # ST default: has a mask output


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "eval.flip_test=false"])
    save_config(cfg, str(tmp_path / "r.yaml"))
    assert load_config(str(tmp_path / "r.yaml")) == cfg


@pytest.mark.parametrize("override,match", [
    ("train.epochz=3", "epochz"),
    ("train.epochs=abc", "train.epochs"),
    ("eval.flip_test=maybe", "eval.flip_test"),
    ("data.input_size=5", "data.input_size"),
    ("nonsense", "key=value"),
])
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_bad_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_hash_depends_on_selected_sections():
    a = load_config(None, ["train.epochs=3"])
    b = load_config(None, ["train.epochs=4"])
    c = load_config(None, ["train.epochs=3", "eval.flip_test=false"])
    assert a.hash("train") != b.hash("train")
    assert a.hash("train", "model") == c.hash("train", "model")
    # leave_out drops single fields: the hash no longer sees them, and nothing else changes
    no_epochs = ("train.epochs",)
    assert a.hash("train", leave_out=no_epochs) == b.hash("train", leave_out=no_epochs)
    assert a.hash("train", leave_out=no_epochs) != a.hash("train")
    assert a.hash("train", leave_out=()) == a.hash("train")


def test_overrides_leave_the_callers_base_alone():
    base = {"train": {"epochs": 2}, "distill": {"binarize_mode": "hard"}}
    cfg = load_config(None, ["train.epochs=5", "distill.binarize_mode=none"], base=base)
    assert cfg.train.epochs == 5 and cfg.distill.binarize_mode == "none"
    assert base == {"train": {"epochs": 2}, "distill": {"binarize_mode": "hard"}}


def test_every_shipped_config_loads():
    """Each YAML under odkd/configs parses into its typed config (experiment or training)."""
    import glob
    import os

    import yaml

    import odkd
    from odkd.experiment import load_experiment

    root = os.path.join(os.path.dirname(odkd.__file__), "configs")
    paths = sorted(glob.glob(os.path.join(root, "*.yaml")))
    assert len(paths) >= 8
    for p in paths:
        raw = yaml.safe_load(open(p))
        if "pt" in raw or ("_base_" in raw and "methods" in raw):  # experiment configs
            exp = load_experiment(p)
            assert exp.seeds and exp.methods, p
        else:
            assert load_config(p).data.input_size, p


def test_a_folder_is_not_a_config(tmp_path, monkeypatch):
    """`mkdir demo_scale; odkd train demo_scale` still means the shipped config; a folder
    named like no shipped config is a one-line ConfigError, not IsADirectoryError."""
    from odkd.config import resolve_config_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_scale").mkdir()
    (tmp_path / "mine").mkdir()
    assert resolve_config_path("demo_scale").endswith("configs/demo_scale.yaml")
    with pytest.raises(ConfigError, match="mine: is a folder"):
        load_config("mine")


def test_demo_scale_names_its_model():
    # the README curves are Lite-HRNet-18; the code default would silently train HRNet-W32
    assert load_config("demo_scale").model.name == "litehrnet_18"


def test_shipped_configs_are_listed_with_their_command():
    from odkd.config import shipped_configs

    rows = {name: command for name, command, _ in shipped_configs()}
    assert rows["demo_scale"] == "train" and rows["demo"] == "experiment"


def test_saved_configs_from_before_distill_method_are_read_in_todays_keys():
    from odkd.config import Config, upgrade_saved_config

    now = Config().to_dict()
    assert upgrade_saved_config(now, distilled=True) is now   # today's dicts: unchanged
    old = Config().to_dict()
    del old["distill"]["method"]
    old["distill"].update(schedule="fpd", fpd_teacher="st")
    up = upgrade_saved_config(old, distilled=True)
    assert up["distill"]["method"] == "fpd" and up["distill"]["schedule"] == "st_only"
    assert "fpd_teacher" not in up["distill"] and old["distill"]["schedule"] == "fpd"
    # a distillation run weighted its GT mask BCE by distill.seg_weight then; a teacher by
    # train.mask_loss_weight (as everything does now)
    old["distill"].update(schedule="orderly", seg_weight=0.05)
    assert upgrade_saved_config(old, distilled=True)["train"]["mask_loss_weight"] == 0.05
    assert upgrade_saved_config(old, distilled=False)["train"]["mask_loss_weight"] == 0.01
    assert load_config(None, base=upgrade_saved_config(old, distilled=True)).distill.method \
        == "odkd"
