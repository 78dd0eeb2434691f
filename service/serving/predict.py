"""One batched forward pass for classification and segmentation rows, modulated row by row.

The engine trusts its inputs: rows arrive validated (items prepared by the model, `RowSpec` built from a
tenant's resolved tier). Each row's noise is keyed by its `RowSpec` key (secret and tier) and the semantic
bucket codes of the model's own features for that input (`service.modulation.semantic`), computed from the
same forward pass, so inputs the model represents alike get alike draws. It returns, per row, the
modulated prediction and the unmodulated top-1 computed from the same logits (no extra forward pass), which
stays inside the service: fidelity is counted for operators, never shown to tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from service.models import upsample
from service.modulation import ModulationBatch, RowKey, RowSpec, modulate
from service.modulation.semantic import (
    SEGMENTATION_RESOLUTION,
    TEXT_SMOOTHNESS,
    Smoothness,
    bucket_codes,
    component_codes,
    feature_weights,
)


class ItemLike(Protocol):
    """A prepared input: ``size`` is (height, width) for images, None for text."""

    @property
    def digest(self) -> bytes: ...

    @property
    def size(self) -> tuple[int, int] | None: ...


class LogitsModel(Protocol):
    """What the engine needs of a loaded classification or segmentation model."""

    labels: list[str]
    device: torch.device

    def forward_features(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True, slots=True)
class Row:
    """One input of one request, with its modulation; ``tag`` (the tier) labels its queue-wait metric."""

    item: Any
    spec: RowSpec
    top_k: int = 1
    tag: str = ""


@dataclass(frozen=True, slots=True)
class ClassResult:
    """Top-k (class index, probability) of the modulated output, best first, the clean top-1, the clean
    logits (C,) float32 and, for a row with utility noise and no focus, its unit-σ noise as served (C,)
    float32, ``(served - clean) / σ``, else None (views of the batch's tensors: copy them to keep them).
    The noise lets traffic recalibration solve σ on the draws served (`service.api.recalibrate`)."""

    top: list[tuple[int, float]]
    clean_top1: int
    logits: torch.Tensor
    noise: torch.Tensor | None = None

    @property
    def top1(self) -> int:
        return self.top[0][0]


@dataclass(frozen=True, slots=True)
class SegResult:
    """Per-pixel class ids (H, W) uint8 of the modulated output; pixels agreeing with the clean model."""

    mask: torch.Tensor
    agreeing_pixels: int

    @property
    def pixels(self) -> int:
        return int(self.mask.numel())


def _needs_noise(specs: Sequence[RowSpec]) -> bool:
    """False when no row is modulated: premium pays nothing for the semantic keys."""
    return any(s.sigma > 0.0 or s.has_focus for s in specs)


def modulate_rows(
    logits: torch.Tensor,
    features: torch.Tensor,
    specs: Sequence[RowSpec],
    projection: RowKey,
    smooth: Smoothness = TEXT_SMOOTHNESS,
) -> torch.Tensor:
    """(B, C) float32 classification logits as served: each row modulated with its spec, its noise a
    random-feature mixture weighted by the row's features (`semantic.feature_weights`)."""
    if not _needs_noise(specs):
        return modulate(logits, ModulationBatch.build(specs, logits.shape[1], logits.device))
    codes = component_codes(len(specs), smooth, logits.device)
    weights = feature_weights(features, projection, smooth)
    return modulate(logits, ModulationBatch.build(specs, logits.shape[1], logits.device, codes, weights))


def classify_batch(
    model: LogitsModel, rows: list[Row], projection: RowKey, smooth: Smoothness
) -> list[ClassResult]:
    """Forward all rows at once; (B, C) logits modulated per row; softmax top-k per row.

    ``projection``: the semantic hash's projection key (`derive_projection_key` of the server secret);
    ``smooth``: the random-feature resolution of the model's task (`service.tasks.classes.smoothness_for`).
    """
    logits, features = model.forward_features([r.item for r in rows])
    modulated = modulate_rows(logits, features, [r.spec for r in rows], projection, smooth)
    k = min(max(r.top_k for r in rows), logits.shape[1])
    probs, idx = modulated.softmax(dim=-1).topk(k, dim=-1)
    clean = logits.argmax(dim=-1).tolist()
    probs_l, idx_l = probs.tolist(), idx.tolist()
    noise = _unit_noise(logits, modulated, [r.spec for r in rows])
    return [
        ClassResult(
            list(zip(idx_l[i][: r.top_k], probs_l[i][: r.top_k], strict=True)), clean[i], logits[i], noise[i]
        )
        for i, r in enumerate(rows)
    ]


def _unit_noise(
    logits: torch.Tensor, modulated: torch.Tensor, specs: Sequence[RowSpec]
) -> list[torch.Tensor | None]:
    """Per row, (modulated - logits) / σ when the row has utility noise and no focus, else None."""
    plain = [s.sigma > 0.0 and not s.has_focus for s in specs]
    if not any(plain):
        return [None] * len(specs)
    sigma = torch.tensor([s.sigma if p else 1.0 for s, p in zip(specs, plain, strict=True)])
    unit = (modulated.float() - logits.float()) / sigma.to(logits.device)[:, None]
    return [unit[i] if p else None for i, p in enumerate(plain)]


def segment_batch(model: LogitsModel, rows: list[Row], projection: RowKey) -> list[SegResult]:
    """Forward all rows at once; logits upsampled to each input's size, then modulated per pixel.

    Rows are grouped by output size so each group is one (G, C, H, W) tensor and one modulation call;
    every pixel of a row has its own noise, keyed by the row's (image-level) semantic codes.
    """
    logits, features = model.forward_features([r.item for r in rows])
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.item.size, []).append(i)
    results: list[SegResult | None] = [None] * len(rows)
    for size, members in groups.items():
        index = torch.tensor(members, device=logits.device)
        full = upsample(logits.index_select(0, index), size)
        specs = [rows[i].spec for i in members]
        codes = None
        if _needs_noise(specs):
            codes = bucket_codes(features.index_select(0, index), projection, SEGMENTATION_RESOLUTION)
        batch = ModulationBatch.build(specs, full.shape[1], full.device, codes)
        masks = modulate(full, batch).argmax(dim=1)
        agree = (masks == full.argmax(dim=1)).flatten(1).sum(dim=1).tolist()
        masks_cpu = masks.to(torch.uint8).cpu()
        for j, i in enumerate(members):
            results[i] = SegResult(masks_cpu[j], int(agree[j]))
    return [r for r in results if r is not None]
