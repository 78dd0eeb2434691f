"""Why segmentation tiers keep the independent-draw σ: what one secret serves, against the expectation.

A segmentation row's noise is keyed per image (4 hash tables of its pooled features), one draw per pixel and
class, so a fidelity counted over pixels averages over many draws whatever the secret. This measures it:
the σ a ``target_fidelity`` tier gets (`fidelity_solver`: independent draws on the model's calibration
pixels), then the pixel fidelity the service's own `segment_batch` serves the held-out scenes under each of
``--secrets`` secrets (mean, sd, min, max).

    python -m bench.served_segmentation --out docs/figures/served-tiers-segmentation/summary.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench import common
from bench.voting import STATE
from service.api.components import fidelity_solver
from service.api.policy import row_spec
from service.models import held_out, load_model
from service.modulation.keys import derive_projection_key
from service.presets import build_preset
from service.serving.predict import Row, segment_batch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="digits-seg")
    parser.add_argument("--secrets", type=int, default=20)
    parser.add_argument("--images", type=int, default=200, help="held-out scenes served")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    model = load_model(build_preset(args.model, STATE))
    items = [model.prepare(x) for x in list(held_out(model.path).inputs)[: args.images]]
    tiers: dict[str, object] = {}
    for tier, target in (("free", 0.7), ("standard", 0.9)):
        sigma = fidelity_solver(model, b"any: independent draws do not depend on it")(tier, target)
        served = []
        for s in range(args.secrets):
            secret = f"bench-secret-{s}".encode()
            rows = [Row(item, row_spec(secret, tier, sigma, None), tag=tier) for item in items]
            results = [
                r
                for i in range(0, len(rows), 32)
                for r in segment_batch(model, rows[i : i + 32], derive_projection_key(secret))
            ]
            served.append(sum(r.agreeing_pixels for r in results) / sum(r.pixels for r in results))
        t = torch.tensor(served, dtype=torch.float64)
        stats = {"mean": t.mean(), "sd": t.std(), "min": t.min(), "max": t.max()}
        tiers[tier] = {"target": target, "sigma": round(sigma, 4)} | {
            k: round(float(v), 4) for k, v in stats.items()
        }
    result = {
        "model": args.model,
        "images": len(items),
        "secrets": args.secrets,
        "served_pixel_fidelity_over_secrets": tiers,
    }
    run = ("bench.served_segmentation", list(sys.argv[1:] if argv is None else argv), start, load_before)
    common.write_to(args.out, result, run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
