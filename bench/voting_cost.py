"""The voting benchmark's side measures for classifiers: how correlated the noise draws of a variant and its
input are (and of unrelated inputs), and what the keying costs per batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from bench import common
from bench.voting import SECRET, Forwarded
from service.api.policy import row_spec
from service.models import LoadedModel
from service.modulation import ModulationBatch, modulate
from service.modulation.keys import derive_projection_key
from service.modulation.semantic import feature_weights
from service.serving.predict import modulate_rows
from service.tasks.classes import smoothness_for


def draw_correlations(
    model: LoadedModel, inputs: Sequence[Any], make: dict[str, Any], per: int = 8
) -> dict[str, float]:
    """Correlation of the noise draws (the dot product of the rows' mixture weights): unrelated inputs
    (all pairs: mean, mean absolute, 99th percentile), and each kind's variants vs their input."""
    projection = derive_projection_key(SECRET)

    def weights(xs: Sequence[Any]) -> torch.Tensor:
        return feature_weights(Forwarded(model, xs).features, projection, smoothness_for(model.kind))

    base = weights(inputs)
    pairs = (base @ base.T)[~torch.eye(len(inputs), dtype=torch.bool)]
    out = {
        "unrelated": pairs.mean().item(),
        "unrelated_abs": pairs.abs().mean().item(),
        "unrelated_p99": pairs.quantile(0.99).item(),
    }
    for kind, fn in make.items():
        if fn is not None:
            var = weights([v for x in inputs for v in fn(x, per)]).view(len(inputs), per, -1)
            out[kind] = (var * base[:, None]).sum(-1).mean().item()
    return out


def keying_cost(model: LoadedModel, inputs: Sequence[Any], sigma: float) -> dict[str, float]:
    """Seconds per batch of 32: the forward pass as served (with the keying view's features, e.g. the
    centred images of a model declaring ``key_view``) and without it, and the semantic modulation vs one
    key; the keying's share of the served batch is the sum of both differences over the served total."""
    f = Forwarded(model, inputs[:32])
    specs = [row_spec(SECRET, "free", sigma, None)] * len(f.items)
    projection = derive_projection_key(SECRET)
    t_forward = common.median_seconds(lambda: model.forward_features(f.items), repeats=5)
    t_forward_plain = common.median_seconds(lambda: model.forward(f.items), repeats=5)
    t_served = common.median_seconds(lambda: modulate_rows(f.logits, f.features, specs, projection, f.smooth))
    t_plain = common.median_seconds(
        lambda: modulate(f.logits, ModulationBatch.build(specs, f.logits.shape[1]))
    )
    keying = (t_forward - t_forward_plain) + (t_served - t_plain)
    return {
        "forward_s": t_forward,
        "forward_without_key_view_s": t_forward_plain,
        "modulate_semantic_s": t_served,
        "modulate_single_key_s": t_plain,
        "keying_share_of_batch": keying / (t_forward + t_served),
        "load_1min": os.getloadavg()[0],
    }
