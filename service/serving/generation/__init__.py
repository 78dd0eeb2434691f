"""Modulated text generation: request and event types, the built-in engine, prompt encoding.

engine.py (the engine the web layer calls), worker.py (the decoding loop), batch.py (the running batch's
KV cache), row.py (one request's state), sampling.py (keyed token choice), text.py (prompts, focus
targets, streaming detokenisation), types.py (requests, events, statistics and their one check).
"""

from __future__ import annotations

from service.serving.generation.engine import (
    Fidelity,
    FinishReason,
    GenerationDone,
    GenerationEngine,
    GenerationEvent,
    GenerationRequest,
    GenerationStream,
    StepStats,
    TokenDelta,
    Usage,
    collect,
    encode_chat,
    encode_prompt,
    focus_token_ids,
)

__all__ = [
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
