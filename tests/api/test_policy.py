"""`api.policy` on its own: focus checks, label resolution, the focus a downgraded tenant keeps, row specs.

No server, no model: tiers parsed from YAML with fixed σ, labels as plain lists, a fixed secret.
"""

from __future__ import annotations

import pytest

from service.api.policy import (
    EffectiveFocus,
    check_focus_request,
    effective_focus,
    label_resolver,
    row_spec,
    stored_focus,
)
from service.api.schemas import FocusRequest
from service.errors import BadInput, Forbidden
from service.modulation import BOOST, SUPPRESS
from service.modulation.keys import derive_tier_key
from service.tiers.schema import Tier, parse_tiers

LABELS = ["cat", "Dog", "bird"]
SECRET = b"policy-test-secret-0123456789"
TIERS = """\
default_tier: free
tiers:
  premium: {sigma: 0.0, focus: {allowed: true, max_strength: 3.0}}
  standard: {sigma: 1.0, focus: {allowed: true, max_strength: 1.5}}
  free: {sigma: 4.0, focus: {allowed: false}}
"""


def _no_solver(_tier: str, _target: float) -> float:
    raise AssertionError("these tiers give sigma, not target_fidelity")


@pytest.fixture(scope="module")
def tiers() -> dict[str, Tier]:
    return parse_tiers(TIERS, _no_solver).tiers


def _focus(tier: Tier, classes: list[str] | None, strength: float, direction: str = "boost"):
    p = tier.focus
    return effective_focus(classes, strength, direction, p.allowed, p.max_strength, label_resolver(LABELS))


def test_label_resolver_maps_names_case_insensitively_and_dedups():
    resolve = label_resolver(LABELS)
    assert resolve(["bird", "cat"]) == (0, 2)
    assert resolve(["dog", "DOG", "Dog"]) == (1,)  # exact name first, then any case; one id each


def test_label_resolver_names_the_unknown_classes():
    with pytest.raises(BadInput) as caught:
        label_resolver(LABELS)(["cat", "zebra", "emu"])
    assert caught.value.code == "unknown_class"
    assert "'zebra'" in caught.value.message and "'emu'" in caught.value.message
    assert "cat, Dog, bird" in caught.value.message


def test_check_focus_request_applies_the_tier_policy(tiers):
    resolve = label_resolver(LABELS)
    premium, standard, free = tiers["premium"].focus, tiers["standard"].focus, tiers["free"].focus
    assert check_focus_request(["dog"], 3.0, premium.allowed, premium.max_strength, resolve) == (1,)
    with pytest.raises(BadInput) as strong:
        check_focus_request(["dog"], 1.51, standard.allowed, standard.max_strength, resolve)
    assert (strong.value.status, strong.value.code) == (400, "focus_too_strong")
    assert "1.51" in strong.value.message and "1.5" in strong.value.message
    with pytest.raises(Forbidden) as forbidden:
        check_focus_request(["dog"], 0.1, free.allowed, free.max_strength, resolve)
    assert (forbidden.value.status, forbidden.value.code) == (403, "focus_not_allowed")
    with pytest.raises(BadInput) as unknown:
        check_focus_request(["zebra"], 1.0, premium.allowed, premium.max_strength, resolve)
    assert unknown.value.code == "unknown_class"


def test_focus_is_clamped_after_a_downgrade_and_dropped_where_not_allowed(tiers):
    # Set under premium at 2.5 (allowed there); the tenant is then moved to standard, then to free.
    asked = ["bird", "cat"]
    assert _focus(tiers["premium"], asked, 2.5) == EffectiveFocus(("bird", "cat"), (0, 2), 2.5, "boost")
    clamped = _focus(tiers["standard"], asked, 2.5, "suppress")
    assert clamped == EffectiveFocus(("bird", "cat"), (0, 2), 1.5, "suppress")
    assert _focus(tiers["free"], asked, 2.5) is None


def test_effective_focus_is_none_when_unset_or_stale(tiers):
    premium = tiers["premium"]
    assert _focus(premium, None, 1.0) is None
    assert _focus(premium, [], 1.0) is None
    assert _focus(premium, ["cat"], 0.0) is None
    assert _focus(premium, ["a label of another model"], 1.0) is None  # labels changed: not applied


def test_row_spec_takes_sigma_from_the_tier_and_keys_by_tier():
    plain = row_spec(SECRET, "standard", 1.0, None)
    assert (plain.sigma, plain.focus_ids, plain.focus_strength, plain.has_focus) == (1.0, (), 0.0, False)
    assert plain.key == derive_tier_key(SECRET, "standard")
    assert row_spec(SECRET, "free", 1.0, None).key != plain.key  # two tiers never share noise
    boost = row_spec(SECRET, "premium", 0.0, EffectiveFocus(("cat",), (0,), 2.0, "boost"))
    assert (boost.focus_ids, boost.focus_strength, boost.focus_sign) == ((0,), 2.0, BOOST)
    suppress = row_spec(SECRET, "premium", 0.0, EffectiveFocus(("cat",), (0,), 2.0, "suppress"))
    assert suppress.focus_sign == SUPPRESS and suppress.key == boost.key


def test_stored_focus_refuses_what_the_store_would_with_a_400():
    ok = stored_focus(FocusRequest(classes=["cat"], strength=1.0, direction="suppress"))
    assert (ok.classes, ok.strength, ok.direction) == (["cat"], 1.0, "suppress")
    with pytest.raises(BadInput) as caught:
        stored_focus(FocusRequest(classes=["tab\there"], strength=1.0))
    assert (caught.value.status, caught.value.code) == (400, "bad_focus")
    assert "printable" in caught.value.message


def test_effective_focus_as_json_is_what_responses_show():
    focus = EffectiveFocus(("cat",), (0,), 1.5, "boost")
    assert focus.as_json() == {"classes": ["cat"], "strength": 1.5, "direction": "boost"}
