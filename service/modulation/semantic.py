"""Semantic noise keys: the draw is a function of the input as the served model represents it.

Inputs the model treats as the same (a trailing " !", an emoji, a re-encoded JPEG) land close together in
the model's own representation, so they must get the same noise, or voting over such variants averages the
noise away. A single hash bucket of that representation would be brittle (variants straddling a bucket
border get independent draws), so the noise is shared out over L independent locality-sensitive hash tables:

    noise[n] = z(key_{n mod L})[n],   key_l = H(base key, l, bucket_l(features))

where z(.) is the keyed N(0, 1) generator of `service.modulation.noise`: element n takes its draw from
table n mod L, so the tables cost one draw per element (a normalised sum of L draws, the first design, cost
L). For any fixed input the noise is exactly N(0, 1) per element; two inputs' draws have correlation
(number of tables where they share a bucket) / L, which degrades gracefully with distance instead of
jumping from 1 to 0.

For classifiers (few classes, so M draws per row are cheap) a smoother mixture does better: random
features (`feature_weights`), noise = sum_m weight_m(f) z(key_m) with M component keys shared by the tier
and unit-norm weights cos(w_m . f / lengthscale + phi_m) / norm; two inputs' draws then correlate by about
exp(-d^2 / (2 lengthscale^2)), which stays near 1 for small feature distances d where a hash table's
collision probability already falls linearly. Segmentation and generation (C*H*W or V noise elements per
row) use L = 4 hash tables.

Each table is an E2LSH (p-stable) hash of the unit-normalised features: ``bits`` projections
floor((w_j . f + b_j) / width) with w_j ~ N(0, I), b_j ~ U(0, width), all keyed by the projection key (from
the server secret), so the buckets are unknowable without the secret. Collision probability per table falls
with the distance ||f - f'|| / width, to the power ``bits``.

The base key (HMAC of the secret and the tier; see `service.modulation.keys.derive_tier_key`) is per row
so that two tiers never share a draw. Everything here is pure torch and deterministic: the same features
(to float32 rounding at bucket borders) give the same keys on every replica and in every engine.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from service.modulation.keys import RowKey, as_int32
from service.modulation.noise import keyed_normal, keyed_uniform, mix32

_GOLDEN = -1640531535  # 0x9E3779B1 as int32


@dataclass(frozen=True, slots=True)
class Resolution:
    """How finely features are bucketed: ``tables`` L, ``bits`` projections per table, ``width`` per bucket
    (in units of the unit-normalised feature vector's length). Checked at construction."""

    tables: int
    bits: int
    width: float

    def __post_init__(self) -> None:
        if not 1 <= self.tables <= 256:
            raise ValueError(f"Resolution.tables must be in [1, 256], got {self.tables!r}")
        if not 1 <= self.bits <= 64:
            raise ValueError(f"Resolution.bits must be in [1, 64], got {self.bits!r}")
        if not 0.0 < self.width < 1e6:
            raise ValueError(f"Resolution.width must be a positive number, got {self.width!r}")


@dataclass(frozen=True, slots=True)
class Smoothness:
    """Random-feature keying: ``components`` M keyed draws mixed with weights that vary smoothly with the
    unit-normalised features; two inputs' draws correlate by about exp(-d^2 / (2 lengthscale^2)) at
    feature distance d (flat near 0, unlike a hash bucket). Checked at construction."""

    components: int
    lengthscale: float

    def __post_init__(self) -> None:
        if not 2 <= self.components <= 4096:
            raise ValueError(f"Smoothness.components must be in [2, 4096], got {self.components!r}")
        if not 0.0 < self.lengthscale < 1e6:
            raise ValueError(f"Smoothness.lengthscale must be a positive number, got {self.lengthscale!r}")


# Chosen by measurement (bench/voting.py, bench/results/voting.json): variants of one input share most of
# the draw, unrelated inputs almost none. Classifiers (few classes: M draws per row are cheap) use random
# features; segmentation and generation (C*H*W or V elements per row) use a few hash tables.
# Image features (pooled ReLU maps: all in the positive orthant) lie closer together than text features, so
# images get a shorter lengthscale: on digits, unrelated images' draws correlated by 0.44 at 0.25.
TEXT_SMOOTHNESS = Smoothness(components=128, lengthscale=0.25)
IMAGE_SMOOTHNESS = Smoothness(components=128, lengthscale=0.1)
SEGMENTATION_RESOLUTION = Resolution(tables=4, bits=4, width=1.0)
GENERATION_RESOLUTION = Resolution(tables=4, bits=4, width=1.0)
PROMPT_TOP_K = 64


def _key_tensor(key: RowKey, device: torch.device) -> torch.Tensor:
    return torch.tensor([[as_int32(key[0]), as_int32(key[1])]], dtype=torch.int32, device=device)


def _projection_keys(proj_key: RowKey, count: int, device: torch.device) -> torch.Tensor:
    """(count, 2) int32: one key per projection, derived from the projection key."""
    base = _key_tensor(proj_key, device)
    j = torch.arange(count, dtype=torch.int32, device=device)
    k1 = mix32(base[:, 0] ^ mix32(j.mul(_GOLDEN).add_(1)))
    k2 = mix32(base[:, 1] ^ mix32(j.mul(_GOLDEN).add_(2)) ^ k1)
    return torch.stack((k1, k2), dim=1)


@functools.lru_cache(maxsize=16)
def _projections(
    proj_key: RowKey, count: int, dim: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """((count, 2) keys, (count, dim) N(0, 1) directions) of the projections: a function of the secret's
    projection key and the shapes only, so computed once per model and device (treat as read-only)."""
    keys = _projection_keys(proj_key, count, device)
    return keys, keyed_normal(keys, torch.arange(dim, dtype=torch.int32, device=device))


def _offsets(keys: torch.Tensor, width: float) -> torch.Tensor:
    """(J, 1) float32 U(0, width) offset of each projection (element -1 of its keyed stream)."""
    return keyed_uniform(keys, torch.full((1,), -1, dtype=torch.int32, device=keys.device)).mul_(width)


def bucket_codes(features: torch.Tensor, proj_key: RowKey, res: Resolution) -> torch.Tensor:
    """(B, L) int32 bucket code of each row in each table.

    Args:
        features: (B, D) float, the model's representation of each input (any scale: rows are
            unit-normalised here, so only directions matter).
        proj_key: the secret projection key (`service.modulation.keys.derive_projection_key`).
        res: the resolution.
    """
    f = features.float()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    keys, omega = _projections(proj_key, res.tables * res.bits, f.shape[1], f.device)  # (J, 2), (J, D)
    offset = _offsets(keys, res.width)
    buckets = torch.floor((f @ omega.T + offset.T) / res.width).to(torch.int32)  # (B, J)
    return _combine(buckets.view(-1, res.tables, res.bits))


def feature_weights(features: torch.Tensor, proj_key: RowKey, smooth: Smoothness) -> torch.Tensor:
    """(B, M) float32 unit-norm mixture weights: cos(w_m . f / lengthscale + phi_m), normalised per row.

    With component m keyed by (tier, m) for every row (``codes = component_codes``), a row's noise
    sum_m weight_m z_m is exactly N(0, 1) per element, and two rows' draws correlate by the dot product of
    their weights, about exp(-||f - f'||^2 / (2 lengthscale^2)) for unit-normalised features f, f'.
    """
    f = features.float()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    keys, omega = _projections(proj_key, smooth.components, f.shape[1], f.device)  # (M, 2), (M, D)
    phase = _offsets(keys, 2.0 * math.pi)  # (M, 1)
    a = torch.cos(f @ omega.T / smooth.lengthscale + phase.T)
    weights: torch.Tensor = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return weights


def component_codes(rows: int, smooth: Smoothness, device: torch.device | str = "cpu") -> torch.Tensor:
    """(rows, M) int32 0..M-1: the component index as the code, so component m's draw is shared by all
    rows of a tier and only the weights depend on the input."""
    return torch.arange(smooth.components, dtype=torch.int32, device=device).expand(rows, -1)


def sparse_bucket_codes(
    probs: torch.Tensor, ids: torch.Tensor, proj_key: RowKey, res: Resolution
) -> torch.Tensor:
    """`bucket_codes` of sparse features given by their non-zero entries, without building (B, V) vectors.

    Args:
        probs: (B, K) float values of each row's non-zero entries (e.g. the top-K next-token probabilities).
        ids: (B, K) int the entries' indices in the full feature space (token ids).
    Returns:
        (B, L) int32, equal to `bucket_codes` of the dense vectors (up to float rounding).
    """
    p = probs.float()
    p = p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rows, k = p.shape
    count = res.tables * res.bits
    keys = _projection_keys(proj_key, count, p.device)  # (J, 2)
    index = ids.to(torch.int32).repeat_interleave(count, dim=0)  # (B*J, K)
    omega = keyed_normal(keys.repeat(rows, 1), index).view(rows, count, k)  # omega_j at each row's ids
    offset = _offsets(keys, res.width)
    proj = torch.einsum("bjk,bk->bj", omega, p) + offset.T
    buckets = torch.floor(proj / res.width).to(torch.int32)
    return _combine(buckets.view(rows, res.tables, res.bits))


def _combine(buckets: torch.Tensor) -> torch.Tensor:
    """(B, L, b) int32 bucket indices -> (B, L) int32 table codes (a hash of the b indices in order)."""
    b = buckets.shape[2]
    salt = mix32(torch.arange(b, dtype=torch.int32, device=buckets.device).mul_(_GOLDEN).add_(7))
    hashed = mix32(mix32(buckets + salt) ^ salt).to(torch.int64)
    total = hashed.mul_(torch.arange(1, 2 * b, 2, device=buckets.device)).sum(dim=2)
    return mix32(_wrap_int32(total))


def _wrap_int32(x: torch.Tensor) -> torch.Tensor:
    return (x.bitwise_and(0xFFFFFFFF) - ((x.bitwise_and(0x80000000)) << 1)).to(torch.int32)


def mixture_keys(base: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(B, L, 2) int32 component keys: H(base key of the row, table l, the row's code in table l).

    Args:
        base: (B, 2) int32 per-row base keys (secret and tier).
        codes: (B, L) int32 bucket codes (`bucket_codes`), or (B, 0) for no semantic part.
    """
    tables = codes.shape[1]
    table = mix32(torch.arange(tables, dtype=torch.int32, device=codes.device).mul_(_GOLDEN).add_(3))
    mixed = mix32(codes ^ table)  # (B, L)
    k1 = mix32(base[:, 0:1] ^ mixed)
    k2 = mix32(mix32(base[:, 1:2] + mixed) ^ k1)
    return torch.stack((k1, k2), dim=2)


def prompt_codes(
    first_logits: torch.Tensor,
    proj_key: RowKey,
    res: Resolution = GENERATION_RESOLUTION,
    top_k: int = PROMPT_TOP_K,
) -> torch.Tensor:
    """(B, L) int32 semantic codes of prompts, from the clean logits of their first decoding step.

    The contract both generation engines (the service's and a vLLM logits processor) follow:

    1. At a row's first decoding step (position 0), before any modulation, take that step's clean logits
       (B, V) (the model's representation of the prompt) and call ``prompt_codes(logits, projection)``,
       with ``projection = derive_projection_key(secret)`` passed by the gateway. Keep the (L,) codes of
       each row for the rest of its generation.
    2. At every step t (0, 1, ...), modulate with
       ``modulate(logits, ModulationBatch.build(specs, V, device, codes), position=t)`` where each row's
       `RowSpec.key` is ``derive_tier_key(secret, tier)`` from the gateway; sample (temperature > 0) with
       ``batch.row_keys`` on `SAMPLING_STREAM` at the same position.
    3. Nothing else enters: not the tenant, the stop strings, max tokens, stream, temperature or top-p
       (these change how the draw is used, never which draw).

    Features: sqrt of the top-``top_k`` next-token probabilities at their token ids (unit-norm for a
    peaked distribution; the Euclidean distance of two rows is then about the Hellinger distance of their
    next-token distributions).
    """
    probs = torch.softmax(first_logits.float(), dim=-1)
    values, ids = probs.topk(min(top_k, probs.shape[1]), dim=-1)
    return sparse_bucket_codes(values.sqrt_(), ids, proj_key, res)
