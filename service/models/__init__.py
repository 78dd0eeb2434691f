"""Load one transformers model from a local folder and turn raw inputs into logits.

Public API: ``load_model`` -> ``LoadedModel`` (``prepare`` one input -> ``Item``, ``forward`` a batch ->
float32 logits), ``upsample`` for segmentation logits, ``held_out`` / ``calibration_logits`` for the
held-out split saved beside a model, and ``InputLimits``.
"""

from __future__ import annotations

from service.models.heldout import HeldOut, calibration_logits, held_out, write_images, write_texts
from service.models.inputs import InputLimits
from service.models.loaded import Item, LoadedModel, upsample
from service.models.loader import load_model

__all__ = [
    "HeldOut",
    "InputLimits",
    "Item",
    "LoadedModel",
    "calibration_logits",
    "held_out",
    "load_model",
    "upsample",
    "write_images",
    "write_texts",
]
