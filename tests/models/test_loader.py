"""The loader on tiny random models of every task, and its errors on missing or broken folders."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from service.errors import ConfigError, NotFound
from service.models import load_model
from service.models.loader import infer_task
from service.tasks import NAMES


@pytest.mark.parametrize("task", NAMES)
def test_task_inferred_from_architectures(tiny_models, task):
    model = load_model(tiny_models[task])
    assert model.task == task
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert model.path == tiny_models[task]
    assert model.name == task  # no aimserve.json: the folder's name
    assert not model.model.training


def test_labels_from_id2label(tiny_models):
    assert load_model(tiny_models["text-classification"]).labels == ["neg", "mid", "pos"]
    assert load_model(tiny_models["semantic-segmentation"]).labels == ["background", "a", "b"]
    generator = load_model(tiny_models["text-generation"])
    assert generator.labels == []
    assert generator.num_classes == 13


def test_generation_model_has_tokenizer_ready_for_batches(tiny_models):
    model = load_model(tiny_models["text-generation"])
    assert model.tokenizer.padding_side == "left"
    assert model.tokenizer.pad_token_id == model.tokenizer.eos_token_id
    with pytest.raises(NotFound) as caught:
        model.prepare("the cat")
    assert caught.value.code == "unsupported_task"


def test_manifest_names_model_and_task(tiny_models, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(tiny_models["image-classification"], folder)
    (folder / "aimserve.json").write_text(json.dumps({"name": "my-model", "task": "image-classification"}))
    model = load_model(folder)
    assert (model.name, model.task) == ("my-model", "image-classification")


def test_explicit_task_wins_and_is_checked(tiny_models):
    folder = tiny_models["text-classification"]
    assert infer_task(folder, None, "text-classification") == "text-classification"
    with pytest.raises(ConfigError, match="task 'translation' is not supported"):
        load_model(folder, task="translation")
    with pytest.raises(ConfigError, match=re.escape(f"cannot load {folder} for image-classification")):
        load_model(folder, task="image-classification")


def test_missing_directory_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=re.escape(f"model directory {missing} does not exist")):
        load_model(missing)


def test_file_that_is_not_a_model(tmp_path):
    stray = tmp_path / "weights.bin"
    stray.write_bytes(b"\0" * 16)
    with pytest.raises(ConfigError, match=r"neither a directory nor a \.gguf file"):
        load_model(stray)


def test_folder_without_config(tmp_path):
    with pytest.raises(ConfigError, match=r"has no config\.json and no \.gguf file"):
        load_model(tmp_path)


def test_several_gguf_files_are_ambiguous(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match=r"several \.gguf files"):
        load_model(tmp_path)


def test_broken_gguf_is_a_config_error(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ConfigError, match=re.escape(f"cannot load {tmp_path} for text-generation")):
        load_model(tmp_path)


def test_unreadable_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'config.json'} is not readable JSON")):
        load_model(tmp_path)


def test_config_without_a_known_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ConfigError, match="cannot infer the task"):
        load_model(tmp_path)


def test_missing_weights(tiny_models, tmp_path):
    shutil.copytree(tiny_models["semantic-segmentation"], tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(
        ConfigError, match=re.escape(f"cannot load {tmp_path / 'm'} for semantic-segmentation")
    ):
        load_model(tmp_path / "m")


def test_truncated_weights(tiny_models, tmp_path):
    shutil.copytree(tiny_models["text-classification"], tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="for text-classification: "):
        load_model(tmp_path / "m")


def test_manifest_with_unknown_task(tiny_models, tmp_path):
    shutil.copytree(tiny_models["image-classification"], tmp_path / "m")
    (tmp_path / "m" / "aimserve.json").write_text(json.dumps({"task": "image-captioning"}))
    with pytest.raises(ConfigError, match="declares task 'image-captioning'"):
        load_model(tmp_path / "m")


def test_half_precision_refused_on_cpu(tiny_models):
    with pytest.raises(ConfigError, match="dtype 'fp16' needs a CUDA device"):
        load_model(tiny_models["image-classification"], device="cpu", dtype="fp16")
