"""Schemathesis hooks for the fuzz run: keep every generation short, in prompt and in new tokens.

The schema allows 1024 new tokens and 256 chat messages, and on a loaded CPU a test budget of seconds
cannot pay for that: a schema-valid token count above `FUZZ_MAX_TOKENS`, or a missing one (the routes
default to 16 or 64), becomes `FUZZ_MAX_TOKENS`; a prompt is cut to `FUZZ_PROMPT_CHARS` characters and a
chat to `FUZZ_MESSAGES` messages. Each edit keeps a valid value valid and leaves invalid values as
generated, and schemathesis re-checks a case a hook edited, so positive cases stay positive and negative
ones negative. (What a long prompt costs is the scheduler's concern, tested with the scheduler.)
"""

from __future__ import annotations

from typing import Any

import schemathesis

from service.limits import MAX_NEW_TOKENS

FUZZ_MAX_TOKENS = 4
FUZZ_PROMPT_CHARS = 200
FUZZ_MESSAGES = 4
TOKEN_FIELD = {
    "/v1/generate": "max_new_tokens",
    "/v1/completions": "max_tokens",
    "/v1/chat/completions": "max_tokens",
}
TOKEN_FIELDS = ("max_new_tokens", "max_tokens", "max_completion_tokens")


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    body, field = case.body, TOKEN_FIELD.get(case.path)
    if field is None or not isinstance(body, dict):
        return
    body.setdefault(field, FUZZ_MAX_TOKENS)
    for name in TOKEN_FIELDS:
        value = body.get(name)
        if type(value) is int and FUZZ_MAX_TOKENS < value <= MAX_NEW_TOKENS:
            body[name] = FUZZ_MAX_TOKENS
    prompt, messages = body.get("prompt"), body.get("messages")
    if isinstance(prompt, str):
        body["prompt"] = prompt[:FUZZ_PROMPT_CHARS]
    if isinstance(messages, list):
        del messages[FUZZ_MESSAGES:]
        for message in messages:
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = message["content"][:FUZZ_PROMPT_CHARS]
