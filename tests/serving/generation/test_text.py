"""Prompt/chat encoding, focus targets and streaming detokenisation with the real SmolLM2 tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.errors import BadInput
from service.serving.generation.text import StreamText, encode_chat, encode_prompt, focus_token_ids


def smollm2_dir() -> Path:
    """The real `smollm2-135m` preset folder (built once, cached under the state directory)."""
    from service.presets import build_preset

    return Path(build_preset("smollm2-135m", Path(os.environ.get("AIM_STATE_DIR", ".aimserve"))))


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), local_files_only=True)


def _stream(tok, ids, stop=()):
    st = StreamText(tok, tuple(stop))
    pieces = []
    for i in ids:
        pieces.append(st.push(i))
        if st.stopped:
            break
    pieces.append(st.finish())
    return st, pieces


def test_deltas_are_whole_characters_and_add_up_to_the_full_decode(tok) -> None:
    text = "Grüße aus Köln 🐱🐶 — naïve café, 東京タワー!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    st, pieces = _stream(tok, ids)
    assert "".join(pieces) == st.text == tok.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)
    # byte-level BPE splits the emoji and CJK into several tokens: some pushes must have waited
    assert sum(1 for p in pieces[:-1] if p == "") > 0


def test_stop_string_cuts_the_text_even_across_tokens(tok) -> None:
    ids = tok("The cat sat on the mat. Then it slept.", add_special_tokens=False)["input_ids"]
    st, pieces = _stream(tok, ids, stop=["on the m", "zzz"])
    assert st.stopped
    assert st.text == "The cat sat "
    assert "".join(pieces) == st.text


def test_text_that_may_start_a_stop_string_is_held_back(tok) -> None:
    ids = tok("one two three four", add_special_tokens=False)["input_ids"]
    head = tok("one two three", add_special_tokens=False)["input_ids"]
    assert ids[: len(head)] == head
    st = StreamText(tok, ("three fives",))
    out = "".join(st.push(i) for i in head)
    assert out == "one two "  # "three" could still become "three fives"
    out += "".join(st.push(i) for i in ids[len(head) :])
    assert out == "one two three four"  # " four" resolved it
    assert not st.stopped
    assert st.finish() == ""


def test_encode_prompt_and_chat(tok) -> None:
    ids = encode_prompt(tok, "Hello there")
    assert tok.decode(ids) == "Hello there"
    chat = encode_chat(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    text = tok.decode(chat)
    assert "Be brief." in text and "Hi" in text
    assert text.rstrip().endswith("assistant")  # the generation prompt opens the assistant's turn
    with pytest.raises(BadInput, match="role"):
        encode_chat(tok, [{"role": "robot", "content": "x"}])
    with pytest.raises(BadInput, match="at least one"):
        encode_chat(tok, [])
    with pytest.raises(BadInput, match="non-empty"):
        encode_prompt(tok, "")


def test_look_alike_letters_encode_as_the_prompt_they_imitate(tok) -> None:
    """A homoglyph variant is the same prompt (same ids: same noise and answer, so a vote over such variants
    gains nothing); genuine Cyrillic and NFKC-only forms (a superscript) are left as written."""
    plain, fake = "Write a great poem about the sea", "Writе а grеat pоem abоut thе sеa"  # Cyrillic е, а, о
    assert fake != plain and encode_prompt(tok, fake) == encode_prompt(tok, plain)
    chat = [{"role": "user", "content": fake}]
    assert encode_chat(tok, chat) == encode_chat(tok, [{"role": "user", "content": plain}])
    for kept in ("Напиши стихи о море", "Solve x² = 4"):
        assert tok.decode(encode_prompt(tok, kept), skip_special_tokens=True) == kept
    # An accented Latin word does not stop the fold; a mixed word is folded even in a Russian text.
    assert encode_prompt(tok, fake + " at the café") == encode_prompt(tok, plain + " at the café")
    assert encode_prompt(tok, "Напиши о grеat") == encode_prompt(tok, "Напиши о great")


def test_focus_token_ids_cover_both_spellings_without_duplicates(tok) -> None:
    ids = focus_token_ids(tok, ["cat", " cat ", "Paris"])
    assert len(ids) == len(set(ids))
    for variant in ("cat", " cat", "Paris", " Paris"):
        assert set(tok(variant, add_special_tokens=False)["input_ids"]) <= set(ids)
    with pytest.raises(BadInput, match="focus"):
        focus_token_ids(tok, ["  "])
