"""From a tenant and its tier to one row's modulation: the only place σ and focus are decided.

No request field enters here: σ comes from the tier in force, focus from the tenant's stored preference
bounded by the tier's policy at the time of the request (a tier that stopped allowing focus disables it; a
lowered maximum clamps it), and the noise's base key from the server secret and the tier (never the tenant:
see `service.modulation.keys`); the engine adds the input's semantic codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from service.api.schemas import FocusRequest
from service.errors import BadInput, Forbidden
from service.modulation import BOOST, SUPPRESS, RowSpec
from service.modulation.keys import derive_tier_key
from service.store import FocusPref

FocusResolver = Callable[[Sequence[str]], tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class EffectiveFocus:
    classes: tuple[str, ...]
    ids: tuple[int, ...]
    strength: float
    direction: str

    def as_json(self) -> dict[str, object]:
        return {"classes": list(self.classes), "strength": self.strength, "direction": self.direction}


def check_focus_request(
    classes: Sequence[str], strength: float, allowed: bool, max_strength: float, resolve: FocusResolver
) -> tuple[int, ...]:
    """Validate a tenant's focus preference against its tier's policy and the model; the target ids."""
    if not allowed:
        raise Forbidden("this tier does not allow focus modulation", code="focus_not_allowed")
    if strength > max_strength:
        raise BadInput(
            f"focus strength {strength:g} is above this tier's maximum of {max_strength:g}",
            code="focus_too_strong",
        )
    return resolve(classes)


def stored_focus(asked: FocusRequest) -> FocusPref:
    """The preference as the store keeps it; a class name the store refuses (a control character) is a
    400 naming the problem."""
    try:
        return FocusPref(classes=asked.classes, strength=asked.strength, direction=asked.direction)
    except ValidationError as exc:
        raise BadInput(f"focus: {exc.errors()[0]['msg']}", code="bad_focus") from None


def label_resolver(labels: Sequence[str]) -> FocusResolver:
    """Class names -> indices for a classifier; unknown names are a 400 naming them."""
    index = {name: i for i, name in enumerate(labels)}
    lowered = {name.lower(): i for i, name in enumerate(labels)}

    def resolve(classes: Sequence[str]) -> tuple[int, ...]:
        unknown = [c for c in classes if c not in index and c.lower() not in lowered]
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:5])
            raise BadInput(
                f"unknown class {shown}; the model's labels are: {', '.join(labels[:50])}",
                code="unknown_class",
            )
        ids = {index.get(c, lowered.get(c.lower(), -1)) for c in classes}
        return tuple(sorted(ids))

    return resolve


def effective_focus(
    classes: Sequence[str] | None,
    strength: float,
    direction: str,
    allowed: bool,
    max_strength: float,
    resolve: FocusResolver,
) -> EffectiveFocus | None:
    """The focus applied now: None when unset or no longer allowed; strength clamped to the tier's max."""
    if not classes or not allowed or strength <= 0.0 or max_strength <= 0.0:
        return None
    try:
        ids = resolve(classes)
    except BadInput:  # labels changed since the preference was stored (another model): not applied
        return None
    return EffectiveFocus(tuple(classes), ids, min(strength, max_strength), direction)


def row_spec(secret: bytes, tier: str, sigma: float, focus: EffectiveFocus | None) -> RowSpec:
    """One row's settings; the key binds the noise to (secret, tier); the engine adds the input's codes."""
    key = derive_tier_key(secret, tier)
    if focus is None:
        return RowSpec(sigma, key)
    sign = SUPPRESS if focus.direction == "suppress" else BOOST
    return RowSpec(sigma, key, focus.ids, focus.strength, sign)
