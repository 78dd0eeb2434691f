from __future__ import annotations

import math

import torch

from service.evaluation.metrics import IGNORE, accuracy, confusion, mean_iou, recall


def test_confusion_scores_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 2, IGNORE])
    pred = torch.tensor([0, 1, 1, 1, 1, 2])
    cm = confusion(pred, labels, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert accuracy(cm) == 3 / 5
    # IoU: class 0 = 1/2, class 1 = 2/4, class 2 = 0/1
    assert math.isclose(mean_iou(cm), (0.5 + 0.5 + 0.0) / 3)
    assert recall(cm, 0) == 0.5 and recall(cm, 1) == 1.0


def test_absent_class_is_not_averaged_and_has_no_recall():
    labels = torch.tensor([[0, 0], [1, 1]])
    cm = confusion(labels.clone(), labels, 3)
    assert mean_iou(cm) == 1.0
    assert math.isnan(recall(cm, 2))
