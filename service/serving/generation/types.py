"""The generation engine's request, event and statistics types, and the one place requests are checked.

A `GenerationRequest` carries token ids (the web layer builds them with `service.serving.generation.text`) and
the row's `RowSpec` as the policy built it. `validate_request` checks it once, at every engine's
``submit``; the decoding loop trusts what passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from service.errors import BadInput, PayloadTooLarge
from service.limits import MAX_STOP_CHARS, MAX_STOP_STRINGS, MAX_TEMPERATURE
from service.modulation import RowKey, RowSpec

if TYPE_CHECKING:
    from torch import Tensor

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One completion to generate.

    prompt_ids: the prompt's token ids (chat template already applied for chat requests).
    max_new_tokens: at most this many tokens are generated (EOS counts as one).
    spec: the row's modulation (σ, base noise key, focus) as `service.api.policy.row_spec` built it, already
        checked by `RowSpec` itself; its key keys the modulation noise and the sampling draws alike,
        together with the prompt's semantic codes.
    projection: the semantic hash's projection key (`derive_projection_key`): the engine hashes the clean
        logits of the first decoding step with it (`service.modulation.semantic.prompt_codes`). None: no
        semantic part; the spec's key alone keys the noise and must then be specific to the input.
    temperature: 0 = greedy on the modulated logits; > 0 samples from softmax(modulated / temperature).
    top_p: nucleus sampling mass in (0, 1]; None = the whole distribution. Ignored when greedy.
    stop: strings that end the completion; the completion is cut before the first one found.
    priority: the tier's scheduling priority; waiting requests join the running batch highest first.
    tenant: who asked, for admission's per-tenant cap (`service.serving.generation.admission`); engines
        ignore it.
    """

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    spec: RowSpec
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    projection: RowKey | None = None
    priority: int = 0
    tenant: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Fidelity:
    """agree: decoding steps whose modulated argmax equals the unmodulated argmax; steps: the steps
    compared (those of greedy rows: `Row.compared`, the same in both engines)."""

    agree: int
    steps: int


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """New completion text since the previous event: whole characters only, never an empty string."""

    text: str


@dataclass(frozen=True, slots=True)
class GenerationDone:
    """The last event of a stream.

    text: the whole completion (equal to the concatenation of the stream's `TokenDelta` texts), stop
        string and EOS excluded.
    token_ids: the generated tokens, EOS excluded, including the tokens that produced a stop string.
    queue_wait_s: seconds between submit and the row's admission into a running batch.
    clean_sample: the top unmodulated logits (n, K) of the row's sampled decoding steps
        (`service.serving.traffic.generation_sample`; vLLM: `vllm.steps.StepReader`), for re-solving its
        tier's σ from traffic; None when no step was sampled.
    """

    text: str
    finish_reason: FinishReason
    usage: Usage
    fidelity: Fidelity
    token_ids: tuple[int, ...]
    queue_wait_s: float
    clean_sample: Tensor | None = None


GenerationEvent = TokenDelta | GenerationDone


@dataclass(frozen=True, slots=True)
class StepStats:
    """One decoding step, reported to ``metrics_hook`` from the worker thread.

    batch_size: rows sampled in this step; admitted: rows prefilled into the batch in this step;
    queue_depth: requests still waiting after admission; step_s: wall seconds of the step (prefill included).
    """

    batch_size: int
    admitted: int
    queue_depth: int
    step_s: float


def validate_request(req: GenerationRequest, *, context_length: int, vocab_size: int) -> None:
    """Check every field once (the `RowSpec` checked itself when it was built; its focus ids are checked
    here against the vocabulary).

    Raises:
        PayloadTooLarge: the prompt alone fills the model's context.
        BadInput: any other unusable value, with a message naming the field and the value.
    """
    n = len(req.prompt_ids)
    if n == 0:
        raise BadInput("the prompt is empty: it must have at least one token")
    if n >= context_length:
        raise PayloadTooLarge(
            f"the prompt has {n} tokens; the model's context is {context_length} tokens "
            "and must leave room for at least one new token"
        )
    if any(not 0 <= t < vocab_size for t in req.prompt_ids):
        raise BadInput(f"prompt token ids must lie in [0, {vocab_size})")
    room = context_length - n
    if not 1 <= req.max_new_tokens <= room:
        raise BadInput(
            f"max_new_tokens must be between 1 and {room} (the model's context of {context_length} tokens "
            f"minus the prompt's {n}), got {req.max_new_tokens}"
        )
    if not (math.isfinite(req.temperature) and 0.0 <= req.temperature <= MAX_TEMPERATURE):
        raise BadInput(f"temperature must be between 0 and {MAX_TEMPERATURE}, got {req.temperature!r}")
    if req.top_p is not None and not (math.isfinite(req.top_p) and 0.0 < req.top_p <= 1.0):
        raise BadInput(f"top_p must be in (0, 1], got {req.top_p!r}")
    _check_stop(req.stop)
    bad = [t for t in req.spec.focus_ids if not 0 <= t < vocab_size]
    if bad:
        raise BadInput(f"focus token ids {bad[:5]} are outside the vocabulary of {vocab_size} tokens")


def _check_stop(stop: tuple[str, ...]) -> None:
    if len(stop) > MAX_STOP_STRINGS:
        raise BadInput(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(stop)}")
    for s in stop:
        if not isinstance(s, str) or not s:
            raise BadInput(f"stop strings must be non-empty strings, got {s!r}")
        if len(s) > MAX_STOP_CHARS:
            raise BadInput(f"stop strings must be at most {MAX_STOP_CHARS} characters, got {len(s)}")
