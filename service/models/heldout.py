"""Held-out inputs saved beside a model, and the logits calibration solves tiers on.

Format (written by the presets, also accepted from a user): a folder ``heldout/`` inside the model folder
holding either ``texts.jsonl`` (one ``{"text": str, "label": int}`` per line; ``label`` indexes the model's
``id2label`` and may be left out) or ``images.npz`` (``images`` uint8 (N, H, W) or (N, H, W, 3); optional
``labels`` int64 (N,) or ``masks`` int64 (N, H, W) of class ids). ``held_out`` also reads such a file
given directly.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from service.errors import ConfigError
from service.models.loaded import LoadedModel, upsample

HELDOUT_DIR = "heldout"
TEXTS_FILE = "texts.jsonl"
IMAGES_FILE = "images.npz"
_BATCH = 32
_POSITIONS_PER_TEXT = 16
_SEGMENTATION_IMAGES = 64


@dataclass(frozen=True)
class HeldOut:
    """Raw held-out inputs as a client would send them, with ground truth when known.

    ``kind`` is "text" or "image"; ``inputs`` are texts, or PNG bytes of ``images`` (uint8 arrays);
    ``labels`` are class ids (classification); ``masks`` (N, H, W) int64 class ids (segmentation).
    """

    kind: str
    inputs: Sequence[str | bytes]
    labels: list[int] | None = None
    masks: np.ndarray | None = None
    images: np.ndarray | None = None


def write_texts(folder: Path, texts: Sequence[str], labels: Sequence[int] | None = None) -> Path:
    """Write ``folder/texts.jsonl``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TEXTS_FILE
    with path.open("w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            row: dict[str, object] = {"text": text}
            if labels is not None:
                row["label"] = int(labels[i])
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_images(folder: Path, images: np.ndarray, **truth: np.ndarray) -> Path:
    """Write ``folder/images.npz`` with ``images`` and optional ``labels=`` or ``masks=``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / IMAGES_FILE
    arrays: dict[str, Any] = {"images": images.astype(np.uint8)}
    arrays.update({name: values.astype(np.int64) for name, values in truth.items()})
    np.savez_compressed(path, **arrays)
    return path


def held_out(source: Path) -> HeldOut:
    """The held-out set of a model folder (its ``heldout/``), a held-out folder, or one file."""
    for candidate in (source / HELDOUT_DIR / TEXTS_FILE, source / HELDOUT_DIR / IMAGES_FILE,
                      source / TEXTS_FILE, source / IMAGES_FILE, source):  # fmt: skip
        if candidate.is_file() and candidate.name.endswith(".jsonl"):
            return _read_texts(candidate)
        if candidate.is_file() and candidate.name.endswith(".npz"):
            return _read_images(candidate)
    raise ConfigError(f"no held-out inputs at {source}: expected {HELDOUT_DIR}/{TEXTS_FILE} or {IMAGES_FILE}")


def _read_texts(path: Path) -> HeldOut:
    texts: list[str] = []
    labels: list[int] = []
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"line {number} has no string 'text'")
            texts.append(row["text"])
            if "label" in row:
                labels.append(int(row["label"]))
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"held-out file {path} is unreadable: {exc}") from exc
    if not texts:
        raise ConfigError(f"held-out file {path} holds no texts")
    if labels and len(labels) != len(texts):
        raise ConfigError(f"held-out file {path}: some lines have a label and some do not")
    return HeldOut("text", texts, labels or None)


def _read_images(path: Path) -> HeldOut:
    try:
        with np.load(path) as data:
            images = data["images"].astype(np.uint8)
            labels = data["labels"].astype(np.int64) if "labels" in data else None
            masks = data["masks"].astype(np.int64) if "masks" in data else None
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"held-out file {path} is unreadable: {exc}") from exc
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ConfigError(
            f"held-out file {path}: images must be (N, H, W) or (N, H, W, 3), got {images.shape}"
        )
    if masks is not None and masks.shape != images.shape[:3]:
        raise ConfigError(f"held-out file {path}: masks {masks.shape} do not match images {images.shape}")
    encoded = [_png(image) for image in images]
    label_list = [int(v) for v in labels] if labels is not None else None
    return HeldOut("image", encoded, label_list, masks, images)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def calibration_logits(
    model: LoadedModel, limit: int = 1000, source: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unmodulated logits of held-out inputs: (N, C) float32 on CPU, N <= ``limit``, and labels (N,) or None.

    ``source`` defaults to the model's own folder; the model's task decides how its data calibrates
    (``Task.calibrate``): classification, the first ``limit`` inputs (`first_rows`); segmentation, per-pixel
    logits at input size of up to 64 images, ``limit`` pixels drawn uniformly (seed 0), with their mask
    labels (`pixel_rows`); generation, labels None (`generation_rows`).
    """
    return model.kind.calibrate(model, held_out(source or model.path), limit)


def _forward(model: LoadedModel, data: HeldOut, count: int) -> tuple[list[torch.Tensor], list[Any]]:
    """CPU logits of the first ``count`` held-out inputs, batch by batch, with their items."""
    batches: list[torch.Tensor] = []
    items: list[Any] = []
    for start in range(0, count, _BATCH):
        batch = [model.prepare(raw) for raw in data.inputs[start : min(start + _BATCH, count)]]
        batches.append(model.forward(batch).cpu())
        items.extend(batch)
    return batches, items


def first_rows(model: LoadedModel, data: HeldOut, limit: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Classification: logits of the first ``limit`` inputs and their labels."""
    count = min(len(data.inputs), limit)
    logits = torch.cat(_forward(model, data, count)[0])
    return logits, torch.tensor(data.labels[:count]) if data.labels is not None else None


def pixel_rows(model: LoadedModel, data: HeldOut, limit: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Segmentation: ``limit`` pixels (seed 0) of up to 64 images' logits at input size, and their labels."""
    count = min(len(data.inputs), _SEGMENTATION_IMAGES)
    batches, items = _forward(model, data, count)
    rows: list[torch.Tensor] = []
    for row, item in zip(torch.cat(batches), items, strict=True):
        assert item.size is not None
        rows.append(upsample(row[None], item.size)[0].flatten(1).T)
    logits = torch.cat(rows)
    pick = torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))[:limit]
    masks = torch.from_numpy(data.masks[:count].reshape(-1)) if data.masks is not None else None
    return logits[pick], masks[pick] if masks is not None else None


