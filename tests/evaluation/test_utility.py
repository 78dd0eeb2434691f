"""`aimserve eval utility` on the real digits classifier and the digits-seg segmenter.

Checks: the σ = 0 row is the clean model (accuracy recomputed here independently of the package), noise
lowers accuracy toward chance, and the exact curve agrees with the keyed sampling: for every σ,
|exact - sampled mean| <= 4·se + 1/N, where se is the standard error of the sampled mean over the repeats
implied by the exact per-output probabilities (se = sqrt(mean p(1-p) / N / repeats), plus the pixel
subset's own error for segmentation) and 1/N allows one output of float round-off at argmax ties.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from service.cli import main
from service.evaluation.datasets import subset
from service.evaluation.metrics import accuracy, confusion, mean_iou
from service.evaluation.report import read_csv
from service.evaluation.summary import logit_scale
from service.models import held_out
from tests.evaluation.conftest import clean_logits, held_out_subset

SIGMAS = "0,1,2,3,4,6,8,12,20"


def f(row: dict[str, str], key: str) -> float:
    return float(row[key])


def assert_exact_matches_sampled(rows: list[dict[str, str]], metric: str) -> None:
    for row in rows:
        bound = 4.0 * f(row, f"{metric}_se") + 1.0 / f(row, "scored")
        gap = abs(f(row, f"{metric}_exact") - f(row, f"{metric}_mean"))
        assert gap <= bound, (row["sigma"], metric, gap, bound)


def test_classifier_curve(tmp_path, digits):
    out = tmp_path / "utility"
    argv = ["eval", "utility", "--model", "digits", "--limit", "200", "--sigmas", SIGMAS, "--repeats", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = read_csv(out / "utility.csv")
    assert [f(r, "sigma") for r in rows] == [float(s) for s in SIGMAS.split(",")]
    assert {"accuracy_mean", "accuracy_std", "accuracy_exact", "fidelity_mean", "fidelity_exact"} <= set(
        rows[0]
    )

    inputs, labels = held_out_subset(digits, subset(1000, 200))
    clean = (clean_logits(digits, inputs).argmax(1) == labels).double().mean().item()
    first, last = rows[0], rows[-1]
    assert f(first, "accuracy_mean") == pytest.approx(clean, abs=1e-6)
    assert f(first, "accuracy_std") == 0.0 and f(first, "fidelity_mean") == 1.0
    assert f(first, "accuracy_exact") == pytest.approx(clean, abs=1e-6)
    # Noise lowers accuracy: far down at σ = 20, still above the 10 % of guessing on average.
    assert f(last, "accuracy_exact") < clean - 0.4
    assert f(last, "accuracy_mean") < clean - 0.4
    assert_exact_matches_sampled(rows, "accuracy")
    assert_exact_matches_sampled(rows, "fidelity")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 200 and summary["classes"] == 10
    assert 0 < summary["stages_exact"]["sigma_10"] < summary["stages_exact"]["sigma_50"] < 20
    scale = summary["logit_scale"]
    assert 0 < scale["gap_p10"] <= scale["gap_median"] <= scale["gap_p90"] and scale["logit_std_mean"] > 0
    with Image.open(out / "utility.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_segmentation_curve(tmp_path, digits_seg):
    out = tmp_path / "seg"
    argv = ["eval", "utility", "--model", "digits-seg", "--limit", "6", "--sigmas", "0,1,3,8,20"]
    assert main([*argv, "--repeats", "3", "--exact-pixels", "4000", "--out", str(out)]) == 0
    rows = read_csv(out / "utility.csv")
    assert {"miou_mean", "miou_std"} <= set(rows[0])

    inputs, masks = held_out_subset(digits_seg, subset(len(held_out(digits_seg.path).inputs), 6))
    pred = clean_logits(digits_seg, inputs).argmax(1)
    cm = confusion(pred, masks, len(digits_seg.labels))
    assert f(rows[0], "accuracy_mean") == pytest.approx(accuracy(cm), abs=1e-6)
    assert f(rows[0], "miou_mean") == pytest.approx(mean_iou(cm), abs=1e-6)
    assert int(rows[0]["scored"]) == int(cm.sum())
    assert f(rows[-1], "miou_mean") < f(rows[0], "miou_mean") - 0.3
    assert_exact_matches_sampled(rows, "accuracy")
    assert_exact_matches_sampled(rows, "fidelity")


def test_logit_scale_of_known_logits():
    items = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 4.0, 0.0]])  # gaps 2, 5, 3
    scale = logit_scale(items)
    assert scale["gap_median"] == 3.0 and scale["gap_p10"] == pytest.approx(2.2)
    pixels = items.T.reshape(1, 3, 3, 1)  # the same three outputs as pixels of one (C=3) image
    assert logit_scale(pixels) == scale
