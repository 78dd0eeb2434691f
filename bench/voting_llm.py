"""The voting attack on the LLM (smollm2-135m): agreement of free-tier greedy text with premium's.

A free tenant sends one chat prompt many ways and votes token by token over the k completions (the
majority token at each position). Kinds: ``decoding`` (dummy stop strings and max_new_tokens rerolls, the
attack of issue #11), ``second_account`` (k accounts), ``punctuation`` (a trailing mark on the prompt,
which does change what the model sees). Measure: the share of premium's first N tokens matched position by
position (single shot vs voted). Rows go through the service's `GenerationEngine` with the gateway's keys
(`row_spec` + `derive_projection_key`); ``keying="digest"`` uses the keying before #11 (HMAC of tenant,
prompt and decoding fields).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench import common
from service.api.components import fidelity_solver
from service.api.policy import row_spec
from service.models import held_out, load_model
from service.modulation import ModulationBatch, RowSpec, derive_row_key, input_digest, modulate
from service.modulation.keys import derive_projection_key
from service.modulation.semantic import prompt_codes
from service.presets import build_preset
from service.serving.generation import BuiltinEngine, GenerationRequest, collect, encode_chat
from service.tiers import TierRegistry

N = 12
MARKS = [" .", " !", "?", " ?", "...", ",", ";", " :)", "!!", " -", " *", " ~", "?!", " ..", " ;)", " :D"]


def _request(
    ids: tuple[int, ...], sigma: float, secret: bytes, keying: str, i: int, kind: str
) -> GenerationRequest:
    """Variant i of one prompt as the gateway would build it (``keying="digest"``: as before #11)."""
    stop = (f"QQZZ{i}",) if kind == "decoding" else ()
    max_new = N + (i if kind == "decoding" else 0)
    if keying == "semantic":
        spec = row_spec(secret, "free", sigma, None)
        return GenerationRequest(ids, max_new, spec, stop=stop, projection=derive_projection_key(secret))
    tenant = f"tenant-{i}" if kind == "second_account" else "tenant-0"
    decoding = json.dumps([0.0, None, list(stop)]).encode()
    digest = input_digest(struct.pack(f"<{len(ids)}I", *ids), decoding)
    return GenerationRequest(ids, max_new, RowSpec(sigma, derive_row_key(secret, tenant, digest)), stop=stop)


def _vote(seqs: list[tuple[int, ...]]) -> list[int]:
    """The majority token at each position over the completions that reach it."""
    voted = []
    for t in range(N):
        at = [s[t] for s in seqs if len(s) > t]
        if not at:
            break
        voted.append(Counter(at).most_common(1)[0][0])
    return voted


def _agree(seq: Sequence[int], ref: Sequence[int]) -> float:
    return sum(1 for a, b in zip(seq[:N], ref[:N], strict=False) if a == b) / max(1, min(N, len(ref)))


def _scores(
    per_item: list[list[tuple[int, ...]]], premium: list[tuple[int, ...]], ks: Sequence[int]
) -> dict[str, float]:
    n = len(premium)
    row = {"single": sum(_agree(outs[0], ref) for outs, ref in zip(per_item, premium, strict=True)) / n}
    for k in ks:
        row[f"vote_{k}"] = (
            sum(_agree(_vote(outs[:k]), ref) for outs, ref in zip(per_item, premium, strict=True)) / n
        )
    row["max_gain"] = max(v for key, v in row.items() if key != "single") - row["single"]
    return row


async def _generate(engine: BuiltinEngine, reqs: list[GenerationRequest]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for start in range(0, len(reqs), 16):
        streams = [await engine.submit(r) for r in reqs[start : start + 16]]
        out += [d.token_ids for d in await asyncio.gather(*(collect(s) for s in streams))]
    return out


def draw_correlations(
    model: Any, prompts: list[tuple[int, ...]], variants: list[tuple[int, ...]], secret: bytes
) -> dict[str, float]:
    """Colliding share of tables (draw correlation): unrelated prompts; each prompt vs its variant."""
    projection = derive_projection_key(secret)
    with torch.inference_mode():
        first = [model(input_ids=torch.tensor([p])).logits[:, -1] for p in [*prompts, *variants]]
    codes = prompt_codes(torch.cat(first), projection)
    base, var = codes[: len(prompts)], codes[len(prompts) :]
    pairs = (base[:, None] == base[None]).float().mean(-1)
    off = ~torch.eye(len(prompts), dtype=torch.bool)
    return {"unrelated": pairs[off].mean().item(), "punctuation": (var == base).float().mean().item()}


def keying_cost(model: Any, sigma: float, secret: bytes) -> dict[str, float]:
    """Per decoding step of 8 rows: modulate with the semantic mixture vs one key; codes per prefill."""
    logits = torch.randn(8, model.config.vocab_size) * 3
    spec = row_spec(secret, "free", sigma, None)
    codes = prompt_codes(logits, derive_projection_key(secret))
    mixture = ModulationBatch.build([spec] * 8, logits.shape[1], "cpu", codes)
    single = ModulationBatch.build([spec] * 8, logits.shape[1])
    pos = torch.arange(8, dtype=torch.int32)
    return {
        "modulate_semantic_s": common.median_seconds(lambda: modulate(logits, mixture, pos)),
        "modulate_single_key_s": common.median_seconds(lambda: modulate(logits, single, pos)),
        "prompt_codes_s": common.median_seconds(lambda: prompt_codes(logits, derive_projection_key(secret))),
    }


def run_llm(
    state: Path, items: int, ks: Sequence[int], keyings: Sequence[str], secret: bytes
) -> dict[str, Any]:
    path = Path(build_preset("smollm2-135m", state))
    loaded = load_model(path)
    tiers_file = Path(__file__).resolve().parent.parent / "tiers.yaml"
    registry = TierRegistry(tiers_file, fidelity_solver(loaded, secret))
    registry.reload_or_raise()
    sigma = registry.tier_for("free").sigma
    questions = [str(x) for x in held_out(path).inputs[:items]]
    tok = loaded.tokenizer
    kmax = max(ks)

    def prompt(question: str, i: int, kind: str) -> tuple[int, ...]:
        if kind == "punctuation" and i > 0:
            question += MARKS[(i - 1) % len(MARKS)] * (1 + (i - 1) // len(MARKS))
        return tuple(encode_chat(tok, [{"role": "user", "content": question}]))

    async def main() -> dict[str, Any]:
        engine = BuiltinEngine(
            loaded.model, tok, device="cpu", max_batch_size=16, max_wait_ms=5, max_queue=4096
        )
        await engine.start()
        try:
            base = [prompt(q, 0, "") for q in questions]
            premium = await _generate(engine, [GenerationRequest(p, N, RowSpec(0.0, (0, 0))) for p in base])
            result: dict[str, Any] = {"sigma_free": sigma, "items": len(base), "tokens": N}
            for keying in keyings:
                result[keying] = {}
                for kind in ("decoding", "second_account", "punctuation"):
                    reqs = [
                        _request(prompt(q, i, kind), sigma, secret, keying, i, kind)
                        for q in questions
                        for i in range(kmax)
                    ]
                    outs = await _generate(engine, reqs)
                    per_item = [outs[j * kmax : (j + 1) * kmax] for j in range(len(base))]
                    result[keying][kind] = _scores(per_item, premium, ks)
            return result
        finally:
            await engine.stop()

    out = asyncio.run(main())
    first_variant = [prompt(q, 1, "punctuation") for q in questions]
    out["draw_correlation"] = draw_correlations(
        loaded.model, [prompt(q, 0, "") for q in questions], first_variant, secret
    )
    out["keying_cost"] = keying_cost(loaded.model, sigma, secret)
    return out
