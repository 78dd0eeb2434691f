"""Meaning-preserving variants a hostile free tenant sends to reroll the noise, by kind.

Each generator returns ``k`` distinct variants of one input, deterministic in (input, k): the same
benchmark run twice sends the same requests. Texts: punctuation, emoji, prefix, homoglyph, synonyms,
paraphrase-like edits. Images (PNG bytes in, PNG/JPEG bytes out): JPEG re-encodes, one changed pixel,
shifts by one or two pixels.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
from PIL import Image

_MARKS = [" .", " !", "!", "?", " ?", "...", " ..", ",", ";", " :)", " :(", " -", "!!", "?!", " *", " ~"]
_EMOJI = ["🙂", "😀", "👍", "🔥", "✨", "😅", "🙏", "💯", "🎉", "😎", "🤔", "😂", "❤️", "👀", "🌟", "😊"]
_PREFIXES = ["review", "tweet", "text", "note", "comment", "post", "message", "input", "sample", "quote"]
_SEPARATORS = [": ", " - ", " | ", ":: "]
_HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і", "s": "ѕ"}
_SYNONYMS = dict(
    pair.split(":")
    for pair in [
        "good:great",
        "great:good",
        "bad:awful",
        "awful:bad",
        "car:vehicle",
        "cars:vehicles",
        "like:enjoy",
        "love:adore",
        "hate:dislike",
        "think:believe",
        "big:large",
        "small:little",
        "happy:glad",
        "sad:unhappy",
        "very:really",
        "really:truly",
        "new:fresh",
        "old:aged",
        "fast:quick",
        "people:folks",
        "buy:purchase",
        "get:obtain",
        "help:assist",
        "is:seems",
    ]
)
_FILLERS = ["really", "just", "so", "honestly", "totally", "kind of", "literally", "actually"]
_WRAPPERS = [
    "{}",
    "I'd say {}",
    "{} haha",
    "Well, {}",
    "Honestly, {}",
    "{} lol",
    "So, {}",
    "I mean, {}",
    "{} tbh",
    "Okay: {}",
    "Just saying, {}",
    "{} imo",
    "Hmm, {}",
    "{} fr",
    "Look, {}",
    "{} ngl",
]


def _distinct(make: Callable[[int], str], k: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < k and i < 50 * k:
        v = make(i)
        i += 1
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def punctuation(text: str, k: int) -> list[str]:
    return _distinct(lambda i: text + _MARKS[i % len(_MARKS)] * (1 + i // len(_MARKS)), k)


def emoji(text: str, k: int) -> list[str]:
    def make(i: int) -> str:
        e = _EMOJI[i % len(_EMOJI)] * (1 + i // len(_EMOJI))
        return f"{text} {e}" if i % 2 == 0 else f"{e} {text}"

    return _distinct(make, k)


def prefix(text: str, k: int) -> list[str]:
    def make(i: int) -> str:
        word = _PREFIXES[i % len(_PREFIXES)]
        sep = _SEPARATORS[(i // len(_PREFIXES)) % len(_SEPARATORS)]
        return f"{word}{sep}{text}"

    return _distinct(make, k)


def homoglyph(text: str, k: int) -> list[str]:
    spots = [i for i, ch in enumerate(text) if ch in _HOMOGLYPHS]

    def make(i: int) -> str:
        rng = random.Random(i)
        chars = list(text)
        for j in rng.sample(spots, min(len(spots), 1 + i % 3)) if spots else []:
            chars[j] = _HOMOGLYPHS[chars[j]]
        return "".join(chars) if spots else text + "\u200b" * (i + 1)

    return _distinct(make, k)


def synonyms(text: str, k: int) -> list[str]:
    words = text.split(" ")
    swappable = [i for i, w in enumerate(words) if w.lower() in _SYNONYMS]

    def make(i: int) -> str:
        rng = random.Random(1000 + i)
        out = list(words)
        for j in rng.sample(swappable, min(len(swappable), 1 + i % 2)):
            out[j] = _SYNONYMS[out[j].lower()]
        filler = _FILLERS[i % len(_FILLERS)]
        spot = rng.randrange(len(out) + 1)
        if i >= len(_FILLERS) or not swappable:
            out.insert(spot, filler)
        return " ".join(out)

    return _distinct(make, k)


def paraphrase(text: str, k: int) -> list[str]:
    def make(i: int) -> str:
        wrapped = _WRAPPERS[i % len(_WRAPPERS)].format(text)
        return wrapped if i < len(_WRAPPERS) else wrapped + _MARKS[i % len(_MARKS)]

    return _distinct(make, k)


TEXT_KINDS: dict[str, Callable[[str, int], list[str]]] = {
    "punctuation": punctuation,
    "emoji": emoji,
    "prefix": prefix,
    "homoglyph": homoglyph,
    "synonyms": synonyms,
    "paraphrase": paraphrase,
}


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(image: np.ndarray, k: int) -> list[bytes]:
    out = []
    for i in range(k):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=95 - (i * 35) // max(k - 1, 1))
        out.append(buf.getvalue())
    return out


def one_pixel(image: np.ndarray, k: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(k):
        a = image.copy()
        y, x = rng.integers(0, a.shape[0]), rng.integers(0, a.shape[1])
        a[y, x] = 255 - a[y, x]
        out.append(_png(a))
    return out


def shifted(image: np.ndarray, k: int) -> list[bytes]:
    shifts = [(dy, dx) for dy in (-2, -1, 0, 1, 2) for dx in (-2, -1, 0, 1, 2) if (dy, dx) != (0, 0)]
    out = []
    for i in range(k):
        dy, dx = shifts[i % len(shifts)]
        a = np.roll(image, (dy, dx), axis=(0, 1))
        if i >= len(shifts):
            a = a.copy()
            a[0, 0] = 255 - a[0, 0]
        out.append(_png(a))
    return out


IMAGE_KINDS: dict[str, Callable[[np.ndarray, int], list[bytes]]] = {
    "jpeg": jpeg,
    "one_pixel": one_pixel,
    "shifted": shifted,
}
