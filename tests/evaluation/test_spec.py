from __future__ import annotations

import pytest

from service.errors import BadInput
from service.evaluation.spec import check_fraction, check_positive, parse_classes, parse_grid


def test_range_includes_stop_despite_binary_rounding():
    grid = parse_grid("0:20:0.2", setting="--sigmas")
    assert len(grid) == 101
    assert grid[0] == 0.0 and grid[-1] == 20.0 and grid[1] == 0.2


def test_list_is_sorted_and_deduplicated():
    assert parse_grid("2, 0.5,0,0.5", setting="--sigmas") == [0.0, 0.5, 2.0]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("0:1", "three numbers"),
        ("0:1:0", "step must be > 0"),
        ("2:1:0.5", "below start"),
        ("a,1", "'a' is not a number"),
        ("-1,2", ">= 0"),
        ("0,nan", ">= 0"),
        ("0:1e9:1e-3", "more than the limit"),
    ],
)
def test_bad_grids_name_the_setting_and_the_problem(spec, fragment):
    with pytest.raises(BadInput) as err:
        parse_grid(spec, setting="--sigmas")
    assert "--sigmas" in err.value.message
    assert fragment in err.value.message


def test_classes_by_name_case_insensitive_or_id():
    labels = ["negative", "neutral", "positive"]
    assert parse_classes("Positive,0", labels) == [2, 0]


@pytest.mark.parametrize("spec", ["", "cat", "negative,negative", "7"])
def test_bad_classes(spec):
    with pytest.raises(BadInput) as err:
        parse_classes(spec, ["negative", "neutral", "positive"])
    assert "--classes" in err.value.message


def test_digit_label_names_win_over_ids():
    labels = ["background", "0", "1"]
    assert parse_classes("1", labels) == [2]


def test_numeric_checks():
    assert check_positive(3, setting="--repeats") == 3
    assert check_fraction(0.7, setting="--target-fidelity") == 0.7
    with pytest.raises(BadInput, match="--repeats must be >= 1, got 0"):
        check_positive(0, setting="--repeats")
    with pytest.raises(BadInput, match="--target-fidelity"):
        check_fraction(1.0, setting="--target-fidelity")
