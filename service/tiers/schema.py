"""The tiers.yaml schema (pydantic, strict, unknown keys rejected) and its resolution to effective σ.

A file is accepted or rejected whole: :func:`parse_tiers` raises :class:`ConfigError` with every problem
found, each prefixed by its location (``tiers.free.sigma: ...``), and returns nothing partial.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.errors import ConfigError
from service.store.models import TierName

SigmaSolver = Callable[[str, float], float]
"""Maps (tier name, target top-1 fidelity in (0, 1]) to the σ achieving it on the served model's calibration
set. The tier enters because a classifier's noise is keyed by (server secret, tier): its σ is solved on the
draws that tier serves (`service.serving.served_calibration`)."""

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class RateLimitSpec(BaseModel):
    model_config = _STRICT

    requests_per_minute: int = Field(gt=0)


class FocusPolicy(BaseModel):
    """Whether tenants of the tier may set a focus, and the largest strength σ_f they may ask for.

    ``max_strength`` must be given when ``allowed``; it is 0.0 when focus is not allowed.
    """

    model_config = _STRICT

    allowed: bool = False
    max_strength: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _max_when_allowed(self) -> Self:
        if self.allowed and "max_strength" not in self.model_fields_set:
            raise ValueError("max_strength is required when focus is allowed")
        return self


MAX_PRIORITY = 100


class TierSpec(BaseModel):
    """One tier as written: ``sigma`` (≥ 0), ``target_fidelity`` (in (0, 1]), or both.

    ``target_fidelity`` alone: σ is solved on the model's calibration inputs at every load. Both: ``sigma`` is
    in force (e.g. re-solved from live traffic by ``aimserve calibrate --from-traffic``) and
    ``target_fidelity`` stays the tier's promise, exported and alerted on but not re-solved.

    ``priority`` (0..100, default 0): requests of a higher priority are scheduled before those of a lower
    one, in the classification queue and for admission into the generation batch.
    """

    model_config = _STRICT

    sigma: float | None = Field(default=None, ge=0.0)
    target_fidelity: float | None = Field(default=None, gt=0.0, le=1.0)
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    rate_limit: RateLimitSpec | None = None
    focus: FocusPolicy = FocusPolicy()

    @model_validator(mode="after")
    def _one_noise_setting(self) -> Self:
        if self.sigma is None and self.target_fidelity is None:
            raise ValueError("give sigma, target_fidelity, or both (a sigma calibrated for the target)")
        return self


class TiersConfig(BaseModel):
    """The whole file. ``default_tier`` must name one of ``tiers``; ``migrate`` maps removed tier names
    to the tier their tenants are served as (each target one of ``tiers``, no source still a tier)."""

    model_config = _STRICT

    default_tier: TierName
    tiers: dict[TierName, TierSpec] = Field(min_length=1)
    migrate: dict[TierName, TierName] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_exist(self) -> Self:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers")
        for old, new in self.migrate.items():
            if old in self.tiers:
                raise ValueError(f"migrate: {old!r} is still a tier; only removed tiers are migrated")
            if new not in self.tiers:
                raise ValueError(f"migrate: {old!r} -> {new!r}, which is not one of the tiers")
        return self


class Tier(BaseModel):
    """A tier in force, with its effective ``sigma`` (solved when the file gave ``target_fidelity``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    sigma: float
    target_fidelity: float | None
    rate_limit: RateLimitSpec | None
    focus: FocusPolicy
    priority: int = 0

    def as_json(self) -> dict[str, Any]:
        """``{"sigma", "target_fidelity", "rate_limit": {"requests_per_minute"} | None, "focus",
        "priority"}``."""
        return self.model_dump(mode="json", exclude={"name"})


class ResolvedTiers(BaseModel):
    """The tiers in force. :meth:`tier_for` never fails: a removed tier's tenants are served as its
    ``migrate`` target, other unknown names as the default."""

    model_config = ConfigDict(frozen=True)

    default_tier: str
    tiers: dict[str, Tier]
    migrate: dict[str, str] = {}

    def tier_for(self, name: str) -> Tier:
        return self.tiers.get(name) or self.tiers[self.migrate.get(name, self.default_tier)]

    def names(self) -> set[str]:
        """Every tier name this config serves explicitly: its tiers and its migrated names."""
        return set(self.tiers) | set(self.migrate)

    def sigmas(self) -> dict[str, float]:
        """Tier name -> effective σ (for metrics)."""
        return {name: tier.sigma for name, tier in self.tiers.items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a repeated mapping key is an error instead of last-wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_tiers(text: str, sigma_for_fidelity: SigmaSolver, *, source: str = "tiers.yaml") -> ResolvedTiers:
    """Validate ``text`` and resolve every tier's σ. Raises ConfigError naming each problem."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    try:
        config = TiersConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
    tiers = {name: _resolve(name, spec, sigma_for_fidelity, source) for name, spec in config.tiers.items()}
    return ResolvedTiers(default_tier=config.default_tier, tiers=tiers, migrate=dict(config.migrate))


def _resolve(name: str, spec: TierSpec, solver: SigmaSolver, source: str) -> Tier:
    sigma = spec.sigma
    if sigma is None and spec.target_fidelity is not None:
        try:
            sigma = float(solver(name, spec.target_fidelity))
        except Exception as exc:  # the solver is a boundary; any failure rejects the file
            raise ConfigError(
                f"{source}: tiers.{name}: cannot solve sigma for target_fidelity "
                f"{spec.target_fidelity:g}: {exc}"
            ) from None
        if not math.isfinite(sigma) or sigma < 0:
            raise ConfigError(
                f"{source}: tiers.{name}: target_fidelity {spec.target_fidelity:g} gave sigma {sigma!r}"
            )
    assert sigma is not None  # guaranteed by TierSpec._one_noise_setting
    return Tier(
        name=name,
        sigma=sigma,
        target_fidelity=spec.target_fidelity,
        rate_limit=spec.rate_limit,
        focus=spec.focus,
        priority=spec.priority,
    )
