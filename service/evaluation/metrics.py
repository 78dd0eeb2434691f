"""Scores from predictions: confusion matrices, accuracy, mIoU, per-class recall (all as fractions in [0, 1]).

Predictions and labels are int64 tensors of the same shape: (N,) for classification, (N, H, W) for
segmentation. Label ``IGNORE`` (255) marks pixels that are not scored, as in ADE20K/Cityscapes masks.
"""

from __future__ import annotations

import torch

IGNORE = 255


def confusion(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, row = true class, column = predicted class; IGNORE labels are skipped."""
    y = labels.reshape(-1)
    p = pred.reshape(-1)
    keep = y != IGNORE
    flat = y[keep] * num_classes + p[keep]
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(cm: torch.Tensor) -> float:
    """Correct / scored (pixel accuracy for segmentation); 0.0 when nothing is scored."""
    total = int(cm.sum())
    return float(cm.diagonal().sum()) / total if total else 0.0


def mean_iou(cm: torch.Tensor) -> float:
    """Mean over classes present in the labels or the predictions of TP / (TP + FP + FN)."""
    tp = cm.diagonal().double()
    union = cm.sum(0).double() + cm.sum(1).double() - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()) if bool(present.any()) else 0.0


def recall(cm: torch.Tensor, cls: int) -> float:
    """Fraction of class ``cls`` items (pixels) predicted as ``cls``; NaN when the class never occurs."""
    support = int(cm[cls].sum())
    return float(cm[cls, cls]) / support if support else float("nan")


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the class axis (dim 1): (N, C) -> (N,), (N, C, H, W) -> (N, H, W)."""
    return logits.argmax(dim=1)
