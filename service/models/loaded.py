"""A loaded model and the per-input items it runs on.

``LoadedModel.prepare`` validates and preprocesses one raw input on the host (CPU tensors, no batch
dimension); ``LoadedModel.forward`` collates a batch of items, moves it to the model's device once and runs
one forward pass. The serving engine owns batching and modulation; this module only turns inputs into logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from service.models.inputs import InputLimits
from service.models.keyview import INPUT

if TYPE_CHECKING:
    from service.tasks.base import Task


@dataclass(frozen=True)
class Item:
    """One prepared input.

    ``tensors``: CPU tensors without a batch dimension (``input_ids`` (T,) int64 for text; ``pixel_values``
    (C, H', W') float32 for images, H'xW' the processor's size). ``digest``: 32-byte SHA-256 of the input's
    canonical form (see ``service.models.inputs``). ``size``: the image's original (height, width), None
    for text.
    """

    tensors: dict[str, torch.Tensor]
    digest: bytes
    size: tuple[int, int] | None = None
    key: dict[str, torch.Tensor] | None = None


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of segmentation logits (B, C, h, w) to (B, C, height, width); float32 out."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


@dataclass
class LoadedModel:
    """One model ready to serve.

    ``labels`` are the class names by class id (``id2label``); empty for text-generation, whose classes are
    the tokenizer's vocabulary (``num_classes`` is then the vocabulary size of the logits). ``model`` is the
    transformers module (a causal LM for text-generation), ``tokenizer`` is set for text tasks and
    ``image_processor`` for image tasks. ``max_length`` is the token limit for text: longer texts are
    truncated to it (the digest is then taken over the truncated ids, since that is what the model sees).
    ``key_view`` is what the noise key's features are taken of (`service.models.keyview`): the input as
    sent, or a view the task supports (the centred image, the text's content without a leading label).
    """

    name: str
    task: str
    labels: list[str]
    device: torch.device
    dtype: torch.dtype
    path: Path
    model: Any
    num_classes: int
    tokenizer: Any = None
    image_processor: Any = None
    image_mode: str = "RGB"
    max_length: int = 512
    limits: InputLimits = field(default_factory=InputLimits)
    key_view: str = INPUT

    @property
    def kind(self) -> Task:
        """The task this model serves (``service.tasks``): how its inputs are prepared and run."""
        from service.tasks.registry import task_named  # tasks build on this module: looked up at use

        return task_named(self.task)

    def prepare(self, raw: str | bytes) -> Item:
        """Validate and preprocess one input the way the model's task does (a text, or PNG/JPEG bytes).

        Raises BadInput / PayloadTooLarge for unusable input, NotFound(code="unsupported_task") on a
        text-generation model (whose inputs go to its generation engine instead).
        """
        return self.kind.prepare(self, raw)

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        """One batched forward pass over non-empty ``items``; float32 logits on the model's device.

        Shapes: (B, C) for classification; (B, C, h, w) for segmentation at the model's output resolution
        (use ``upsample`` to bring a row to its item's ``size``).
        """
        return self._logits(items)

    def forward_features(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`, plus (B, D) float32 features: what the model's output head reads for each input.

        The features are the input of the classification head (the pooled [CLS] vector of a BERT, the
        pooled last stage of a ResNet), averaged over pixels for a segmentation head's per-pixel input;
        a model without a known head gives its logits (averaged over pixels). They key the noise
        (`service.modulation.semantic`), so inputs the model represents alike get alike draws. Under a
        key view (`service.models.keyview`) they are taken of the view instead, in the same forward pass
        (a batch of B + E: the inputs as sent give the logits, the E views the features of their items).
        """
        captured: list[torch.Tensor] = []
        head = head_module(self.model)
        hook = None
        if head is not None:
            hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            logits = self._logits(items, with_key_view=True)
        finally:
            if hook is not None:
                hook.remove()
        raw = captured[-1] if captured else logits
        features = raw.float().flatten(2).mean(dim=2) if raw.dim() > 2 else raw.float()
        rows = len(items)
        viewed = self.kind.viewed(self, items)
        if not viewed:
            return logits[:rows], features
        keyed = features[:rows].clone()
        keyed[torch.tensor(viewed, device=keyed.device)] = features[rows:]
        return logits[:rows], keyed

    def _logits(self, items: Sequence[Item], with_key_view: bool = False) -> torch.Tensor:
        """Logits of ``items``, (B, ...); with ``with_key_view``, (B + E, ...): after the B inputs' rows,
        the key views of the E items the task lists in ``viewed`` (all B for images under a centred view,
        the texts whose content view differs from the text under ``key_view: content``)."""
        with torch.inference_mode():
            return self.kind.logits(self, items, with_key_view).float()


def head_module(model: Any) -> torch.nn.Module | None:
    """The module that maps features to logits: ``classifier`` (BERT, ResNet) or ``decode_head.classifier``
    (SegFormer); None when the model has neither."""
    for path in ("classifier", "decode_head.classifier"):
        module: Any = model
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None
