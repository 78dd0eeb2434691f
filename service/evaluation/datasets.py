"""Evaluation inputs: a preset's held-out split or user data in plain formats, with ground truth.

``--data`` may be:
- a JSONL file of ``{"text": str, "label": name | id}`` (text classification);
- a folder with one sub-folder of PNG/JPEG images per class, named after the class (image classification);
- a folder with ``images/`` and ``masks/`` holding files of the same stem; a mask is a PNG of class ids
  per pixel (255 = not scored), the image's size (segmentation);
- a held-out folder or file as written by the presets (``heldout/``, ``texts.jsonl``, ``images.npz``).
Every problem is a BadInput naming the file and what is wrong. Inputs stay raw (texts, image bytes): they
go through the model's own ``prepare``, like a client's request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from service.errors import AimError, BadInput
from service.models import LoadedModel, held_out
from service.tasks import IMAGE_CLASSIFICATION, SEMANTIC_SEGMENTATION, TEXT_CLASSIFICATION, Task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class EvalSet:
    """Raw inputs and truth: ``labels`` (N,) int64 for classification, (N, H, W) for segmentation."""

    inputs: list[str | bytes]
    labels: torch.Tensor
    source: str


def subset(count: int, limit: int | None) -> list[int]:
    """Evenly spaced indices of ``limit`` of ``count`` items (all when ``limit`` is None or larger), so a
    class-sorted source keeps its class balance."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({round(float(i)) for i in np.linspace(0, count - 1, limit)})


def load_eval_set(model: LoadedModel, data: str | None, limit: int | None) -> EvalSet:
    """The inputs of ``data`` (default: the model folder's held-out split) for ``model``'s task."""
    if data is None:
        raw, source = _held_out(model, model.path), f"held-out split of {model.name}"
    else:
        path = Path(data).expanduser()
        raw, source = _user_data(model, path), str(path)
    inputs, labels = raw
    if not inputs:
        raise BadInput(f"--data {source!r} holds no inputs")
    _check_ids(labels, model, source)
    pick = subset(len(inputs), limit)
    return EvalSet([inputs[i] for i in pick], labels[pick], source)


Raw = tuple[list[str | bytes], torch.Tensor]


def _held_out(model: LoadedModel, path: Path) -> Raw:
    try:
        data = held_out(path)
    except AimError as exc:
        raise BadInput(f"--data: {exc.message}") from None
    segmentation = model.kind is SEMANTIC_SEGMENTATION
    truth: Any = data.masks if segmentation else data.labels
    if truth is None:
        what = "masks" if segmentation else "labels"
        raise BadInput(f"--data {str(path)!r}: the held-out set has no {what} to score against")
    if (data.kind == "text") != (model.kind is TEXT_CLASSIFICATION):
        raise BadInput(f"--data {str(path)!r} holds {data.kind} inputs; the model's task is {model.task}")
    return list(data.inputs), torch.as_tensor(np.asarray(truth), dtype=torch.int64)


def _check_ids(labels: torch.Tensor, model: LoadedModel, source: str) -> None:
    valid = labels[labels != 255] if model.kind is SEMANTIC_SEGMENTATION else labels
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= len(model.labels)):
        raise BadInput(
            f"--data {source!r}: class ids must lie in [0, {len(model.labels)}) (255 = not scored), "
            f"found {int(valid.min())}..{int(valid.max())}"
        )


def _user_data(model: LoadedModel, path: Path) -> Raw:
    if path.is_file() and path.suffix == ".jsonl":
        _require(model, TEXT_CLASSIFICATION, path, "a JSONL file of texts")
        return read_jsonl(path, model.labels)
    if path.is_file() or (path.is_dir() and _looks_held_out(path)):
        return _held_out(model, path)
    if path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir():
        _require(model, SEMANTIC_SEGMENTATION, path, "image+mask pairs")
        return read_pairs(path)
    if path.is_dir():
        _require(model, IMAGE_CLASSIFICATION, path, "a folder of images per class")
        return read_class_folders(path, model.labels)
    raise BadInput(f"--data {str(path)!r} does not exist")


def _looks_held_out(path: Path) -> bool:
    return any((path / name).exists() for name in ("heldout", "texts.jsonl", "images.npz"))


def _require(model: LoadedModel, task: Task, path: Path, what: str) -> None:
    if model.kind is not task:
        raise BadInput(
            f"--data {str(path)!r} is {what}, which fits {task.name}; the model's task is {model.task}"
        )


def _label_id(value: object, labels: Sequence[str], where: str) -> int:
    lower = {name.lower(): i for i, name in enumerate(labels)}
    if isinstance(value, str) and value.lower() in lower:
        return lower[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return value
    raise BadInput(f"{where}: unknown label {value!r}; the model's classes are: {', '.join(labels)}")


def read_jsonl(path: Path, labels: Sequence[str]) -> Raw:
    """Texts and class ids from ``{"text", "label"}`` lines (label: a class name or id)."""
    texts: list[str | bytes] = []
    ids: list[int] = []
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        where = f"--data {str(path)!r} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or "label" not in row:
            raise BadInput(f"{where}: expected an object with a string 'text' and a 'label'")
        texts.append(row["text"])
        ids.append(_label_id(row["label"], labels, where))
    return texts, torch.tensor(ids, dtype=torch.int64)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--data {str(path)!r} cannot be read as UTF-8 text: {exc}") from None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_class_folders(path: Path, labels: Sequence[str]) -> Raw:
    """Image bytes and class ids from ``path/<class name>/*.png|jpg``; every sub-folder must be a class."""
    inputs: list[str | bytes] = []
    ids: list[int] = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        cls = _label_id(folder.name, labels, f"--data {str(path)!r} folder {folder.name!r}")
        for file in _images_in(folder):
            inputs.append(file.read_bytes())
            ids.append(cls)
    if not inputs:
        raise BadInput(f"--data {str(path)!r} has no class folders with PNG/JPEG images")
    return inputs, torch.tensor(ids, dtype=torch.int64)


def read_pairs(path: Path) -> Raw:
    """Image bytes and (N, H, W) masks from ``images/x.png`` + ``masks/x.png``; all images one size."""
    masks_by_stem = {p.stem: p for p in _images_in(path / "masks")}
    inputs: list[str | bytes] = []
    masks: list[np.ndarray] = []
    for image in _images_in(path / "images"):
        mask_path = masks_by_stem.get(image.stem)
        if mask_path is None:
            raise BadInput(f"--data {str(path)!r}: image {image.name!r} has no mask in masks/")
        mask = _read_mask(mask_path)
        if masks and mask.shape != masks[0].shape:
            raise BadInput(
                f"--data {str(path)!r}: {mask_path.name!r} is {mask.shape}, others {masks[0].shape}"
            )
        inputs.append(image.read_bytes())
        masks.append(mask)
    if not inputs:
        raise BadInput(f"--data {str(path)!r}: images/ holds no PNG/JPEG files")
    return inputs, torch.from_numpy(np.stack(masks)).long()


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise BadInput(f"mask {str(path)!r} has mode {image.mode}; expected one channel of class ids")
            return np.asarray(image, dtype=np.int64)
    except (OSError, UnidentifiedImageError) as exc:
        raise BadInput(f"mask {str(path)!r} cannot be read: {exc}") from None
