"""The LLM σ sweep on multiple-choice questions, scored from the first answer token's logits.

Scoring: the prompt is one user turn through the chat template (`Choice.prompt`: question, lettered
options, "Answer with the letter of the correct option only."); the model's answer is the option letter
("A", "B", … as single tokens) with the highest logit at the first assistant step, among that question's
letters only. Logits once, noise many times: the model runs once per question and every σ and repeat
applies the serving path's own `modulate` (position 0, the first decoding step) to the stored
full-vocabulary logits before the argmax over the letters. The noise is independent per logit, so this
is exactly the letter a tenant of that σ would be given if decoding were restricted to the letters, and
the exact curve is the theory module's top-1 probability over the letter logits alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from service.errors import BadInput
from service.evaluation.choices import LETTERS, Choice
from service.evaluation.sampling import chunk_rows, repeat_keys
from service.evaluation.utility import exact_curves
from service.modulation import ModulationBatch, RowSpec, modulate

PAD_LOGIT = -1.0e4  # fills the letters a question does not have: never the top-1 at any σ ≤ 100


def letter_ids(tokenizer: object, count: int) -> list[int]:
    """Token ids of the first ``count`` option letters; BadInput when a letter is not one token."""
    ids: list[int] = []
    for letter in LETTERS[:count]:
        encoded = tokenizer.encode(letter, add_special_tokens=False)  # type: ignore[attr-defined]
        if len(encoded) != 1:
            raise BadInput(f"the tokenizer splits option letter {letter!r} into {len(encoded)} tokens")
        ids.append(int(encoded[0]))
    return ids


def next_token_logits(loaded: object, choices: Sequence[Choice], *, progress: bool) -> torch.Tensor:
    """(N, V) float32 clean logits of the first assistant token for every question (one forward each)."""
    from service.serving.generation import encode_chat

    model, tok = loaded.model, loaded.tokenizer  # type: ignore[attr-defined]
    device = loaded.device  # type: ignore[attr-defined]
    rows: list[torch.Tensor] = []
    with torch.inference_mode():
        for c in tqdm(choices, desc="model forward", unit="question", disable=not progress):
            ids = encode_chat(tok, [{"role": "user", "content": c.prompt()}])
            out = model(torch.tensor([ids], device=device)).logits[0, -1]
            rows.append(out.float().cpu())
    return torch.stack(rows)


def option_logits(
    logits: torch.Tensor, choices: Sequence[Choice], ids: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) logits of each question's letters (``PAD_LOGIT`` past its options) and its (N, K) mask."""
    width = max(len(c.options) for c in choices)
    index = torch.tensor([list(ids[:width])] * len(choices), dtype=torch.int64)
    mask = torch.tensor([[k < len(c.options) for k in range(width)] for c in choices])
    picked = logits.gather(1, index)
    return picked.masked_fill(~mask, PAD_LOGIT), mask


def sampled_passes(
    logits: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, sigma: float, repeat: int
) -> torch.Tensor:
    """(N,) letter chosen by each question under keyed modulation at ``sigma``, repeat ``repeat``."""
    keys = repeat_keys(len(logits), repeat)
    step = chunk_rows(logits)
    picks: list[torch.Tensor] = []
    for start in range(0, len(logits), step):
        part = slice(start, start + step)
        batch = ModulationBatch.build([RowSpec(sigma, k) for k in keys[part]], logits.shape[1])
        noisy = modulate(logits[part], batch, position=0).gather(1, index[part])
        picks.append(noisy.masked_fill(~mask[part], float("-inf")).argmax(1))
    return torch.cat(picks)


def choice_table(
    logits: torch.Tensor,
    choices: Sequence[Choice],
    ids: Sequence[int],
    sigmas: Sequence[float],
    repeats: int,
    *,
    progress: bool = False,
) -> list[dict[str, float | int | str]]:
    """One row per (task, σ), tasks in first-seen order then "all".

    Columns: task, sigma, questions, chance (mean of 1/options), accuracy_exact, accuracy_mean,
    accuracy_std (over repeats), accuracy_se (standard error of sampled mean - exact, `Curve.tolerance_se`),
    fidelity_exact, fidelity_mean (agreement with the clean letter), repeats.
    """
    z, mask = option_logits(logits, choices, ids)
    index = torch.tensor([list(ids[: z.shape[1]])] * len(choices), dtype=torch.int64)
    y = torch.tensor([c.answer for c in choices])
    clean = z.argmax(1)
    right = torch.zeros(len(sigmas), repeats, len(choices), dtype=torch.bool)
    agree = torch.zeros_like(right)
    with tqdm(total=len(sigmas) * repeats, desc="σ sweep", unit="pass", disable=not progress) as bar:
        for r in range(repeats):
            for i, sigma in enumerate(sigmas):
                pred = sampled_passes(logits, index, mask, sigma, r)
                right[i, r], agree[i, r] = pred == y, pred == clean
                bar.update(1)
    tasks = list(dict.fromkeys(c.task for c in choices))
    rows: list[dict[str, float | int | str]] = []
    for task in [*tasks, "all"] if len(tasks) > 1 else tasks:
        sel = torch.tensor([task in ("all", c.task) for c in choices])
        acc, fid = exact_curves(z[sel], y[sel], sigmas)
        chance = float(torch.tensor([1.0 / len(c.options) for c in choices])[sel].mean())
        for i, sigma in enumerate(sigmas):
            per_pass = right[i][:, sel].double().mean(1)
            rows.append({
                "task": task, "sigma": sigma, "questions": int(sel.sum()), "chance": chance,
                "accuracy_exact": acc.value[i], "accuracy_mean": float(per_pass.mean()),
                "accuracy_std": float(per_pass.std()) if repeats > 1 else 0.0,
                "accuracy_se": acc.tolerance_se(i, repeats),
                "fidelity_exact": fid.value[i], "fidelity_mean": float(agree[i][:, sel].double().mean()),
                "repeats": repeats,
            })  # fmt: skip
    return rows