def generation_rows(model: LoadedModel, data: HeldOut, limit: int) -> tuple[torch.Tensor, None]:
    """Generation, labels None (the unmodulated argmax is the reference): a model with a chat template gets
    each text as a user turn and gives the logits of its first 16 greedy reply steps (what a chat request's
    decoding steps see); one without gives next-token logits at up to 16 positions (seed 0) of each text
    (first 64 tokens). Either way ceil(limit / 16) texts."""
    texts = [str(t) for t in data.inputs][: math.ceil(limit / _POSITIONS_PER_TEXT)]
    if getattr(model.tokenizer, "chat_template", None):
        return _reply_logits(model, texts)[:limit], None
    return _generation_logits(model, texts, limit, torch.Generator().manual_seed(0)), None


def _generation_logits(
    model: LoadedModel, texts: list[str], limit: int, generator: torch.Generator
) -> torch.Tensor:
    """Next-token logits (N, V) at random positions of the texts, no chat template."""
    picked: list[torch.Tensor] = []
    for start in range(0, len(texts), _BATCH):
        batch = model.tokenizer(
            texts[start : start + _BATCH],
            return_tensors="pt",
            padding=True,
            padding_side="right",
            truncation=True,
            max_length=64,
        ).to(model.device)
        with torch.inference_mode():
            logits = model.model(**batch).logits.float().cpu()
        mask = batch["attention_mask"].cpu().bool()
        for row in range(len(logits)):
            valid = logits[row][mask[row]]
            order = torch.randperm(len(valid), generator=generator)[:_POSITIONS_PER_TEXT]
            picked.append(valid[order])
    return torch.cat(picked)[:limit]


def _reply_logits(model: LoadedModel, prompts: list[str]) -> torch.Tensor:
    """Clean logits (N, V) of the first 16 greedy reply steps of each prompt sent as a chat user turn
    (steps after the reply's end token left out)."""
    tokenizer = model.tokenizer
    eos = tokenizer.eos_token_id
    picked: list[torch.Tensor] = []
    for start in range(0, len(prompts), _BATCH):
        chats = [[{"role": "user", "content": p}] for p in prompts[start : start + _BATCH]]
        rendered = [
            tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats
        ]
        batch = tokenizer(
            rendered, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(model.device)
        with torch.inference_mode():
            out = model.model.generate(
                **batch,
                max_new_tokens=_POSITIONS_PER_TEXT,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            )
        steps = torch.stack(out.logits, dim=1).float().cpu()  # (B, T, V)
        tokens = out.sequences[:, batch["input_ids"].shape[1] :].cpu()
        for row in range(len(steps)):
            ended = (tokens[row] == eos).nonzero()
            length = int(ended[0]) + 1 if len(ended) else steps.shape[1]
            picked.append(steps[row, :length])
    return torch.cat(picked)
