"""The one wire format of a row's modulation between the gateway and our logits processor inside vLLM.

The gateway writes it into the request body's ``vllm_xargs`` (vLLM hands it to logits processors as
``SamplingParams.extra_args``); nothing a client sends reaches it. `decode` is the processor's only
reader and rejects anything malformed with a `ValueError` (vLLM answers 400).

Sampling is decided by the processor too (keyed, exactly as the built-in engine draws), so the gateway
always asks vLLM itself for greedy decoding and sends the row's temperature and top_p here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.limits import MAX_TEMPERATURE
from service.modulation import RowKey, RowSpec
from service.serving.generation.types import GenerationRequest

KEY, SIGMA, FOCUS_IDS, FOCUS_STRENGTH, FOCUS_SIGN = (
    "aim_key",
    "aim_sigma",
    "aim_focus",
    "aim_focus_strength",
    "aim_focus_sign",
)
TEMPERATURE, TOP_P, PROJECTION = "aim_temperature", "aim_top_p", "aim_projection"
FIELDS = frozenset({KEY, SIGMA, FOCUS_IDS, FOCUS_STRENGTH, FOCUS_SIGN, TEMPERATURE, TOP_P, PROJECTION})


@dataclass(frozen=True, slots=True)
class RowArgs:
    """What the processor needs for one request: its modulation and its (keyed) sampling settings.

    temperature: 0 = greedy on the modulated logits; top_p: 1.0 = the whole distribution.
    projection: the semantic hash's projection key (`GenerationRequest.projection`), or None.
    """

    spec: RowSpec
    temperature: float = 0.0
    top_p: float = 1.0
    projection: RowKey | None = None

    @property
    def needs_processing(self) -> bool:
        return self.spec.sigma > 0.0 or self.spec.has_focus or self.temperature > 0.0


def encode(req: GenerationRequest) -> dict[str, Any]:
    """``vllm_xargs`` for ``req`` (JSON values only: numbers and lists of numbers)."""
    spec = req.spec
    return {
        KEY: [int(spec.key[0]), int(spec.key[1])],
        SIGMA: float(spec.sigma),
        FOCUS_IDS: [int(i) for i in spec.focus_ids],
        FOCUS_STRENGTH: float(spec.focus_strength),
        FOCUS_SIGN: int(spec.focus_sign),
        TEMPERATURE: float(req.temperature),
        TOP_P: 1.0 if req.top_p is None else float(req.top_p),
        PROJECTION: [] if req.projection is None else [int(req.projection[0]), int(req.projection[1])],
    }


def decode(extra: Mapping[str, Any] | None) -> RowArgs | None:
    """The row's arguments, or None when the request carries none of ours (vLLM used without the gateway:
    the row is left untouched).

    Raises:
        ValueError: a field of ours is missing, unknown or malformed (named in the message).
    """
    if not extra:
        return None
    ours = {k: v for k, v in extra.items() if k.startswith("aim_")}
    if not ours:
        return None
    unknown = sorted(set(ours) - FIELDS)
    missing = sorted(FIELDS - set(ours))
    if unknown or missing:
        raise ValueError(f"vllm_xargs: unknown fields {unknown}, missing fields {missing}")
    key = _words(ours, KEY)
    projection = None if ours[PROJECTION] == [] else _words(ours, PROJECTION)
    focus = ours[FOCUS_IDS]
    if not (isinstance(focus, list | tuple) and all(_is_int(i) for i in focus)):
        raise ValueError(f"vllm_xargs.{FOCUS_IDS} must be a list of token ids, got {focus!r}")
    temperature, top_p = _number(ours, TEMPERATURE), _number(ours, TOP_P)
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise ValueError(f"vllm_xargs.{TEMPERATURE} must be in [0, {MAX_TEMPERATURE}], got {temperature!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"vllm_xargs.{TOP_P} must be in (0, 1], got {top_p!r}")
    sign = ours[FOCUS_SIGN]
    if not _is_int(sign):
        raise ValueError(f"vllm_xargs.{FOCUS_SIGN} must be +1 or -1, got {sign!r}")
    spec = RowSpec(  # checks σ, strength, sign, key words and focus ids itself (ValueError)
        _number(ours, SIGMA),
        key,
        tuple(int(i) for i in focus),
        _number(ours, FOCUS_STRENGTH),
        int(sign),
    )
    return RowArgs(spec, temperature, top_p, projection)


def _words(ours: Mapping[str, Any], name: str) -> RowKey:
    v = ours[name]
    if not (isinstance(v, list | tuple) and len(v) == 2 and all(_is_int(w) and 0 <= w < 1 << 32 for w in v)):
        raise ValueError(f"vllm_xargs.{name} must be two unsigned 32-bit integers, got {v!r}")
    return (int(v[0]), int(v[1]))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(ours: Mapping[str, Any], name: str) -> float:
    v = ours[name]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"vllm_xargs.{name} must be a finite number, got {v!r}")
    return float(v)
