"""Small helpers shared by the preset builders: provenance, sizes, seeding, evaluation."""

from __future__ import annotations

import importlib
import importlib.metadata
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch


def package_source(distribution: str, relative: str, **extra: Any) -> dict[str, Any]:
    """Provenance for ``aimserve.json``: the PyPI distribution, its installed version and the file used."""
    return {
        "package": distribution,
        "version": importlib.metadata.version(distribution),
        "file": relative,
        **extra,
    }


def folder_bytes(folder: Path) -> int:
    """Total size in bytes of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def parameter_count(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a build is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def mean_iou(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    """Mean over classes present in ``truth`` or ``predicted`` of intersection / union; same-shape int ids."""
    ious = []
    for c in range(num_classes):
        union = ((predicted == c) | (truth == c)).sum().item()
        if union:
            ious.append(((predicted == c) & (truth == c)).sum().item() / union)
    return float(np.mean(ious))


def transformers_module() -> Any:
    """The ``transformers`` package, imported on first use (it is heavy) and typed loosely."""
    return importlib.import_module("transformers")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op torch threads, then restore the previous setting.

    Builders run single-threaded: the results are then the same from run to run, and on a shared host a
    2-thread training loop measured 10x slower than a 1-thread one (threads spin waiting for each other).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
