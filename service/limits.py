"""Every bound a request is checked against, stated once.

The request schemas (`service.api.schemas`, `service.api.routes.openai_compat`) take their ``Field`` bounds
from here, so a value out of range is a 422 at the edge and the OpenAPI document states the same bound;
the generation engine re-checks the same constants for callers that bypass the web layer. Imports
nothing, so every layer may use it.
"""

from __future__ import annotations

#: Inputs in one classify or segment request (rows); feedback indices lie in ``[0, MAX_INPUTS)``.
MAX_INPUTS = 64
#: ``top_k`` of a classification: at most this many scored labels per input.
MAX_TOP_K = 100
#: Tokens one generation may produce (``max_new_tokens``, ``max_tokens``, ``max_completion_tokens``).
MAX_NEW_TOKENS = 1024
#: Sampling temperature, in [0, MAX_TEMPERATURE]; 0 is greedy.
MAX_TEMPERATURE = 2.0
#: Stop strings per generation, and characters per stop string.
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
#: Messages in one chat completion.
MAX_CHAT_MESSAGES = 256
#: Classes (or target strings) in one focus preference, characters per class, and the largest strength
#: σ_f the schema accepts (a tier's ``focus.max_strength`` bounds it further).
MAX_FOCUS_CLASSES = 64
MAX_FOCUS_CLASS_CHARS = 200
MAX_FOCUS_STRENGTH = 100.0
#: Characters of a tenant's display name (after stripping surrounding whitespace).
MAX_NAME_CHARS = 128
#: Request body bytes (``AIM_MAX_BODY_BYTES`` overrides it); larger bodies are a 413.
MAX_BODY_BYTES = 8 * 1024 * 1024
