"""The tiers.yaml schema: the contract's example, each rule, and σ resolution."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.tiers import parse_tiers
from tests.tiers.solver import BisectionSolver

REPO_TIERS = Path(__file__).resolve().parents[2] / "tiers.yaml"
A = "default_tier: a\ntiers:\n  a: "  # a file with one tier `a`, whose settings each case appends


def test_the_repository_tiers_file_has_the_contract_tiers_as_fidelity_targets() -> None:
    solver = BisectionSolver()
    tiers = parse_tiers(REPO_TIERS.read_text(), solver)
    assert tiers.default_tier == "free"
    assert set(tiers.tiers) == {"premium", "standard", "free"}
    premium, standard, free = (tiers.tiers[n] for n in ("premium", "standard", "free"))
    assert premium.sigma == 0.0 and standard.target_fidelity == 0.9
    assert premium.rate_limit is not None and premium.rate_limit.requests_per_minute == 600
    assert standard.rate_limit is None
    assert (premium.focus.allowed, premium.focus.max_strength) == (True, 3.0)
    assert (standard.focus.allowed, standard.focus.max_strength) == (True, 1.5)
    assert not free.focus.allowed
    assert free.rate_limit is not None and free.rate_limit.requests_per_minute == 30
    # target_fidelity went through the solver, and the σ it gave achieves the fidelity asked for.
    assert sorted(solver.calls) == [0.7, 0.9] and free.target_fidelity == 0.7
    assert 0 < standard.sigma < free.sigma
    assert solver.fidelity(standard.sigma) == pytest.approx(0.9, abs=0.01)
    assert solver.fidelity(free.sigma) == pytest.approx(0.7, abs=0.01)
    assert tiers.sigmas() == {"premium": 0.0, "standard": standard.sigma, "free": free.sigma}
    assert free.as_json() == {
        "sigma": free.sigma,
        "target_fidelity": 0.7,
        "rate_limit": {"requests_per_minute": 30},
        "focus": {"allowed": False, "max_strength": 0.0},
        "priority": 0,
    }
    assert (premium.priority, standard.priority, free.priority) == (2, 1, 0)


def _const(sigma: float) -> Callable[[str, float], float]:
    return lambda _tier, _target: sigma


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (A + "{}", "give sigma, target_fidelity, or both"),
        (A + "{sigma: -0.1}", "tiers.a.sigma"),
        (A + "{sigma: .nan}", "tiers.a.sigma"),
        (A + "{sigma: .inf}", "tiers.a.sigma"),
        (A + "{sigma: '1.0'}", "tiers.a.sigma"),
        (A + "{target_fidelity: 0}", "tiers.a.target_fidelity"),
        (A + "{target_fidelity: 1.01}", "tiers.a.target_fidelity"),
        (A + "{sigma: 1, rate_limit: {requests_per_minute: 0}}", "requests_per_minute"),
        (A + "{sigma: 1, rate_limit: {requests_per_minute: 1.5}}", "requests_per_minute"),
        (A + "{sigma: 1, rate_limit: {requests_per_minute: true}}", "requests_per_minute"),
        (A + "{sigma: 1, rate_limit: {}}", "requests_per_minute"),
        (A + "{sigma: 1, focus: {allowed: true}}", "max_strength is required"),
        (A + "{sigma: 1, focus: {allowed: true, max_strength: -1}}", "max_strength"),
        (A + "{sigma: 1, colour: red}", "tiers.a.colour"),
        (A + "{sigma: 1, focus: {allowed: false, max: 1}}", "tiers.a.focus.max"),
        (A + "{sigma: 1}\nextra: 1", "extra"),
        ("default_tier: b\ntiers:\n  a: {sigma: 1}", "default_tier 'b' is not one of the tiers"),
        ("tiers:\n  a: {sigma: 1}", "default_tier"),
        ("default_tier: a\ntiers: {}", "tiers"),
        (A + "{sigma: 1}\n  a: {sigma: 2}", "duplicate key 'a'"),
        ("default_tier: a\ntiers:\n  'bad name': {sigma: 1}", "bad name"),
        ("default_tier: a\ntiers: [a, b]", "tiers"),
        ("- just\n- a list", "(top level)"),
        ("", "(top level)"),
        (A + "{sigma: 1", "not valid YAML"),
    ],
)
def test_invalid_files_are_rejected_with_a_located_message(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tiers(text, _const(1.0), source="t.yaml")
    assert caught.value.message.startswith("t.yaml")
    assert fragment in caught.value.message


def test_every_problem_is_reported_at_once() -> None:
    text = "default_tier: a\ntiers:\n  a: {sigma: -1}\n  b: {target_fidelity: 2}"
    with pytest.raises(ConfigError) as caught:
        parse_tiers(text, _const(1.0))
    assert "tiers.a.sigma" in caught.value.message and "tiers.b.target_fidelity" in caught.value.message


def test_solver_failures_reject_the_file() -> None:
    text = "default_tier: a\ntiers:\n  a: {target_fidelity: 0.5}"

    def broken(_tier: str, _target: float) -> float:
        raise ValueError("no calibration inputs")

    with pytest.raises(ConfigError, match=r"tiers\.a: cannot solve sigma.*no calibration inputs"):
        parse_tiers(text, broken)
    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(ConfigError, match="gave sigma"):
            parse_tiers(text, _const(bad))


def test_missing_tier_falls_back_to_the_default() -> None:
    tiers = parse_tiers(A + "{sigma: 1}\n  b: {sigma: 2}", _const(0.0))
    assert tiers.tier_for("b").name == "b"
    assert tiers.tier_for("vanished").name == "a"


def test_focus_policy_is_parsed() -> None:
    text = (
        "default_tier: shut\ntiers:\n  shut: {sigma: 1}\n"
        "  open: {sigma: 1, focus: {allowed: true, max_strength: 2}}"
    )
    # The policy is applied in one place, `service.api.policy` (tests/api/test_policy.py).
    tiers = parse_tiers(text, _const(0.0))
    assert (tiers.tiers["shut"].focus.allowed, tiers.tiers["shut"].focus.max_strength) == (False, 0.0)
    assert (tiers.tiers["open"].focus.allowed, tiers.tiers["open"].focus.max_strength) == (True, 2.0)


def test_yaml_booleans_are_not_tier_names() -> None:
    # YAML 1.1 reads `no:` as false: a tier named no must be quoted, and unquoted it is a clear error.
    with pytest.raises(ConfigError, match="valid string"):
        parse_tiers(A + "{sigma: 1}\n  no: {sigma: 2}", _const(0.0))
    assert "no" in parse_tiers(A + "{sigma: 1}\n  'no': {sigma: 2}", _const(0.0)).tiers


def test_a_sigma_beside_a_target_is_in_force_and_the_target_is_kept_unsolved() -> None:
    solver = BisectionSolver()
    tiers = parse_tiers(A + "{sigma: 1.25, target_fidelity: 0.7}", solver)
    assert (tiers.tiers["a"].sigma, tiers.tiers["a"].target_fidelity) == (1.25, 0.7)
    assert solver.calls == []
