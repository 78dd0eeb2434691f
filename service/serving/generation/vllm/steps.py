"""Per-step readings of a vLLM completion stream: served tokens, live fidelity and the traffic sample.

The engine asks vLLM for ``logprobs: k`` with ``--logprobs-mode raw_logits``: every step then carries the
``k`` largest *raw* logits (before any logits processor, ours included) and the served token (added to
the step's entries when it is not among them). From these, exactly as the built-in engine counts and
samples (`service.serving.generation.worker`):

- live fidelity: a step agrees when the served token is the raw top-1. Only greedy rows are compared
  (temperature 0, where the served token is the modulated argmax); a sampled row's served token is its
  keyed draw, not the argmax, and is counted by neither engine.
- the traffic sample: the ``k`` largest raw logits of the steps `is_sampled_step` picks, one row (k,)
  each, in the built-in engine's units (logits), for `service.serving.traffic.TrafficSample`.
"""

from __future__ import annotations

from typing import Any

import torch

from service.serving.traffic import is_sampled_step

PREFIX = "token_id:"  # vLLM's spelling of a token with ``return_tokens_as_token_ids``


class StepReader:
    """Accumulates one stream's steps. ``compare``: count fidelity (greedy rows); ``top``: the sample's
    width k (0: keep no sample)."""

    def __init__(self, *, compare: bool, top: int) -> None:
        self.compare, self.top = compare, top
        self.agree = self.compared = self.steps = 0
        self.tokens: list[int] = []
        self.sampled: list[list[float]] = []

    def read(self, logprobs: dict[str, Any] | None) -> list[int]:
        """Take one choice's ``logprobs`` of a chunk; returns the chunk's served token ids (EOS included)."""
        if not logprobs:
            return []
        ids = [_token(t) for t in logprobs.get("tokens") or []]
        for token, top in zip(ids, logprobs.get("top_logprobs") or [], strict=False):
            if top:
                self._step(token, top)
            self.steps += 1
        return ids

    def _step(self, token: int, top: dict[str, float]) -> None:
        if self.compare:
            best = max(top.items(), key=lambda kv: kv[1])[0]
            self.agree += _token(best) == token
            self.compared += 1
        if self.top and is_sampled_step(self.steps):
            values = sorted(top.values(), reverse=True)[: self.top]
            if len(values) == self.top:
                self.sampled.append(values)

    def sample(self) -> torch.Tensor | None:
        """(n, k) float32: the sampled steps' top raw logits; None when no step was sampled."""
        return torch.tensor(self.sampled, dtype=torch.float32) if self.sampled else None


def _token(spelled: object) -> int:
    return int(str(spelled).removeprefix(PREFIX))
