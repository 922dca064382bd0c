"""Command-line parsing (odkd.cli)."""
import pytest

from odkd.cli import parse_args


def test_overrides_may_follow_options():
    """`odkd train CFG --resume key=value`: the override is kept, not rejected."""
    args = parse_args(["train", "demo_scale", "--resume", "train.epochs=3", "workdir=x"])
    assert args.resume and args.config == "demo_scale"
    assert args.overrides == ["train.epochs=3", "workdir=x"]
    args = parse_args(["distill", "demo", "a.b=1", "--resume", "c.d=2"])
    assert args.overrides == ["a.b=1", "c.d=2"]


def test_unknown_words_are_still_errors(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["train", "demo_scale", "--resume", "--bogus"])
    assert e.value.code == 2
    assert "--bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a command without overrides takes no key=value words
        parse_args(["synth", "--out", "d", "--split", "val", "a=1"])


def test_synth_difficulty_choices_match_the_generator():
    """commands/synth.py writes the levels out (no OpenCV import to build the CLI); they and
    the default must stay those of odkd.synth.scene, as must the experiment's SynthSpec."""
    from odkd.experiment import SynthSpec
    from odkd.synth.scene import DEFAULT_DIFFICULTY, DIFFICULTIES

    args = parse_args(["synth", "--out", "d"])
    assert args.difficulty == DEFAULT_DIFFICULTY == SynthSpec().difficulty
    with pytest.raises(SystemExit):
        parse_args(["synth", "--out", "d", "--difficulty", "extreme"])
    for level in DIFFICULTIES:
        assert parse_args(["synth", "--out", "d", "--difficulty", level]).difficulty == level
