"""User data in plain formats, evaluated through the CLI: JSONL texts, image folders, image+mask pairs.

Each test writes a small data set from a preset's held-out split, runs `eval utility` on it, and checks
that the σ = 0 accuracy equals the clean accuracy recomputed here on the same inputs.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from service.cli import main
from service.evaluation.datasets import load_eval_set
from service.evaluation.metrics import accuracy, confusion
from service.evaluation.report import read_csv
from service.models import held_out
from tests.evaluation.conftest import clean_logits, preset


def clean_row(out) -> dict[str, str]:
    return read_csv(out / "utility.csv")[0]


def run_utility(data, out, model: str) -> int:
    argv = ["eval", "utility", "--model", model, "--data", str(data), "--sigmas", "0,2", "--repeats", "2"]
    return main([*argv, "--out", str(out)])


def test_folder_of_images_per_class(tmp_path, digits):
    data = held_out(digits.path)
    root = tmp_path / "folders"
    chosen: list[int] = []
    for digit in range(10):
        picks = [i for i, y in enumerate(data.labels) if y == digit][:4]
        (root / str(digit)).mkdir(parents=True)
        for i in picks:
            (root / str(digit) / f"{i}.png").write_bytes(data.inputs[i])
            chosen.append(i)
    loaded = load_eval_set(digits, str(root), None)
    assert len(loaded.inputs) == 40 and loaded.labels.tolist() == [d for d in range(10) for _ in range(4)]
    assert run_utility(root, tmp_path / "out", "digits") == 0
    logits = clean_logits(digits, loaded.inputs)
    clean = float((logits.argmax(1) == loaded.labels).double().mean())
    assert float(clean_row(tmp_path / "out")["accuracy_mean"]) == pytest.approx(clean, abs=1e-6)


def test_unknown_class_folder_exits_2(tmp_path, capsys, digits):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(held_out(digits.path).inputs[0])
    assert run_utility(tmp_path, tmp_path / "out", "digits") == 2
    assert "unknown label 'cats'" in capsys.readouterr().err


def test_jsonl_with_label_names(tmp_path, capsys):
    model = preset("minilm-sentiment")
    data = held_out(model.path)
    rows = [
        {"text": t, "label": model.labels[y]} for t, y in zip(data.inputs[:40], data.labels[:40], strict=True)
    ]
    path = tmp_path / "tweets.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert run_utility(path, tmp_path / "out", "minilm-sentiment") == 0
    loaded = load_eval_set(model, str(path), None)
    logits = clean_logits(model, loaded.inputs)
    clean = float((logits.argmax(1) == loaded.labels).double().mean())
    assert float(clean_row(tmp_path / "out")["accuracy_mean"]) == pytest.approx(clean, abs=1e-6)

    path.write_text(json.dumps({"text": "great", "label": "ecstatic"}) + "\n")
    assert run_utility(path, tmp_path / "out2", "minilm-sentiment") == 2
    assert "unknown label 'ecstatic'" in capsys.readouterr().err


def test_image_and_mask_pairs(tmp_path, digits_seg):
    data = held_out(digits_seg.path)
    assert data.masks is not None
    root = tmp_path / "pairs"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(5):
        (root / "images" / f"scene{i}.png").write_bytes(data.inputs[i])
        buffer = io.BytesIO()
        Image.fromarray(data.masks[i].astype(np.uint8)).save(buffer, format="PNG")
        (root / "masks" / f"scene{i}.png").write_bytes(buffer.getvalue())
    loaded = load_eval_set(digits_seg, str(root), None)
    assert loaded.labels.shape == (5, *data.masks.shape[1:])
    assert run_utility(root, tmp_path / "out", "digits-seg") == 0
    cm = confusion(clean_logits(digits_seg, loaded.inputs).argmax(1), loaded.labels, len(digits_seg.labels))
    assert float(clean_row(tmp_path / "out")["accuracy_mean"]) == pytest.approx(accuracy(cm), abs=1e-6)


def test_mask_with_an_unknown_class_id_exits_2(tmp_path, capsys, digits_seg):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(held_out(digits_seg.path).inputs[0])
    Image.fromarray(np.full((64, 64), 40, dtype=np.uint8)).save(tmp_path / "masks" / "a.png")
    assert run_utility(tmp_path, tmp_path / "out", "digits-seg") == 2
    assert "class ids must lie in [0, 11)" in capsys.readouterr().err


def test_data_of_the_wrong_kind_exits_2(tmp_path, capsys, digits):
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps({"text": "a", "label": "0"}) + "\n")
    assert run_utility(path, tmp_path / "out", "digits") == 2
    assert "fits text-classification" in capsys.readouterr().err
