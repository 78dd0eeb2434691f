"""The voting attack on the LLM (smollm2-135m): agreement of free-tier greedy text with premium's.

A free tenant sends one chat prompt many ways and votes token by token over the k completions (the
majority token at each position). Kinds: ``decoding`` (dummy stop strings and max_new_tokens rerolls, the
attack of issue #11), ``second_account`` (k accounts), and the text variants of bench/variants.py that
fit a chat prompt (punctuation, emoji, prefix, homoglyph: they change what the model sees). Measure: the
share of premium's first N greedy tokens on the original prompt matched position by position (single
shot vs voted), per prompt, with paired standard errors (`bench.voting_stats`). Keyings: ``semantic``
(the service's `GenerationEngine` with the gateway's keys: `row_spec` + `derive_projection_key`),
``premium`` (σ = 0, the baseline: how far the clean model's own vote over the same variants moves), and
``digest`` (the keying before #11: HMAC of tenant, prompt and decoding fields).
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

from bench import common, variants, voting_stats
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
KINDS = ("decoding", "second_account", "punctuation", "emoji", "prefix", "homoglyph")


def _request(
    ids: tuple[int, ...], sigma: float, secret: bytes, keying: str, i: int, kind: str
) -> GenerationRequest:
    """Variant i of one prompt as the gateway would build it (``keying="digest"``: as before #11)."""
    stop = (f"QQZZ{i}",) if kind == "decoding" else ()
    max_new = N + (i % 2 if kind == "decoding" else 0)  # tokens past N are not scored: bounded cost
    if keying == "premium":
        return GenerationRequest(ids, max_new, RowSpec(0.0, (0, 0)), stop=stop)
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
    per_item: list[list[tuple[int, ...]]], ref: list[tuple[int, ...]], ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per prompt (N,): agreement with ``ref`` of the first completion and of the vote over the first k."""
    out = {"single": torch.tensor([_agree(outs[0], r) for outs, r in zip(per_item, ref, strict=True)])}
    for k in ks:
        out[f"vote_{k}"] = torch.tensor(
            [_agree(_vote(outs[:k]), r) for outs, r in zip(per_item, ref, strict=True)]
        )
    return out


def _same_attack(
    free: list[list[tuple[int, ...]]], premium: list[list[tuple[int, ...]]], ks: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per k: agreement of the free vote with premium's vote over the same variants, minus the free
    single shot's with premium's single shot (paired): does voting close the gap to what premium's
    tenant would get by the same attack?"""
    single = torch.tensor([_agree(f[0], p[0]) for f, p in zip(free, premium, strict=True)])
    out = {}
    for k in ks:
        voted = torch.tensor([_agree(_vote(f[:k]), _vote(p[:k])) for f, p in zip(free, premium, strict=True)])
        out[f"vote_{k}"] = {"single": single.double().mean().item(), **voting_stats.paired(voted - single)}
    return out


async def _generate(engine: BuiltinEngine, reqs: list[GenerationRequest]) -> list[tuple[int, ...]]:
    """All requests at once: the engine batches them (continuous batching, up to its batch size)."""
    streams = [await engine.submit(r) for r in reqs]
    return [d.token_ids for d in await asyncio.gather(*(collect(s) for s in streams))]


def draw_correlations(
    model: Any, prompts: list[tuple[int, ...]], by_kind: dict[str, list[tuple[int, ...]]], secret: bytes
) -> dict[str, float]:
    """Colliding share of tables (draw correlation): unrelated prompts; each prompt vs its first variant
    of each kind in ``by_kind``."""
    projection = derive_projection_key(secret)

    def codes(ps: list[tuple[int, ...]]) -> torch.Tensor:
        with torch.inference_mode():
            first = [model(input_ids=torch.tensor([p])).logits[:, -1] for p in ps]
        return prompt_codes(torch.cat(first), projection)

    base = codes(prompts)
    pairs = (base[:, None] == base[None]).float().mean(-1)
    off = ~torch.eye(len(prompts), dtype=torch.bool)
    out = {"unrelated": pairs[off].mean().item()}
    for kind, var in by_kind.items():
        out[kind] = (codes(var) == base).float().mean().item()
    return out


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
    state: Path,
    items: int,
    ks: Sequence[int],
    keyings: Sequence[str],
    secret: bytes,
    kinds: Sequence[str] = KINDS,
    batch: int = 32,
    offset: int = 0,
) -> dict[str, Any]:
    """Per kind and keying: agreement with premium single-shot and voted (`voting_stats.summary`, paired
    ``gains``); with ``semantic`` and ``premium``: ``vs_premium`` and ``same_attack`` per kind."""
    path = Path(build_preset("smollm2-135m", state))
    loaded = load_model(path)
    tiers_file = Path(__file__).resolve().parent.parent / "tiers.yaml"
    registry = TierRegistry(tiers_file, fidelity_solver(loaded, secret))
    registry.reload_or_raise()
    sigma = registry.tier_for("free").sigma
    questions = [str(x) for x in held_out(path).inputs[offset : offset + items]]  # a split run's share
    tok = loaded.tokenizer
    kmax = max(ks)

    def prompts(question: str, kind: str) -> list[tuple[int, ...]]:
        make = variants.TEXT_KINDS.get(kind)
        texts = [question] * kmax if make is None else [question, *make(question, kmax - 1)]
        return [tuple(encode_chat(tok, [{"role": "user", "content": t}])) for t in texts]

    async def main() -> dict[str, Any]:
        engine = BuiltinEngine(
            loaded.model, tok, device="cpu", max_batch_size=batch, max_wait_ms=5, max_queue=1 << 16
        )
        await engine.start()
        try:
            base = [prompts(q, "second_account")[0] for q in questions]
            ref = await _generate(engine, [GenerationRequest(p, N, RowSpec(0.0, (0, 0))) for p in base])
            result: dict[str, Any] = {"sigma_free": sigma, "items": len(base), "offset": offset, "tokens": N}
            for kind in kinds:
                asked = [(i, p) for q in questions for i, p in enumerate(prompts(q, kind))]
                seqs: dict[str, list[list[tuple[int, ...]]]] = {}
                for keying in keyings:
                    reqs = [_request(p, sigma, secret, keying, i, kind) for i, p in asked]
                    outs = await _generate(engine, reqs)
                    seqs[keying] = [outs[j * kmax : (j + 1) * kmax] for j in range(len(base))]
                    scores = _scores(seqs[keying], ref, ks)
                    summary = {**voting_stats.summary(scores), "gains": voting_stats.gains(scores)}
                    result.setdefault(keying, {})[kind] = summary
                if "semantic" in seqs and "premium" in seqs:
                    free, premium = (_scores(seqs[k], ref, ks) for k in ("semantic", "premium"))
                    result.setdefault("vs_premium", {})[kind] = voting_stats.versus_premium(free, premium)
                    same = _same_attack(seqs["semantic"], seqs["premium"], ks)
                    result.setdefault("same_attack", {})[kind] = same
                print(kind, "done", flush=True)
            return result
        finally:
            await engine.stop()

    out = asyncio.run(main())
    text_kinds = [k for k in kinds if k in variants.TEXT_KINDS]
    first = {kind: [prompts(q, kind)[1] for q in questions] for kind in text_kinds}
    base = [prompts(q, "second_account")[0] for q in questions]
    out["draw_correlation"] = draw_correlations(loaded.model, base, first, secret)
    out["keying_cost"] = keying_cost(loaded.model, sigma, secret)
    return out
