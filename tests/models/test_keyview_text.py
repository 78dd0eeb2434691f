"""The content keying view of text: a leading label does not move the key, the answer is the text's own.

Fixed inputs: short texts over the tiny text classifier's vocabulary (tests/models/conftest.py) with
``"key_view": "content"`` in its manifest; the bench's 40 prefix variants of one tweet-like text.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bench.variants import prefix
from service.models import load_model
from service.models.keyview import content


def test_every_bench_prefix_is_a_label() -> None:
    text = "I love this phone so much"
    made = prefix(text, 40)
    assert len(set(made)) == 40
    assert {content(v) for v in made} == {text}


@pytest.mark.parametrize(
    ("text", "view"),
    [
        ("Note: the cat sat", "the cat sat"),
        ("tweet - review: the cat sat", "the cat sat"),  # stacked labels
        ("[review] the cat sat", "the cat sat"),
        ("the cat sat", "the cat sat"),  # no label
        ("review:", "review:"),  # nothing would remain
        ("well... the cat sat", "well... the cat sat"),  # punctuation that is not a label
    ],
)
def test_the_content_view(text: str, view: str) -> None:
    assert content(text) == view


@pytest.fixture(scope="module")
def keyed(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("content") / "m"
    shutil.copytree(tiny_models["text-classification"], folder)
    (folder / "aimserve.json").write_text(json.dumps({"key_view": "content"}))
    return load_model(folder), load_model(tiny_models["text-classification"])


def test_a_labelled_text_keys_on_its_content_and_answers_as_sent(keyed) -> None:
    model, plain = keyed
    texts = ["the cat sat on the mat", "review: the cat sat on the mat", "a dog ran far away"]
    items = [model.prepare(t) for t in texts]
    assert [item.key is not None for item in items] == [False, True, False]
    logits, features = model.forward_features(items)
    torch.testing.assert_close(logits, plain.forward([plain.prepare(t) for t in texts]))
    assert not torch.equal(logits[0], logits[1])  # the answer: the text as sent (a tiny random model)
    torch.testing.assert_close(features[1], features[0], atol=1e-5, rtol=0)  # the key: its content
    _, alone = model.forward_features(items[2:])
    torch.testing.assert_close(features[2], alone[0], atol=1e-5, rtol=0)  # other rows keep their own
    assert not torch.allclose(features[2], features[0], atol=1e-5, rtol=0)
