"""Records of the tenant store (pydantic), with the formats of their identifiers.

Identifiers are public: ``ten_<16 hex>`` for tenants, ``key_<12 hex>`` for keys. API keys are secret:
``aim_sk_<43 url-safe chars>`` (256 random bits), shown once in :class:`IssuedKey` and hidden from its repr.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from service.errors import BadInput
from service.limits import MAX_FOCUS_CLASS_CHARS, MAX_FOCUS_CLASSES, MAX_NAME_CHARS

TENANT_ID_RE = re.compile(r"^ten_[0-9a-f]{16}$")
KEY_ID_RE = re.compile(r"^key_[0-9a-f]{12}$")
TIER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

TenantName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS)]
TierName = Annotated[str, StringConstraints(pattern=TIER_NAME_PATTERN)]
FocusClass = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FOCUS_CLASS_CHARS)]


class FocusPref(BaseModel):
    """A tenant's focus: ``strength`` σ_f ≥ 0 pushed onto ``classes`` (label names or target strings).

    Only the shape is checked here; the tier's policy and the model's labels are checked by the caller.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: list[FocusClass] = Field(min_length=1, max_length=MAX_FOCUS_CLASSES)
    strength: float = Field(ge=0.0)
    direction: Literal["boost", "suppress"] = "boost"

    @field_validator("strength")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("strength must be a finite number")
        return value

    @field_validator("classes")
    @classmethod
    def _no_control_chars(cls, value: list[str]) -> list[str]:
        if any(not c.isprintable() for c in value):
            raise ValueError("class names must be printable text")
        return value


class Tenant(BaseModel):
    """A tenant as stored. ``tier`` is a tier name that may have since vanished from tiers.yaml."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: TenantName
    tier: TierName
    focus: FocusPref | None = None
    created_at: datetime


class IssuedKey(BaseModel):
    """A freshly issued API key: the only object that ever holds the key in clear."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    api_key: str = Field(repr=False)

    def __str__(self) -> str:
        return f"IssuedKey(key_id={self.key_id!r}, api_key=<hidden>)"


class KeyInfo(BaseModel):
    """Public facts about a live key (never the key or its hash)."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    tenant_id: str
    created_at: datetime


class _Unset(Enum):
    UNSET = 0


Unset = Literal[_Unset.UNSET]
UNSET: Unset = _Unset.UNSET
"""Marks an update argument as "leave unchanged" where ``None`` has a meaning (clearing the focus)."""

_NAME: TypeAdapter[str] = TypeAdapter(TenantName)
_TIER: TypeAdapter[str] = TypeAdapter(TierName)


def check_name(name: str) -> str:
    """A tenant name from caller input, stripped; BadInput if empty or longer than 128 characters."""
    return _check(_NAME, name, "name")


def check_tier(tier: str) -> str:
    """A tier name from caller input; BadInput unless it matches :data:`TIER_NAME_PATTERN`."""
    return _check(_TIER, tier, "tier")


def _check(adapter: TypeAdapter[str], value: str, field: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise BadInput(f"invalid tenant {field}: {exc.errors()[0]['msg']}") from None
