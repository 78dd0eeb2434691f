"""Cost of keyed per-row modulation, as ratios measured in one run.

1. modulate() of a (B, V) batch where every row has its own σ and key vs one plain ``torch.randn`` of
   the same shape, B in {1, 32, 256}, V in {10, 1000, 49152} (target: at most 3x);
2. modulate() vs the forward pass of a real model producing those logits: SmolLM2-135M (the
   ``smollm2-135m`` preset), one decoding step with a KV cache and one prefill of 64 tokens
   (target: under 2%); and what a greedy step costs the engines, which choose with
   `service.modulation.greedy.modulated_argmax` when no row samples: at σ 0.58 (the free tier as once
   solved on tweets), 1.0 and 1.066 (the shipped free tier, solved on chat calibration prompts), against
   the dense ``modulate(...).argmax(-1)``.

Run: ``python -m bench.modulation [--device cuda]``; writes bench/results/modulation[-<device>].json.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from bench.common import median_seconds, write
from service.modulation import ModulationBatch, RowSpec, modulate
from service.modulation.greedy import modulated_argmax
from service.serving.allocator import keep_freed_memory

SHAPES = [(b, v) for b in (1, 32, 256) for v in (10, 1000, 49152)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def keyed_vs_randn(device: torch.device) -> list[dict[str, float]]:
    rows = []
    for b, v in SHAPES:
        batch = ModulationBatch.build([RowSpec(0.5 + i % 4, (i, 7 * i)) for i in range(b)], v, device)
        logits = torch.randn(b, v, device=device)

        def plain() -> None:
            torch.randn(b, v, device=device)
            _sync(device)

        def keyed() -> None:
            modulate(logits, batch)
            _sync(device)

        t_plain, t_keyed = median_seconds(plain), median_seconds(keyed)
        rows.append(
            {
                "B": b,
                "V": v,
                "randn_ms": t_plain * 1e3,
                "modulate_ms": t_keyed * 1e3,
                "ratio": t_keyed / t_plain,
            }
        )
        print(
            f"B={b:4d} V={v:6d}  randn {t_plain * 1e3:9.4f} ms  modulate {t_keyed * 1e3:9.4f} ms  "
            f"ratio {t_keyed / t_plain:6.2f}"
        )
    return rows


def vs_forward(device: torch.device) -> list[dict[str, float | str]]:
    from transformers import AutoModelForCausalLM

    from service.presets import build_preset

    path = build_preset("smollm2-135m", Path(os.environ.get("AIM_STATE_DIR", ".aimserve")))
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(device).eval()
    from transformers import AutoTokenizer

    text = AutoTokenizer.from_pretrained(path, local_files_only=True)(TEXT)["input_ids"]
    out = []
    for b in (1, 8, 32):
        # Real text, so the next-token logits are as peaked as in serving: row r reads tokens r .. r + 63.
        ids = torch.tensor([text[r : r + 64] for r in range(b)], device=device)
        batch = ModulationBatch.build(
            [RowSpec(1.0, (i, i + 1)) for i in range(b)], model.config.vocab_size, device
        )
        with torch.inference_mode():
            prefill = model(ids, use_cache=True)
            cache, logits = prefill.past_key_values, prefill.logits[:, -1, :]
            step_ids = logits.argmax(-1, keepdim=True)

            def forward_prefill() -> None:
                model(ids)
                _sync(device)

            def forward_step() -> None:
                model(step_ids, past_key_values=cache, use_cache=True)
                cache.crop(-1)  # drop the step just added: every timing sees a 64-token cache
                _sync(device)

            def mod() -> None:
                modulate(logits, batch, position=64)
                _sync(device)

            t_pre = median_seconds(forward_prefill, repeats=3)
            t_step = median_seconds(forward_step, repeats=5)
            t_mod = median_seconds(mod)
            t_dense = median_seconds(lambda: (modulate(logits, batch, position=64).argmax(-1), _sync(device)))
            greedy = {sigma: _greedy_seconds(logits, sigma, device) for sigma in GREEDY_SIGMAS}
        row: dict[str, float | str] = {
            "B": b,
            "model": "SmolLM2-135M",
            "prefill_ms": t_pre * 1e3,
            "decode_step_ms": t_step * 1e3,
            "modulate_ms": t_mod * 1e3,
            "share_of_decode_step": t_mod / t_step,
            "share_of_prefill": t_mod / t_pre,
            "dense_argmax_ms": t_dense * 1e3,
        }
        for sigma, t in greedy.items():
            row[f"greedy_sigma_{sigma}_ms"] = t * 1e3
            row[f"greedy_sigma_{sigma}_share_of_decode_step"] = t / t_step
        out.append(row)
        print(
            f"B={b:3d} decode step {t_step * 1e3:8.2f} ms  prefill {t_pre * 1e3:8.2f} ms  "
            f"modulate {t_mod * 1e3:7.3f} ms = {100 * t_mod / t_step:5.2f}% of a step, "
            f"{100 * t_mod / t_pre:5.2f}% of a prefill; greedy step "
            + ", ".join(f"σ {s}: {100 * t / t_step:5.2f}%" for s, t in greedy.items())
        )
    return out


GREEDY_SIGMAS = (0.58, 1.0, 1.066)
TEXT = (
    "The city council met on Tuesday evening to discuss the new budget for public transport. After a long "
    "debate, the members agreed to extend the tram line to the northern districts, where thousands of "
    "families have moved in recent years. The mayor said the project would create jobs and reduce traffic "
    "in the centre, but several councillors warned that the costs could rise if the work is delayed. "
    "Residents who attended the meeting asked when the first trams would run, and the engineers answered "
    "that construction should start next spring if the funding is approved by the regional government."
)


def _greedy_seconds(logits: torch.Tensor, sigma: float, device: torch.device) -> float:
    batch = ModulationBatch.build(
        [RowSpec(sigma, (i, i + 1)) for i in range(logits.shape[0])], logits.shape[1], device
    )
    return median_seconds(lambda: (modulated_argmax(logits, batch, position=64), _sync(device)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument(
        "--default-allocator", action="store_true", help="glibc's defaults instead of the server's setting"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    kept = not args.default_allocator and keep_freed_memory()  # as `aimserve serve` runs
    payload: dict[str, object] = {
        "allocator": "freed memory kept" if kept else "glibc defaults",
        "keyed_vs_randn": keyed_vs_randn(device),
    }
    if not args.skip_model:
        payload["vs_forward"] = vs_forward(device)
    suffix = ("" if device.type == "cpu" else f"-{device.type}") + ("" if kept else "-default-allocator")
    print("wrote", write(f"modulation{suffix}", payload))


if __name__ == "__main__":
    main()
