"""bench/voting.py at a small scale: the voting attack on the free tier gains nothing beyond tolerance.

Fixed set: the first ITEMS held-out inputs of each classifier preset; fixed secret; k = 3 and 9 (the run
of `python -m bench.voting --items 32 --ks 3,9 --models minilm-sentiment,digits --per 2`, for text the
kinds in TEXT_KINDS; every kind at 200 items and k = 31 is in bench/results/voting-*-200.json). The same
code with ``keying="digest"`` (the keying before issue #11) must show the attack working, so the check can
fail. Tolerance: 2 items of ITEMS per kind. Premium (σ = 0) votes over the same variants as the baseline
(``vs_premium``): its single shot is the clean model's accuracy, and the excess is free gain - premium gain.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.voting import run_classifier

ITEMS = 32
TOLERANCE = 2 / ITEMS
TEXT_KINDS = ("prefix", "homoglyph", "second_account", "punctuation")


@pytest.fixture(scope="module", params=["minilm-sentiment", "digits"])
def result(request: pytest.FixtureRequest) -> dict[str, Any]:
    # <= 60 s: for text, prefix and homoglyph (closed by mechanisms of their own), a second account, and
    # punctuation, whose byte-keyed gain keeps the digest check above its margin since the free tier's σ is
    # solved on the served draws (1.18 for this secret: 32 items gain less at that σ); the other kinds are
    # in the 200-item results; 2 variants per input for the correlations; no cost timing
    kinds = TEXT_KINDS if request.param == "minilm-sentiment" else None
    return run_classifier(request.param, ITEMS, (3, 9), ("semantic", "premium", "digest"), 2, False, kinds)


def test_voting_gains_at_most_the_tolerance_for_every_kind(result: dict[str, Any]) -> None:
    gains = {kind: row["max_gain"] for kind, row in result["semantic"].items()}
    over = {k: g for k, g in gains.items() if g > TOLERANCE + 1e-9}
    assert not over, gains
    assert result["semantic"]["second_account"]["max_gain"] == 0.0  # the same draw for every account


def test_the_attack_works_against_byte_keyed_noise(result: dict[str, Any]) -> None:
    digest = {kind: row["max_gain"] for kind, row in result["digest"].items()}
    semantic = {kind: row["max_gain"] for kind, row in result["semantic"].items()}
    assert sum(digest.values()) > sum(semantic.values()) + 2 * TOLERANCE, (digest, semantic)


def test_the_free_tier_still_bites_single_shot(result: dict[str, Any]) -> None:
    single = [row["single"] for row in result["semantic"].values()]
    assert max(single) < result["premium_accuracy"], (single, result["premium_accuracy"])


def test_unrelated_inputs_get_nearly_independent_draws(result: dict[str, Any]) -> None:
    corr = result["draw_correlation"]
    assert corr["unrelated"] < 0.15, corr


def test_premium_is_the_baseline_of_every_vote(result: dict[str, Any]) -> None:
    clean = result["premium_accuracy"]
    for kind, votes in result["vs_premium"].items():
        assert result["premium"][kind]["single"] == clean, kind
        for key, row in votes.items():
            assert row["premium_gain"] == pytest.approx(result["premium"][kind][key] - clean), (kind, key)
            assert row["excess"] == pytest.approx(row["free_gain"] - row["premium_gain"]), (kind, key)
            assert row["gap_voted"] == pytest.approx(row["gap_single"] - row["excess"]), (kind, key)
    assert all(row["premium_gain"] == 0.0 for row in result["vs_premium"]["second_account"].values())
