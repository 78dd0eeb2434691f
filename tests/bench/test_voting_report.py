"""bench/voting_report.py: shares of an LLM run pool as one run of all their prompts."""

from __future__ import annotations

import math

import pytest

from bench.voting_report import pooled


def _share(items: int, gain: float, se: float) -> dict[str, object]:
    row = {"gain": gain, "se": se, "ci95_low": 0.0, "ci95_high": 0.0}
    return {"items": items, "semantic": {"prefix": {"single": gain / 2, "gains": {"vote_31": row}}}}


def test_pooled_weights_means_by_items_and_adds_standard_errors_as_independent() -> None:
    out = pooled([_share(16, 0.1, 0.04), _share(48, 0.3, 0.02)])
    row = out["semantic"]["prefix"]["gains"]["vote_31"]
    assert out["items"] == 64
    assert row["gain"] == pytest.approx((16 * 0.1 + 48 * 0.3) / 64)
    se = math.sqrt((16 * 0.04) ** 2 + (48 * 0.02) ** 2) / 64
    assert row["se"] == pytest.approx(se)
    assert row["ci95_high"] == pytest.approx(row["gain"] + 1.96 * se)
    assert out["semantic"]["prefix"]["single"] == pytest.approx((16 * 0.05 + 48 * 0.15) / 64)
