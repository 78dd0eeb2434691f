"""A bounded sample of recently served clean logits per tier, for re-solving σ from live traffic.

Each tenant of a tier keeps its own ring of its most recent ``per_tenant`` rows; a tier keeps at most
``max_tenants`` tenants (the least recently seen is dropped). :meth:`TrafficSample.sample` then caps every
tenant's weight: each tenant contributes at most ``cap`` rows, with the cap chosen (water-filling) so that no
tenant holds more than ``max_share`` of the sample, or an equal share when fewer than ``1 / max_share``
tenants were seen. A tenant flooding its tier with crafted inputs (near-ties, to get a smaller σ) then
holds at most a share s of the sample, so at the σ solved for target F the other tenants' traffic gets
fidelity F_h = (F - s F_a) / (1 - s) with the attacker's F_a in [1/C, 1]: within s (F - 1/C) / (1 - s) above
or s (1 - F) / (1 - s) below the target (4 and 3 points for s = 0.1, F = 0.7). Opening more accounts
multiplies the share: that is bounded by account checks and rate limits, not by this sample.

Generation: a row keeps the clean logits of every ``GENERATION_STRIDE``-th decoding step among its first
``GENERATION_STRIDE x GENERATION_STEPS`` (`generation_sample`), reduced to their ``GENERATION_TOP`` largest
values: top-1 fidelity depends only on the gaps to the top, and a token further below the top than the
``GENERATION_TOP``-th changes the top-1 survival curve by less than 1e-3 for σ up to 2 (fidelity 0.43 on the
smollm2 preset; 64 values missed by 2.4e-3 there: tests/presets/test_smollm2.py), while a row costs 512
bytes instead of 4 V (200 KB for a 49,152-token vocabulary).

Classification rows served with utility noise and no focus also keep their unit-σ noise as served (C
float32: ``ClassResult.noise``), so σ can be re-solved on the draws the tier actually serves
(`service.modulation.served`): the noise is keyed by the server secret and the tier, never by σ, so it
stays valid after σ changes. A row without it (a focus tenant's, or σ = 0) makes the sample's noise None.

Memory: at most ``max_tenants x per_tenant`` rows of C float32 (2C with noise) per tier (C =
``GENERATION_TOP`` for generation: 128 MB per tier at the default bounds, reached only with 1,024 tenants of
256 sampled steps).
Thread-safe: ``add`` runs on the event loop, ``sample`` in a worker thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

import torch

#: The largest share of a tier's sample one tenant may hold, unless the operator asks otherwise.
DEFAULT_MAX_SHARE = 0.1
#: Generation: every 2nd decoding step of the first 32 of a row is sampled, as its 128 largest clean logits.
GENERATION_STRIDE, GENERATION_STEPS, GENERATION_TOP = 2, 16, 128
_LAST_SAMPLED = GENERATION_STRIDE * GENERATION_STEPS


def is_sampled_step(position: int) -> bool:
    """Whether a row's decoding step ``position`` (0 = its first generated token) goes into the sample."""
    return position % GENERATION_STRIDE == 0 and position < _LAST_SAMPLED


def generation_sample(positions: list[int], clean: torch.Tensor) -> tuple[list[int], torch.Tensor | None]:
    """The rows of one decoding step whose step is sampled, and their top clean logits (n, TOP) on CPU.

    ``positions``: each row's decoding position; ``clean``: the step's unmodulated logits (B, V).
    """
    picked = [i for i, p in enumerate(positions) if is_sampled_step(p)]
    if not picked:
        return picked, None
    rows = clean if len(picked) == len(positions) else clean[picked]
    top = rows.topk(min(GENERATION_TOP, rows.shape[-1]), dim=-1, sorted=False).values
    return picked, top.to("cpu", torch.float32)


_Row = tuple[torch.Tensor, torch.Tensor | None]  # clean logits (C,), unit noise as served (C,) or None


class TrafficSample:
    def __init__(self, *, per_tenant: int = 256, max_tenants: int = 1024) -> None:
        if per_tenant < 1 or max_tenants < 1:
            raise ValueError(f"per_tenant={per_tenant} and max_tenants={max_tenants} must be >= 1")
        self.per_tenant = per_tenant
        self.max_tenants = max_tenants
        self._tiers: dict[str, OrderedDict[str, deque[_Row]]] = {}
        self._lock = threading.Lock()

    def add(self, tier: str, tenant: str, logits: torch.Tensor, noise: torch.Tensor | None = None) -> None:
        """Keep the rows of ``logits`` (B, C), unmodulated, served to ``tenant`` of ``tier`` (copied), with
        their unit-σ noise as served (B, C) when given."""
        rows = logits.detach().to("cpu", torch.float32).clone()
        draws = None if noise is None else noise.detach().to("cpu", torch.float32).clone()
        with self._lock:
            tenants = self._tiers.setdefault(tier, OrderedDict())
            ring = tenants.pop(tenant, None) or deque(maxlen=self.per_tenant)
            ring.extend(zip(rows, [None] * len(rows) if draws is None else draws, strict=True))
            tenants[tenant] = ring
            while len(tenants) > self.max_tenants:
                tenants.popitem(last=False)

    def counts(self, tier: str) -> dict[str, int]:
        """Rows held per tenant of ``tier``."""
        with self._lock:
            return {t: len(r) for t, r in self._tiers.get(tier, {}).items()}

    def tenant_rows(self, tier: str, tenant: str) -> torch.Tensor:
        """The rows held for one tenant of ``tier`` (N, C); (0, 0) when none."""
        with self._lock:
            tenants = self._tiers.get(tier)
            ring = list(tenants.get(tenant, ())) if tenants is not None else []
        return torch.stack([row for row, _ in ring]) if ring else torch.zeros(0, 0)

    def sample(self, tier: str, max_share: float = DEFAULT_MAX_SHARE) -> tuple[torch.Tensor, int]:
        """(N, C) rows of ``tier`` with every tenant's share capped, and the number of tenants in it.

        ``max_share`` in (0, 1]. An empty tier gives a (0, 0) tensor.
        """
        logits, _, tenants = self.sample_with_noise(tier, max_share)
        return logits, tenants

    def sample_with_noise(
        self, tier: str, max_share: float = DEFAULT_MAX_SHARE
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """:meth:`sample`, with the rows' unit noise as served (N, C), or None unless every row has it."""
        if not 0.0 < max_share <= 1.0:
            raise ValueError(f"max_share={max_share} must be in (0, 1]")
        with self._lock:
            rings = [list(r) for r in self._tiers.get(tier, {}).values()]
        if not rings:
            return torch.zeros(0, 0), None, 0
        cap = share_cap([len(r) for r in rings], max(max_share, 1.0 / len(rings)))
        rows = [row for ring in rings for row in ring[-cap:]]
        draws = [noise for _, noise in rows if noise is not None]
        noise = torch.stack(draws) if len(draws) == len(rows) else None
        return torch.stack([logits for logits, _ in rows]), noise, len(rings)


def share_cap(counts: list[int], share: float) -> int:
    """The largest per-tenant row cap T with T <= share * sum(min(c, T)): no tenant above ``share``.

    Feasible whenever ``share >= 1 / len(counts)`` (T = min(counts) then qualifies).
    """
    lo, hi = min(counts), max(counts)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid <= share * sum(min(c, mid) for c in counts):
            lo = mid
        else:
            hi = mid - 1
    return lo
