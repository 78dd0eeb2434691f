"""Safe tiers reloads: a half-written file is never applied, a removed tier's tenants never get a more
generous tier unasked, and every refusal is logged and counted."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from service.errors import BadInput
from service.tiers import TierRegistry, parse_tiers
from tests.tiers.solver import BisectionSolver

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "tiers.yaml").read_text()
SETTLE = 1.0


class Hook:
    def __init__(self) -> None:
        self.statuses: list[str] = []

    def __call__(self, status: str, _sigmas: dict[str, float]) -> None:
        self.statuses.append(status)


@pytest.fixture(scope="module")
def solver() -> Callable[[str, float], float]:
    return functools.cache(BisectionSolver(rows=500))  # the same targets recur on every reload


def _loaded(
    path: Path, text: str, solver: Callable[[str, float], float], hook: Hook | None = None
) -> TierRegistry:
    path.write_text(text)
    registry = TierRegistry(path, solver, on_reload=hook)
    registry.reload_or_raise()
    return registry


def test_no_prefix_of_the_shipped_file_is_applied_before_it_settles(
    tmp_path: Path, solver: Callable[[str, float], float]
) -> None:
    path, hook = tmp_path / "tiers.yaml", Hook()
    registry = _loaded(path, SHIPPED, solver, hook)
    shipped = registry.current
    t = 1000.0
    accepted = []
    for n in range(len(SHIPPED)):
        path.write_text(SHIPPED[:n])  # a writer that has written n characters so far
        # The watcher looks every 0.25 s while the writer is still at it: nothing is applied.
        for dt in (0.0, 0.25, 0.5, 0.75):
            assert not registry.poll(t + dt, SETTLE)
            assert registry.current is shipped
        t += 10.0
        # Had the writer stopped here for good (a crash), the stable prefix is judged whole.
        registry.poll(t, SETTLE)
        if registry.current is not shipped:
            accepted.append(SHIPPED[:n])
            registry = _loaded(path, SHIPPED, solver, hook)  # back to the full file for the next prefix
            shipped = registry.current
        t += 10.0
    # Stable truncations that are valid files and move nobody to a more generous tier can be applied
    # (an operator saving such a file means it); none of them gives a tier less noise than shipped.
    for text in accepted:
        tiers = parse_tiers(text, solver)
        for name, tier in tiers.tiers.items():
            assert tier.sigma >= shipped.tiers[name].sigma - 1e-9, (text, name)
    rejected = hook.statuses.count("failed") + hook.statuses.count("refused")
    assert rejected + len(accepted) == len(SHIPPED), (rejected, len(accepted))
    assert rejected > 0.9 * len(SHIPPED)  # most prefixes are not even valid files


def test_a_removed_tier_is_not_served_as_a_more_generous_default(
    tmp_path: Path, solver: Callable[[str, float], float], caplog: pytest.LogCaptureFixture
) -> None:
    path, hook = tmp_path / "tiers.yaml", Hook()
    registry = _loaded(path, SHIPPED, solver, hook)
    before = registry.current
    free = before.tiers["free"]
    # The measured failure: free removed and default_tier premium gave free tenants σ = 0 and 600/min.
    orphaning = SHIPPED.replace("default_tier: free", "default_tier: premium")
    orphaning = orphaning[: orphaning.index("  free:")]
    path.write_text(orphaning)
    with caplog.at_level(logging.ERROR), pytest.raises(BadInput) as caught:
        registry.reload_or_raise()
    assert caught.value.code == "tiers_refused"
    message = caught.value.message
    assert "'free'" in message and "sigma" in message and "30/min -> 600/min" in message
    assert "migrate" in message and "tiers refused" in caplog.text
    assert registry.current is before and registry.tier_for("free") == free
    assert hook.statuses[-1] == "refused"

    # Saying where the free tenants go makes the same removal acceptable.
    path.write_text(orphaning + "migrate: {free: standard}\n")
    registry.reload_or_raise()
    assert registry.tier_for("free").name == "standard"
    assert hook.statuses[-1] == "ok"

    # Dropping the migrate entry later would move them to the default (premium) unasked: refused too.
    path.write_text(orphaning)
    with pytest.raises(BadInput):
        registry.reload_or_raise()
    assert registry.tier_for("free").name == "standard"


def test_a_higher_priority_alone_is_an_upgrade(tmp_path: Path, solver: Callable[[str, float], float]) -> None:
    path = tmp_path / "tiers.yaml"
    registry = _loaded(path, "default_tier: a\ntiers:\n  a: {sigma: 1.0}\n  b: {sigma: 1.0}\n", solver)
    path.write_text("default_tier: a\ntiers:\n  a: {sigma: 1.0, priority: 5}\n")  # b's tenants would jump
    with pytest.raises(BadInput, match="priority 0 -> 5"):
        registry.reload_or_raise()


def test_removing_a_tier_for_a_stricter_default_needs_no_migrate(
    tmp_path: Path, solver: Callable[[str, float], float]
) -> None:
    registry = _loaded(tmp_path / "tiers.yaml", SHIPPED, solver)
    standard = SHIPPED.index("  standard:")
    (tmp_path / "tiers.yaml").write_text(SHIPPED[:standard] + SHIPPED[SHIPPED.index("  free:") :])
    registry.reload_or_raise()  # standard's tenants are served as free: more noise, a rate limit
    assert registry.tier_for("standard").name == "free"


@pytest.mark.parametrize(
    ("migrate", "problem"),
    [("{bronze: gold}", "'gold', which is not one of the tiers"), ("{free: premium}", "still a tier")],
)
def test_bad_migrate_entries_reject_the_file(
    solver: Callable[[str, float], float], migrate: str, problem: str
) -> None:
    with pytest.raises(Exception, match=problem):
        parse_tiers(SHIPPED + f"migrate: {migrate}\n", solver)


def test_a_kubernetes_configmap_swap_is_applied_once_settled(
    tmp_path: Path, solver: Callable[[str, float], float]
) -> None:
    # The kubelet writes a new timestamped directory, then renames the ..data symlink onto it.
    mount = tmp_path / "config"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "tiers.yaml").write_text(SHIPPED)
    (mount / "..data").symlink_to("..v1")
    (mount / "tiers.yaml").symlink_to("..data/tiers.yaml")
    registry = TierRegistry(mount / "tiers.yaml", solver)
    registry.reload_or_raise()
    (mount / "..v2").mkdir()
    (mount / "..v2" / "tiers.yaml").write_text(
        SHIPPED.replace("requests_per_minute: 30", "requests_per_minute: 20")
    )
    (mount / "..data_tmp").symlink_to("..v2")
    (mount / "..data_tmp").replace(mount / "..data")
    assert not registry.poll(100.0, SETTLE)  # seen changing
    assert not registry.poll(100.5, SETTLE)  # not settled yet
    assert registry.poll(101.0, SETTLE)
    rate = registry.current.tiers["free"].rate_limit
    assert rate is not None and rate.requests_per_minute == 20
    assert not registry.poll(102.0, SETTLE)  # loaded once
