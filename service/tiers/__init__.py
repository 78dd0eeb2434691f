"""tiers.yaml: schema, σ resolution and the live-reloading registry of the tiers in force."""

from __future__ import annotations

from service.tiers.registry import TierRegistry
from service.tiers.schema import (
    FocusPolicy,
    RateLimitSpec,
    ResolvedTiers,
    SigmaSolver,
    Tier,
    TiersConfig,
    TierSpec,
    parse_tiers,
)

__all__ = [
    "FocusPolicy",
    "RateLimitSpec",
    "ResolvedTiers",
    "SigmaSolver",
    "Tier",
    "TierRegistry",
    "TierSpec",
    "TiersConfig",
    "parse_tiers",
]
