"""One generation request's state from submit to its final event, and its per-token bookkeeping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from service.modulation import RowSpec
from service.serving.generation.text import StreamText
from service.serving.generation.types import (
    Fidelity,
    FinishReason,
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TokenDelta,
    Usage,
)

Item = GenerationEvent | BaseException


@dataclass(eq=False, slots=True)
class Row:
    """``cancelled`` is set from the consumer's side (any thread); everything else belongs to the worker.

    steps: decoding steps taken (EOS included); compared: steps counted for live fidelity (those of greedy
    rows only: a sampled row serves a keyed draw, and vLLM cannot see its argmax, so neither engine counts
    it); agree: compared steps whose modulated argmax (the served token) equalled the unmodulated one;
    tokens: generated ids, EOS excluded; codes: (L,) int32 semantic codes of the prompt, set at prefill;
    sampled: top clean logits of the steps sampled for traffic recalibration.
    """

    request: GenerationRequest
    outbox: Any  # the consumer's queue; only the engine's delivery callback touches it
    text: StreamText
    submitted_at: float = field(default_factory=time.monotonic)
    admitted_at: float = 0.0
    cancelled: bool = False
    tokens: list[int] = field(default_factory=list)
    steps: int = 0
    compared: int = 0
    agree: int = 0
    codes: Any = None
    sampled: list[Any] = field(default_factory=list)

    @property
    def spec(self) -> RowSpec:
        return self.request.spec

    def advance(self, token: int, agrees: bool | None, eos_ids: frozenset[int]) -> list[GenerationEvent]:
        """Record one decoding step (``agrees`` None: not compared); returns the events it produced, ending
        with `GenerationDone` when the row is finished (EOS, a stop string or ``max_new_tokens``)."""
        self.steps += 1
        if agrees is not None:
            self.compared += 1
            self.agree += agrees
        if token in eos_ids:
            return self._finish("stop", "")
        self.tokens.append(token)
        delta = self.text.push(token)
        if self.text.stopped:
            return self._finish("stop", delta)
        if self.steps >= self.request.max_new_tokens:
            return self._finish("length", delta)
        return [TokenDelta(delta)] if delta else []

    def _finish(self, reason: FinishReason, delta: str) -> list[GenerationEvent]:
        tail = delta + self.text.finish()
        done = GenerationDone(
            text=self.text.text,
            finish_reason=reason,
            usage=Usage(len(self.request.prompt_ids), self.steps),
            fidelity=Fidelity(self.agree, self.compared),
            token_ids=tuple(self.tokens),
            queue_wait_s=self.admitted_at - self.submitted_at,
            clean_sample=torch.stack(self.sampled) if self.sampled else None,
        )
        return [TokenDelta(tail), done] if tail else [done]
