import pytest

from odkd.config import ConfigError
from odkd.distill.schedule import (SCHEDULES, describe_schedule, schedule_teachers,
                                   teacher_weights)

PT, ST, BOTH, NONE = (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.0, 0.0)


def _run(schedule, total=10, frac=0.5, fpd_teacher="pt"):
    return [teacher_weights(schedule, e, total, frac, fpd_teacher) for e in range(total)]


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
    assert _run("fpd", fpd_teacher="pt") == [PT] * 10
    assert _run("fpd", fpd_teacher="st") == [ST] * 10


def test_epochs_past_the_end_keep_last_phase():
    assert teacher_weights("orderly", 12, 10, 0.5) == ST
    assert teacher_weights("reverse", 12, 10, 0.5) == PT


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        teacher_weights("ordered", 0, 10, 0.5)
    msg = str(e.value)
    assert "distill.schedule" in msg and "'ordered'" in msg
    assert all(name in msg for name in SCHEDULES)


@pytest.mark.parametrize("kwargs,field", [
    (dict(schedule="orderly", epoch=0, total_epochs=10, pt_fraction=1.5), "distill.pt_fraction"),
    (dict(schedule="fpd", epoch=0, total_epochs=10, pt_fraction=0.5, fpd_teacher="tt"),
     "distill.fpd_teacher"),
    (dict(schedule="orderly", epoch=0, total_epochs=0, pt_fraction=0.5), "train.epochs"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        teacher_weights(**kwargs)


def test_schedule_teachers():
    assert schedule_teachers("orderly", 0.5) == {"pt", "st"}
    assert schedule_teachers("orderly", 1.0) == {"pt"}
    assert schedule_teachers("reverse", 0.0) == {"st"}
    assert schedule_teachers("none") == set()
    assert schedule_teachers("fpd", fpd_teacher="st") == {"st"}


def test_describe_schedule():
    assert describe_schedule("orderly", 10, 0.5) == "orderly: PT epochs 0-4, ST epochs 5-9"
    assert describe_schedule("reverse", 3, 0.34) == "reverse: ST epochs 0-1, PT epoch 2"
    assert describe_schedule("simultaneous", 2, 0.5) == "simultaneous: PTx0.5 + STx0.5 epochs 0-1"
    assert describe_schedule("none", 2, 0.5) == "none: GT only epochs 0-1"
    assert describe_schedule("fpd", 2, 0.5, "st") == "fpd (teacher ST): ST epochs 0-1"
