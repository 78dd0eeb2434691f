"""The minilm-sentiment-ft preset: the MiniLM-L6 encoder fine-tuned end to end on tweets.

CI runs ``build_finetuned``, the preset's whole build path (a new classifier from the MiniLM weights, seeded
length-grouped batches, AdamW with warmup and decay on every weight, save, reload check through the loader),
on 32 training tweets and 30 held-out ones. The shipped preset is ``slow`` (docs/presets.md gives its build
time): the suite does not build it, and its own tests run where it is built (``aimserve presets build
minilm-sentiment-ft``) and are skipped, with the reason shown, where it is not.
"""

from __future__ import annotations

import pytest
import torch

from service.models import held_out, load_model
from service.presets import PRESETS
from service.presets.sentiment import sample_split
from service.presets.sentiment_ft import RECIPE, FineTuneRecipe, _batches, build_finetuned
from service.presets.sources import TextSplit
from tests.presets.manifest import manifest

# 3 epochs of 4 batches: measured (seed 0) epoch losses 1.063 / 0.886 / 0.741, 0.875 of the 32 training tweets
# right, 0.533 of the 30 held-out ones (majority class 0.467, chance 0.333). 59 s at load 12 on 2 cores, of
# which about 27 s is importing transformers (paid once per test process).
MINI = FineTuneRecipe(train_texts=32, epochs=3, batch=8, lr=3e-4, max_length=48)


def _accuracy(model, texts, labels):
    logits = model.forward([model.prepare(text) for text in texts])
    return float((logits.argmax(-1) == torch.tensor(labels)).float().mean())


def test_batches_cover_every_row_once_in_a_seeded_order():
    lengths = [(7 * i) % 23 for i in range(1000)]
    batches = _batches(lengths, 32, torch.Generator().manual_seed(0))
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert all(len(batch) <= 32 for batch in batches) and len(batches) == 32
    assert batches == _batches(lengths, 32, torch.Generator().manual_seed(0))
    assert batches != _batches(lengths, 32, torch.Generator().manual_seed(1))


def test_the_build_path_learns_on_a_few_dozen_tweets(tmp_path):
    train, test = sample_split(MINI.train_texts)
    mini_test = TextSplit(test.texts[::50], test.labels[::50])  # evenly spaced: the split is sorted by class
    out = tmp_path / "model"
    out.mkdir()
    fields = build_finetuned(out, train, mini_test, MINI)
    assert fields["sizes"]["train"] == 32 and fields["sizes"]["heldout"] == 30
    assert fields["training"]["trained"] == "every weight, end to end"
    assert (
        fields["key_view"] == "content"
    )  # v2: keyed on the text without a leading label, as minilm-sentiment
    losses = fields["training"]["epoch_losses"]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0]  # measured 0.70x
    model = load_model(out)
    assert model.labels == ["negative", "neutral", "positive"]
    assert held_out(out).inputs == mini_test.texts
    assert _accuracy(model, train.texts, train.labels) >= 0.75  # measured 0.875; chance 1/3
    heldout = _accuracy(model, mini_test.texts, mini_test.labels)
    assert heldout == pytest.approx(fields["metrics"]["accuracy"], abs=1e-4)  # rounded to 4 places
    assert heldout > 0.4  # measured 0.533; chance 0.333


def test_the_shipped_preset_is_slow_and_left_out_of_build_all():
    preset = PRESETS["minilm-sentiment-ft"]
    assert preset.slow is not None and preset.missing() is None
    assert "aimserve presets build minilm-sentiment-ft" in str(preset.left_out())
    assert PRESETS["minilm-sentiment"].left_out() is None


@pytest.mark.slow
def test_shipped_preset_reproduces_its_held_out_figures(sentiment_ft):
    data = held_out(sentiment_ft.path)
    assert len(data.inputs) == 1500 and sentiment_ft.task == "text-classification"
    order = sorted(range(len(data.inputs)), key=lambda i: len(data.inputs[i]))
    logits = torch.empty(len(order), 3)
    for start in range(0, len(order), 100):
        rows = order[start : start + 100]
        logits[rows] = sentiment_ft.forward([sentiment_ft.prepare(data.inputs[i]) for i in rows])
    accuracy = float((logits.argmax(-1) == torch.tensor(data.labels)).float().mean())
    recorded = manifest(sentiment_ft)
    assert accuracy == pytest.approx(recorded["metrics"]["accuracy"], abs=0.002)
    assert accuracy > 0.75  # measured 0.774; the frozen-encoder minilm-sentiment gives 0.725 on these tweets
    assert recorded["training"]["lr"] == RECIPE.lr and recorded["sizes"]["train"] == RECIPE.train_texts
    assert (
        recorded["preset_version"] == 2
        and recorded["key_view"] == "content"
        and sentiment_ft.key_view == "content"
    )
