"""TierRegistry: last good tiers, rejected edits, live reload by the watcher, hooks for metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.errors import BadInput
from service.tiers import TierRegistry
from tests.tiers.solver import BisectionSolver

GOOD = """
default_tier: free
tiers:
  premium: {sigma: 0.0, rate_limit: {requests_per_minute: 600}, focus: {allowed: true, max_strength: 3.0}}
  free: {target_fidelity: 0.7, rate_limit: {requests_per_minute: 30}}
"""
EDITED = """
default_tier: free
tiers:
  premium: {sigma: 0.5}
  free: {target_fidelity: 0.9}
  gold: {sigma: 0.0}
"""
BROKEN = GOOD.replace("sigma: 0.0", "sigma: -1.0")


class Hook:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, float]]] = []

    def __call__(self, status: str, sigmas: dict[str, float]) -> None:
        self.calls.append((status, sigmas))


@pytest.fixture
def solver() -> BisectionSolver:
    return BisectionSolver(rows=500)


def _write(path: Path, text: str) -> None:
    # Write through a temporary file and rename, as editors do, so the watcher never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_load_resolves_target_fidelity_and_reports(tmp_path: Path, solver: BisectionSolver) -> None:
    path, hook = tmp_path / "tiers.yaml", Hook()
    path.write_text(GOOD)
    registry = TierRegistry(path, solver, on_reload=hook)
    with pytest.raises(RuntimeError):
        _ = registry.current  # nothing is read before the first load
    tiers = registry.reload_or_raise()
    free = tiers.tiers["free"]
    assert solver.calls == [0.7]
    assert solver.fidelity(free.sigma) == pytest.approx(0.7, abs=0.01)
    assert hook.calls == [("ok", {"premium": 0.0, "free": free.sigma})]
    assert registry.current is tiers and registry.last_error is None


def test_invalid_edit_is_rejected_whole_and_the_old_tiers_stay(
    tmp_path: Path, solver: BisectionSolver
) -> None:
    path, hook = tmp_path / "tiers.yaml", Hook()
    path.write_text(GOOD)
    registry = TierRegistry(path, solver, on_reload=hook)
    good = registry.reload_or_raise()

    path.write_text(BROKEN)
    assert registry.reload() is False
    assert registry.current is good
    assert registry.last_error is not None and "tiers.premium.sigma" in registry.last_error
    assert hook.calls[-1] == ("failed", good.sigmas())
    with pytest.raises(BadInput) as caught:
        registry.reload_or_raise()
    assert caught.value.code == "invalid_tiers" and "tiers.premium.sigma" in caught.value.message

    path.unlink()
    assert registry.reload() is False
    assert registry.current is good
    assert [status for status, _ in hook.calls] == ["ok", "failed", "failed", "failed"]

    path.write_text(EDITED)
    assert registry.reload() is True
    assert registry.current.tiers["premium"].sigma == 0.5 and registry.last_error is None


def test_tier_for_falls_back_when_a_tier_disappears(tmp_path: Path, solver: BisectionSolver) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(EDITED)
    registry = TierRegistry(path, solver)
    registry.reload_or_raise()
    assert registry.tier_for("gold").name == "gold"
    path.write_text(GOOD)  # gold is gone
    assert registry.reload()
    assert registry.tier_for("gold").name == "free"
    assert registry.require("premium").name == "premium"
    with pytest.raises(BadInput) as caught:
        registry.require("gold")
    assert caught.value.code == "unknown_tier"


async def _until(check: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "the watcher did not act in time"
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_watcher_picks_up_saved_edits_and_ignores_broken_ones(
    tmp_path: Path, solver: BisectionSolver
) -> None:
    path, hook = tmp_path / "tiers.yaml", Hook()
    path.write_text(GOOD)
    registry = TierRegistry(path, solver, on_reload=hook)
    registry.reload_or_raise()
    registry.start_watching(interval_s=0.02, settle_s=0.1)
    try:
        _write(path, EDITED)
        await _until(lambda: "gold" in registry.current.tiers, within_s=5.0)
        assert registry.current.tiers["free"].target_fidelity == 0.9
        assert solver.fidelity(registry.current.tiers["free"].sigma) == pytest.approx(0.9, abs=0.01)

        edited = registry.current
        _write(path, BROKEN)
        await _until(lambda: len(hook.calls) == 3, within_s=5.0)
        assert hook.calls[-1][0] == "failed"
        assert registry.current is edited  # the broken save changed nothing

        _write(path, BROKEN)  # saved again with the same bytes: not reloaded (nor counted) again
        await asyncio.sleep(0.2)
        assert len(hook.calls) == 3

        path.write_text(GOOD)  # written in place this time
        await _until(lambda: "gold" not in registry.current.tiers, within_s=5.0)
        assert [status for status, _ in hook.calls] == ["ok", "ok", "failed", "ok"]
    finally:
        await registry.stop_watching()


def test_a_sigma_applied_live_outlives_reloads_until_the_file_changes_that_tier(
    tmp_path: Path, solver: BisectionSolver
) -> None:
    path, hook = tmp_path / "tiers.yaml", Hook()
    path.write_text(GOOD)
    registry = TierRegistry(path, solver, on_reload=hook)
    solved = registry.reload_or_raise().tiers["free"].sigma
    applied = registry.apply_sigma("free", 2.5)
    assert (applied.sigma, applied.target_fidelity) == (2.5, 0.7)  # the promise stays, the σ is new
    assert registry.tier_for("free").sigma == 2.5 and hook.calls[-1] == ("ok", {"premium": 0.0, "free": 2.5})
    # A reload of the same file (or an edit of another tier) keeps the override ...
    _write(path, GOOD.replace("sigma: 0.0,", "sigma: 0.1,"))
    tiers = registry.reload_or_raise()
    assert tiers.tiers["free"].sigma == 2.5 and tiers.tiers["premium"].sigma == 0.1
    # ... an edit of that tier drops it: the operator's file wins.
    _write(path, EDITED)
    assert registry.reload_or_raise().tiers["free"].sigma != 2.5
    assert registry.tier_for("free").sigma == solver("free", 0.9) != solved
    with pytest.raises(BadInput, match="unknown tier 'gold2'"):
        registry.apply_sigma("gold2", 1.0)
