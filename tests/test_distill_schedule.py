import pytest

from odkd.config import ConfigError
from odkd.distill.schedule import (SCHEDULES, describe_schedule, schedule_teachers,
                                   teacher_weights)

PT, ST, BOTH, NONE = (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.0, 0.0)


def _run(schedule, total=10, frac=0.5):
    return [teacher_weights(schedule, e, total, frac) for e in range(total)]


def test_orderly_pt_first_then_st():
    assert _run("orderly") == [PT] * 5 + [ST] * 5
    assert _run("orderly", frac=0.3) == [PT] * 3 + [ST] * 7


def test_reverse_st_first_then_pt_with_same_pt_share():
    assert _run("reverse") == [ST] * 5 + [PT] * 5
    assert _run("reverse", frac=0.3) == [ST] * 7 + [PT] * 3


def test_switch_rounds_half_up():
    assert _run("orderly", total=5) == [PT] * 3 + [ST] * 2     # 2.5 -> 3, not banker's 2
    assert _run("reverse", total=5) == [ST] * 2 + [PT] * 3


def test_fraction_extremes_use_one_teacher():
    assert _run("orderly", frac=0.0) == [ST] * 10
    assert _run("orderly", frac=1.0) == [PT] * 10


def test_constant_schedules():
    assert _run("simultaneous") == [BOTH] * 10
    assert _run("pt_only") == [PT] * 10
    assert _run("st_only") == [ST] * 10
    assert _run("none") == [NONE] * 10


def test_steps_past_the_end_keep_last_phase():
    assert teacher_weights("orderly", 12, 10, 0.5) == ST
    assert teacher_weights("reverse", 12, 10, 0.5) == PT


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        teacher_weights("ordered", 0, 10, 0.5)
    msg = str(e.value)
    assert "distill.schedule" in msg and "'ordered'" in msg
    assert all(name in msg for name in SCHEDULES)


@pytest.mark.parametrize("kwargs,field", [
    (dict(schedule="orderly", step=0, total_steps=10, pt_fraction=1.5), "distill.pt_fraction"),
    # FPD is a loss (distill.method), not a timing: the error says what to write
    (dict(schedule="fpd", step=0, total_steps=10, pt_fraction=0.5), "distill.method=fpd"),
    (dict(schedule="orderly", step=0, total_steps=0, pt_fraction=0.5), "train.epochs"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        teacher_weights(**kwargs)


def test_schedule_teachers():
    assert schedule_teachers("orderly", 0.5) == {"pt", "st"}
    assert schedule_teachers("orderly", 1.0) == {"pt"}
    assert schedule_teachers("reverse", 0.0) == {"st"}
    assert schedule_teachers("none") == set()


def test_describe_schedule():
    assert describe_schedule("orderly", 10, 0.5) == "orderly: PT steps 0-4, ST steps 5-9"
    assert describe_schedule("reverse", 3, 0.34) == "reverse: ST steps 0-1, PT step 2"
    assert describe_schedule("simultaneous", 2, 0.5) == "simultaneous: PTx0.5 + STx0.5 steps 0-1"
    assert describe_schedule("none", 2, 0.5) == "none: GT only steps 0-1"
    assert describe_schedule("orderly", 10, 0.0) == "orderly: ST steps 0-9"
    assert describe_schedule("orderly", 10, 1.0) == "orderly: PT steps 0-9"


def test_describe_schedule_gives_epochs_and_matches_weights():
    # 3 epochs of 100 steps, switch at 35 %: inside the second epoch
    assert describe_schedule("orderly", 300, 0.35, steps_per_epoch=100) == \
        "orderly: PT steps 0-104 (epochs 0-1.05), ST steps 105-299 (epochs 1.05-3)"
    # the text is built from teacher_weights at a few points: check it against a full walk
    for schedule in SCHEDULES:
        for total, frac in ((7, 0.3), (10, 0.5), (1, 0.5), (4, 0.0), (4, 1.0)):
            walk = []
            for step, w in enumerate(_run(schedule, total, frac)):
                if walk and walk[-1][2] == w:
                    walk[-1][1] = step
                else:
                    walk.append([step, step, w])
            assert describe_schedule(schedule, total, frac).count(",") == len(walk) - 1, \
                (schedule, total, frac)


def test_switch_by_iteration_lands_inside_an_epoch():
    """A 2-epoch run of 45 steps each can switch at any step, not only at epoch 0, 1 or 2."""
    total = 2 * 45
    w = _run("orderly", total, 0.3)
    assert w[:27] == [PT] * 27 and w[27:] == [ST] * 63  # 0.3 * 90 = 27, in epoch 1
