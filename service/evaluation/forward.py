"""Opening the model under evaluation and computing its clean logits once per dataset."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from tqdm import tqdm

from service.errors import BadInput
from service.models import LoadedModel, load_model, upsample
from service.tasks import SEMANTIC_SEGMENTATION, Task

log = logging.getLogger(__name__)


def open_model(name_or_dir: str, task: str | None) -> LoadedModel:
    """Load a preset (built first when it is not, which trains it: minutes on CPU) or a model folder."""
    from service.presets import PRESETS, build_preset, resolve_model_path
    from service.settings import Settings

    state_dir = Settings.from_env().state_dir
    if name_or_dir in PRESETS:
        path = build_preset(name_or_dir, state_dir)  # returns at once when already built
    else:
        path = resolve_model_path(name_or_dir, state_dir)
    log.info("loading %s", path)
    return load_model(path, task=task)


def require_task(model: LoadedModel, tasks: Sequence[Task], command: str) -> None:
    """BadInput naming the command when ``model`` serves none of ``tasks``."""
    if model.kind not in tasks:
        names = " or ".join(t.name for t in tasks)
        raise BadInput(f"`{command}` needs a model for {names}; {model.name} is {model.task}")


def compute_logits(
    model: LoadedModel,
    inputs: Sequence[str | bytes],
    *,
    batch_size: int,
    progress: bool = False,
) -> torch.Tensor:
    """Clean float32 logits on CPU: (N, C), or (N, C, H, W) at the images' own size for segmentation.

    Every input goes through ``model.prepare`` (a bad input is a BadInput naming its index). Segmentation
    images must all have one size, so that their pixels stack.
    """
    parts: list[torch.Tensor] = []
    with tqdm(total=len(inputs), desc="model forward", unit="input", disable=not progress) as bar:
        for start in range(0, len(inputs), batch_size):
            items = []
            for index in range(start, min(start + batch_size, len(inputs))):
                try:
                    items.append(model.prepare(inputs[index]))
                except BadInput as exc:
                    raise BadInput(f"--data input {index}: {exc.message}") from None
            logits = model.forward(items).cpu()
            if model.kind is SEMANTIC_SEGMENTATION:
                sizes = [_size(item.size) for item in items]
                logits = torch.cat(
                    [upsample(row[None], size) for row, size in zip(logits, sizes, strict=True)]
                )
            parts.append(logits)
            bar.update(len(items))
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise BadInput(f"--data images have different sizes {sorted(shapes)}; use images of one size")
    return torch.cat(parts)


def _size(size: tuple[int, int] | None) -> tuple[int, int]:
    if size is None:  # prepare always records the size of an image input
        raise BadInput("an image input has no size")
    return size
