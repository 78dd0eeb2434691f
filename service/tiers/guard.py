"""The reload guard: a new tiers.yaml may not quietly give a removed tier's tenants a better service.

A tenant keeps its tier name in Redis. When a reload removes that tier, the tenant is served as the
file's ``migrate`` target for it, or else as ``default_tier``. If that fallback has less noise (σ), a
higher (or no) rate limit, a higher scheduling priority, or a more permissive focus policy than what
the tenant was served before,
the reload is refused, unless the new file names the removed tier in ``migrate``: then the operator
chose the destination explicitly. Names checked: the tiers and ``migrate`` sources of the config in
force, i.e. every tier name this process serves on purpose.
"""

from __future__ import annotations

from service.tiers.schema import ResolvedTiers, Tier


def more_generous(after: Tier, before: Tier) -> list[str]:
    """How ``after`` serves a tenant better than ``before`` (empty when it does not)."""
    found = []
    if after.sigma < before.sigma:
        found.append(f"sigma {before.sigma:g} -> {after.sigma:g}")
    if before.rate_limit is not None and (
        after.rate_limit is None
        or after.rate_limit.requests_per_minute > before.rate_limit.requests_per_minute
    ):
        new = "unlimited" if after.rate_limit is None else f"{after.rate_limit.requests_per_minute}/min"
        found.append(f"rate limit {before.rate_limit.requests_per_minute}/min -> {new}")
    if after.priority > before.priority:
        found.append(f"priority {before.priority} -> {after.priority}")
    if after.focus.allowed and (
        not before.focus.allowed or after.focus.max_strength > before.focus.max_strength
    ):
        found.append("focus policy more permissive")
    return found


def refusals(old: ResolvedTiers, new: ResolvedTiers) -> list[str]:
    """One message per tier name whose tenants ``new`` would move to a more generous tier unasked."""
    problems = []
    for name in sorted(old.names() - new.names()):
        before, after = old.tier_for(name), new.tier_for(name)
        gains = more_generous(after, before)
        if gains:
            problems.append(
                f"tier {name!r} is gone and its tenants would be served as default_tier {after.name!r} "
                f"({', '.join(gains)}); add 'migrate: {{{name}: <tier>}}' to say where they go"
            )
    return problems
