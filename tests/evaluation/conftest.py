"""Real presets for the evaluation tests, built once (cached under AIM_STATE_DIR, default .aimserve)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from service.models import LoadedModel, held_out, load_model, upsample


def preset(name: str) -> LoadedModel:
    from service.presets import build_preset

    return load_model(build_preset(name, Path(os.environ.get("AIM_STATE_DIR", ".aimserve"))))


@pytest.fixture(scope="session")
def digits() -> LoadedModel:
    return preset("digits")


@pytest.fixture(scope="session")
def digits_seg() -> LoadedModel:
    return preset("digits-seg")


def clean_logits(model: LoadedModel, inputs) -> torch.Tensor:
    """Logits computed here, independently of the evaluation package (prepare -> forward -> upsample)."""
    items = [model.prepare(raw) for raw in inputs]
    logits = model.forward(items).cpu()
    if logits.dim() == 4:
        logits = torch.cat([upsample(row[None], item.size) for row, item in zip(logits, items, strict=True)])
    return logits


def held_out_subset(model: LoadedModel, picks: list[int]):
    data = held_out(model.path)
    truth = data.masks if data.masks is not None else data.labels
    return [data.inputs[i] for i in picks], torch.as_tensor(truth)[picks]
