"""Text <-> tokens for generation: prompt and chat encoding, focus targets, streaming detokenisation.

`StreamText` turns a growing list of token ids into text deltas that are whole characters and that never
have to be taken back: a tail that could still become a stop string is held until it is resolved, and a
byte-level token that ends inside a multi-byte character waits for the tokens that complete it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from service.errors import BadInput
from service.models.confusables import fold_lookalikes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHAT_ROLES = frozenset({"system", "user", "assistant"})
_INCOMPLETE = "\ufffd"  # what decode() yields for the bytes of an unfinished UTF-8 character


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[int, ...]:
    """Token ids of a plain prompt, with the tokenizer's usual special tokens (e.g. BOS) added.

    Words spelled with look-alike letters are read as the Latin words they imitate
    (`service.models.confusables.fold_lookalikes`), as the text classifiers read them: a homoglyph variant
    of a prompt is then the same prompt (same tokens, same noise, same answer), so voting over such
    variants gains nothing (issue #11)."""
    if not isinstance(text, str) or not text:
        raise BadInput("prompt must be a non-empty string")
    ids = tokenizer(fold_lookalikes(text), add_special_tokens=True)["input_ids"]
    return tuple(int(i) for i in ids)


def encode_chat(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> tuple[int, ...]:
    """Token ids of a conversation through the tokenizer's chat template, ending with the assistant prompt.

    Each message is ``{"role": "system" | "user" | "assistant", "content": str}``; contents are read with
    look-alike letters folded, as in `encode_prompt`.
    """
    if not messages:
        raise BadInput("messages must contain at least one message")
    clean: list[dict[str, str]] = []
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if role not in CHAT_ROLES:
            raise BadInput(f"messages[{i}].role must be one of {sorted(CHAT_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise BadInput(f"messages[{i}].content must be a string")
        clean.append({"role": role, "content": fold_lookalikes(content)})
    if not getattr(tokenizer, "chat_template", None):
        raise BadInput("the loaded model has no chat template; send a plain prompt instead")
    text = tokenizer.apply_chat_template(clean, add_generation_prompt=True, tokenize=False)
    # The template already wrote every special token the model expects.
    ids = tokenizer(str(text), add_special_tokens=False)["input_ids"]
    return tuple(int(i) for i in ids)


def focus_token_ids(tokenizer: PreTrainedTokenizerBase, strings: Sequence[str]) -> tuple[int, ...]:
    """The tokens of each target string, spelled with and without a leading space, deduplicated in order.

    Both spellings matter because byte-level BPE vocabularies give a word inside a sentence (" cat") a
    different token from the same word at the start of a line ("cat").
    """
    out: dict[int, None] = {}
    for s in strings:
        core = s.strip() if isinstance(s, str) else ""
        if not core:
            raise BadInput(f"focus strings must contain a non-space character, got {s!r}")
        for variant in (core, " " + core):
            for i in tokenizer(variant, add_special_tokens=False)["input_ids"]:
                out[int(i)] = None
    return tuple(out)


class StreamText:
    """Incremental detokeniser with stop strings for one completion (one worker thread uses it).

    ``push(token)`` returns the text that became final with that token ("" when none); ``stopped`` turns
    True once the text contains a stop string, and the text is then cut before it. ``finish()`` returns
    the last held-back text. The concatenation of all returned pieces equals ``text``.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: tuple[str, ...]) -> None:
        self._tok = tokenizer
        self._stop = stop
        self._longest = max((len(s) for s in stop), default=0)
        self._ids: list[int] = []
        self._prefix = 0  # decode window: ids[_prefix:_read] were already turned into text
        self._read = 0
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def text(self) -> str:
        return self._text

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        piece = self._decode_new(final=False)
        if not piece:
            return ""
        search_from = max(0, len(self._text) - self._longest + 1)
        self._text += piece
        if self._stop and self._cut_at_stop(search_from):
            return self._take(len(self._text))
        return self._take(len(self._text) - self._stop_prefix_len())

    def finish(self) -> str:
        """Everything not yet returned (including an unfinished character, as U+FFFD, at a length cut)."""
        if not self.stopped:
            search_from = max(0, len(self._text) - self._longest + 1)
            self._text += self._decode_new(final=True)
            if self._stop:
                self._cut_at_stop(search_from)
        return self._take(len(self._text))

    def _decode_new(self, *, final: bool) -> str:
        # Decoding a short window instead of the whole completion keeps each push O(1); decoding the
        # window's already-read prefix too makes tokenizers that strip a leading space agree with a
        # full decode.
        ids = self._ids
        before = self._decode(ids[self._prefix : self._read])
        after = self._decode(ids[self._prefix :])
        if len(after) <= len(before) or (after.endswith(_INCOMPLETE) and not final):
            return ""
        self._prefix, self._read = self._read, len(ids)
        return after[len(before) :]

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return str(self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def _cut_at_stop(self, search_from: int) -> bool:
        hits = [i for i in (self._text.find(s, search_from) for s in self._stop) if i >= 0]
        if not hits:
            return False
        self._text = self._text[: min(hits)]
        self.stopped = True
        return True

    def _stop_prefix_len(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        best = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(self._text)), best, -1):
                if self._text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _take(self, end: int) -> str:
        end = max(end, self._emitted)
        out = self._text[self._emitted : end]
        self._emitted = end
        return out
