"""bench/voting_stats.py: paired gains and standard errors against values worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bench.voting_stats import gains, paired, summary, versus_premium


def test_paired_gain_and_standard_error() -> None:
    # differences 1, 0, 0, 1: mean 0.5, sample sd sqrt(1/3), se sqrt(1/3) / 2
    row = paired(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    se = math.sqrt(1 / 3) / 2
    assert row["gain"] == pytest.approx(0.5)
    assert row["se"] == pytest.approx(se)
    assert row["ci95_low"] == pytest.approx(0.5 - 1.96 * se)


def test_gains_pair_items_so_shared_variation_cancels() -> None:
    # every item gains exactly one point of 0.1: no spread in the difference, se 0
    single = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    row = gains({"single": single, "vote_3": single + 0.1})["vote_3"]
    assert row["gain"] == pytest.approx(0.1)
    assert row["se"] == pytest.approx(0.0, abs=1e-9)


def test_versus_premium_excess_and_gaps() -> None:
    free = {"single": torch.tensor([0.0, 0.0, 1.0, 0.0]), "vote_9": torch.tensor([1.0, 1.0, 1.0, 0.0])}
    premium = {"single": torch.tensor([1.0, 0.0, 1.0, 1.0]), "vote_9": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    row = versus_premium(free, premium)["vote_9"]
    assert row["free_gain"] == pytest.approx(0.5)
    assert row["premium_gain"] == pytest.approx(0.25)
    assert row["excess"] == pytest.approx(0.25)
    assert row["gap_single"] == pytest.approx(0.5)
    assert row["gap_voted"] == pytest.approx(0.25)
    assert summary(free)["max_gain"] == pytest.approx(0.5)
