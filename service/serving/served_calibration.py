"""A classifier tier's σ solved on what this deployment serves: its own keyed draws on the calibration rows.

A classifier's noise is keyed semantically (`modulate_rows`): a mixture of M draws fixed by the server
secret and the tier, weighted by each input's features. So one deployment serves one realisation, and its
served fidelity at the σ solved for independent draws (`service.modulation.calibration`) varies with the
secret (0.555-0.817 over 20 secrets for the fine-tuned sentiment preset's free tier, target 0.70:
docs/results.md). :class:`ServedCalibration` computes each calibration row's unit noise exactly as the
service serves it (same features, key views included, same projection key, same tier key through
`modulate_rows`), and solves σ on those fixed draws (`service.modulation.served`).

Segmentation and generation keep the independent-draw solver: their noise has one draw per pixel and class
(per token and decoding position), so a fidelity over many pixels (tokens) of many inputs averages over
many draws, and one secret's realisation sits at the expectation.
"""

from __future__ import annotations

import torch

from service.models import LoadedModel, held_out
from service.modulation import RowKey, RowSpec
from service.modulation.keys import derive_projection_key, derive_tier_key
from service.modulation.semantic import Smoothness
from service.modulation.served import ServedSolution, flip_sigmas, solve_served_sigma
from service.serving.predict import modulate_rows

# Held-out inputs solved on: every one up to 2,000 (all 1,500 of the sentiment presets'). The served fidelity
# on those rows is met to one row, so the miss on other inputs is their sampling error: with 1,000 rows it
# reached 5.0 points over 20 secrets, with 1,500 at most 2.9 (docs/results.md section 4b).
CALIBRATION_ROWS = 2000
_BATCH = 32
_NOISE_ROWS = 64  # rows per noise chunk: the draws of a chunk are rows x M x C float32 (33 MB for C = 1,000)


def calibration_rows(model: LoadedModel, limit: int = CALIBRATION_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) clean logits and (N, D) keying features of ``limit`` held-out inputs evenly spaced over the
    file (all of them when there are fewer), float32 on CPU, as `classify_batch` computes them
    (`LoadedModel.forward_features`: key views included).

    Evenly spaced, not the first ``limit``: a held-out file may be sorted by label (the sentiment presets'
    are: their first 1,000 of 1,500 tweets hold no positive one), and σ solved on one realisation of the
    draws transfers to other inputs only from a sample that looks like them. ``limit`` defaults to 2,000,
    twice what `calibration_logits` takes: one forward pass at the first load, and fewer rows left a
    secret's served fidelity up to 5 points off the target.
    """
    data = held_out(model.path)
    total = len(data.inputs)
    if total == 0:
        raise ValueError(f"the model at {model.path} has no held-out inputs to calibrate on")
    picked = [data.inputs[i * total // limit] for i in range(limit)] if total > limit else list(data.inputs)
    logits: list[torch.Tensor] = []
    features: list[torch.Tensor] = []
    for start in range(0, len(picked), _BATCH):
        batch_logits, batch_features = model.forward_features(
            [model.prepare(raw) for raw in picked[start : start + _BATCH]]
        )
        logits.append(batch_logits.float().cpu())
        features.append(batch_features.float().cpu())
    return torch.cat(logits), torch.cat(features)


def unit_noise(
    features: torch.Tensor, classes: int, key: RowKey, projection: RowKey, smooth: Smoothness
) -> torch.Tensor:
    """(N, C) float32: the noise rows with ``features`` are served at σ = 1 under the tier key ``key``,
    computed by the serving path itself (`modulate_rows` on zero logits), ``_NOISE_ROWS`` rows at a time."""
    spec = RowSpec(1.0, key)
    chunks = []
    for start in range(0, len(features), _NOISE_ROWS):
        part = features[start : start + _NOISE_ROWS]
        zeros = torch.zeros(len(part), classes, dtype=torch.float32, device=part.device)
        chunks.append(modulate_rows(zeros, part, [spec] * len(part), projection, smooth))
    return torch.cat(chunks)


class ServedCalibration:
    """The calibration rows of one deployment (logits, features, secret), solving any tier's σ on them.

    ``solve(tier, target)`` is the smallest σ whose served fidelity on the rows is at most ``target``
    (`solve_served_sigma`); a target of 1 is σ = 0 (the unmodulated output). Per tier it costs one noise
    pass over the rows (N x M x C keyed draws) and a sort.
    """

    def __init__(
        self, logits: torch.Tensor, features: torch.Tensor, secret: bytes, smooth: Smoothness
    ) -> None:
        if logits.dim() != 2 or features.dim() != 2 or len(logits) != len(features):
            raise ValueError(
                f"logits (N, C) and features (N, D) must have the same rows, got {tuple(logits.shape)} "
                f"and {tuple(features.shape)}"
            )
        self.logits, self.features = logits, features
        self._secret, self._smooth = secret, smooth
        self._projection = derive_projection_key(secret)

    @property
    def rows(self) -> int:
        return len(self.logits)

    def noise(self, tier: str) -> torch.Tensor:
        """(N, C) the unit noise tier ``tier`` serves each calibration row."""
        key = derive_tier_key(self._secret, tier)
        return unit_noise(self.features, self.logits.shape[1], key, self._projection, self._smooth)

    def flips(self, tier: str) -> torch.Tensor:
        """(N,) the σ above which tier ``tier`` serves each row a top-1 other than the clean one."""
        return flip_sigmas(self.logits, self.noise(tier))

    def solve(self, tier: str, target: float) -> ServedSolution:
        if target == 1:
            return ServedSolution(0.0, 1.0, 1.0, self.rows, (0.0, 0.0))
        return solve_served_sigma(self.flips(tier), target)
