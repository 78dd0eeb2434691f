"""Modulated text generation: the engine interface, request and event types, the built-in engine.

interface.py (`GenerationEngine`, what the web layer talks to), engine.py (the built-in engine),
worker.py (the decoding loop), batch.py (the running batch's KV cache), row.py (one request's state),
sampling.py (keyed token choice), text.py (prompts, focus targets, streaming detokenisation), types.py
(requests, events, statistics and their one check).
"""

from __future__ import annotations

from service.serving.generation.engine import BuiltinEngine, GenerationStream, collect
from service.serving.generation.interface import EngineStats, EventStream, GenerationEngine
from service.serving.generation.text import encode_chat, encode_prompt, focus_token_ids
from service.serving.generation.types import (
    Fidelity,
    FinishReason,
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    StepStats,
    TokenDelta,
    Usage,
)

__all__ = [
    "BuiltinEngine",
    "EngineStats",
    "EventStream",
    "Fidelity",
    "FinishReason",
    "GenerationDone",
    "GenerationEngine",
    "GenerationEvent",
    "GenerationRequest",
    "GenerationStream",
    "StepStats",
    "TokenDelta",
    "Usage",
    "collect",
    "encode_chat",
    "encode_prompt",
    "focus_token_ids",
]
