"""`serving.predict` on small tensors: one forward, per-row modulation, top-k, clean top-1, segmentation.

The model is a real implementation of `LogitsModel` whose logits and features are fixed per item, so every
expected value is computed here from the same tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.modulation import RowSpec
from service.modulation.semantic import TEXT_SMOOTHNESS
from service.serving.predict import Row, classify_batch, modulate_rows, segment_batch

KEY = (12345, 67890)
PROJECTION = (11, 22)
FEATURES = torch.linspace(-1.0, 1.0, 16)


@dataclass(frozen=True)
class FixedItem:
    logits: torch.Tensor
    features: torch.Tensor = FEATURES
    digest: bytes = bytes(32)
    size: tuple[int, int] | None = None


class FixedLogits:
    """Each item's own logits (B, C) or (B, C, h, w) and features (B, D), stacked; counts forward calls."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.device = torch.device("cpu")
        self.calls = 0

    def forward_features(self, items: Sequence[FixedItem]) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return torch.stack([i.logits for i in items]), torch.stack([i.features for i in items])


def _class_rows(logits: torch.Tensor, specs: list[RowSpec], top_k: list[int]) -> list[Row]:
    return [Row(FixedItem(logits[i]), s, k, "t") for i, (s, k) in enumerate(zip(specs, top_k, strict=True))]


def test_classify_batch_clean_rows_give_the_model_softmax_top_k():
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0], [2.0, 0.0, 0.5, 4.0]])
    model = FixedLogits(["a", "b", "c", "d"])
    results = classify_batch(
        model, _class_rows(logits, [RowSpec(0.0, KEY)] * 2, [3, 1]), PROJECTION, TEXT_SMOOTHNESS
    )
    assert model.calls == 1
    probs = logits.softmax(dim=-1)
    assert [i for i, _ in results[0].top] == [1, 2, 0]
    assert [p for _, p in results[0].top] == probs[0, [1, 2, 0]].tolist()
    assert results[1].top == [(3, probs[1, 3].item())]  # each row keeps its own top_k
    assert [r.clean_top1 for r in results] == [1, 3] and [r.top1 for r in results] == [1, 3]


def test_classify_batch_noisy_rows_are_keyed_and_clean_top1_ignores_the_noise():
    logits = torch.tensor([[0.0, 0.2, 0.1]] * 4)
    before = logits.clone()
    specs = [RowSpec(0.0, KEY), RowSpec(50.0, KEY), RowSpec(50.0, KEY), RowSpec(50.0, (1, 2))]
    model = FixedLogits(["a", "b", "c"])
    results = classify_batch(model, _class_rows(logits, specs, [3] * 4), PROJECTION, TEXT_SMOOTHNESS)
    expected = modulate_rows(logits, FEATURES.expand(4, -1), specs, PROJECTION).softmax(dim=-1)
    for i, r in enumerate(results):
        assert [p for _, p in sorted(r.top)] == expected[i].tolist()
        assert r.clean_top1 == 1
    assert results[1].top == results[2].top  # same key, same input: the same answer
    assert results[1].top != results[3].top  # another key: other noise (σ = 50 on 0.2 gaps)
    assert torch.equal(logits, before)


def test_classify_batch_focus_boost_moves_the_top1_to_the_target():
    logits = torch.tensor([[5.0, 0.0, 0.0]])
    spec = RowSpec(0.0, KEY, focus_ids=(2,), focus_strength=1000.0)
    (result,) = classify_batch(
        FixedLogits(["a", "b", "c"]), _class_rows(logits, [spec], [1]), PROJECTION, TEXT_SMOOTHNESS
    )
    assert (result.top1, result.clean_top1) == (2, 0)


def test_segment_batch_groups_by_size_and_counts_agreeing_pixels():
    torch.manual_seed(0)
    small = [torch.randn(3, 2, 2) for _ in range(3)]
    sizes = [(4, 6), (3, 3), (4, 6)]
    specs = [RowSpec(0.0, KEY), RowSpec(0.0, KEY), RowSpec(100.0, KEY)]
    rows = [Row(FixedItem(x, size=s), spec) for x, s, spec in zip(small, sizes, specs, strict=True)]
    model = FixedLogits(["bg", "fg", "edge"])
    results = segment_batch(model, rows, PROJECTION)
    assert model.calls == 1
    assert [tuple(r.mask.shape) for r in results] == sizes and all(
        r.mask.dtype == torch.uint8 for r in results
    )
    for r, x, s in zip(results[:2], small[:2], sizes[:2], strict=True):
        clean = torch.nn.functional.interpolate(x[None], size=s, mode="bilinear", align_corners=False)
        assert torch.equal(r.mask, clean[0].argmax(dim=0).to(torch.uint8))
        assert r.agreeing_pixels == r.pixels == s[0] * s[1]
    assert results[2].agreeing_pixels < results[2].pixels  # σ = 100 changes some pixels
