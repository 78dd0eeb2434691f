"""Classification throughput through the dynamic batcher, as ratios measured in one run.

For each model (the ``digits`` CNN, where per-request overhead dominates, and the ``minilm-sentiment``
transformer, where compute dominates), same held-out inputs, same process:
- raw: the batched forward loop with no serving (batches of 32 prepared inputs, no modulation);
- batcher: 32 concurrent clients, one text per request, through `DynamicBatcher` + keyed per-row
  modulation (half the rows free tier σ = 2, half premium), answered individually (target >= 0.85x raw);
- one at a time: the same serving path with max_batch_size = 1 (batcher target >= 3x this);
- lone request: one client, one request at a time, through the batcher with the service's batching delay
  (AIM_MAX_WAIT_MS = 5 ms): median latency against the raw b = 1 forward in the same worker thread. An
  idle worker dispatches at once, so the ratio shows what the serving path adds to a lone request.

Run: ``python -m bench.serving [preset ...]``; writes bench/results/serving.json.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import write
from service.models import held_out, load_model
from service.modulation import RowSpec
from service.presets import build_preset
from service.serving.batcher import DynamicBatcher
from service.serving.predict import Row
from service.tasks import batched

CLIENTS = 32
PROJECTION = (12345, 67890)  # the semantic hash's projection key (any fixed key for a benchmark)
N = 1024
LONE = 200
MAX_WAIT_S = 0.005  # the service's default AIM_MAX_WAIT_MS


def raw_loop(model: Any, items: list[Any]) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), CLIENTS):
        model.forward(items[i : i + CLIENTS]).argmax(-1).tolist()
    return len(items) / (time.perf_counter() - start)


def _batcher(model: Any, max_batch: int) -> DynamicBatcher[Row, Any]:
    return DynamicBatcher[Row, Any](
        lambda rows: batched(model.kind).run_batch(model, rows, PROJECTION),
        max_batch_size=max_batch,
        max_wait_s=MAX_WAIT_S,
        max_queue=4096,
    )


async def lone(model: Any, items: list[Any]) -> tuple[float, float]:
    """Median seconds of one request alone: through the batcher, and the raw b = 1 forward + modulation."""
    batcher = _batcher(model, CLIENTS)
    await batcher.start()
    loop = asyncio.get_running_loop()
    served_s, raw_s = [], []
    with ThreadPoolExecutor(1) as pool:
        for i, item in enumerate(items):
            row = Row(item, RowSpec(2.0, (i, 17)), 1)
            t0 = time.perf_counter()
            await loop.run_in_executor(
                pool, lambda r=row: batched(model.kind).run_batch(model, [r], PROJECTION)
            )
            raw_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await batcher.submit([row])
            served_s.append(time.perf_counter() - t0)
    await batcher.stop()
    return statistics.median(served_s), statistics.median(raw_s)


async def served(model: Any, items: list[Any], max_batch: int) -> float:
    batcher = _batcher(model, max_batch)
    await batcher.start()
    queue = list(enumerate(items))

    async def client() -> None:
        while queue:
            i, item = queue.pop()
            spec = RowSpec(2.0 if i % 2 else 0.0, (i, 17))
            await batcher.submit([Row(item, spec, 1)])

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - start
    await batcher.stop()
    return len(items) / elapsed


def measure(name: str) -> dict[str, Any]:
    path = build_preset(name, Path(os.environ.get("AIM_STATE_DIR", ".aimserve")))
    model = load_model(path)
    inputs = list(held_out(path).inputs)
    items = [model.prepare(inputs[i % len(inputs)]) for i in range(N)]
    # The raw loop runs in a worker thread too, as the batcher's forward does: same execution context.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(raw_loop, model, items[:64]).result()  # warm-up
        raw = pool.submit(raw_loop, model, items).result()
    batched = asyncio.run(served(model, items, CLIENTS))
    single = asyncio.run(served(model, items[: N // 4], 1))
    lone_s, lone_raw_s = asyncio.run(lone(model, items[:LONE]))
    result = {
        "model": name,
        "requests": N,
        "clients": CLIENTS,
        "raw_forward_per_s": raw,
        "batcher_per_s": batched,
        "one_at_a_time_per_s": single,
        "batcher_vs_raw": batched / raw,
        "batcher_vs_one_at_a_time": batched / single,
        "lone_request_ms": lone_s * 1000,
        "lone_raw_forward_ms": lone_raw_s * 1000,
        "lone_vs_raw": lone_s / lone_raw_s,
    }
    for k, v in result.items():
        print(f"{k:26s} {v:.3f}" if isinstance(v, float) else f"{k:26s} {v}")
    return result


def main() -> None:
    names = sys.argv[1:] or ["digits", "minilm-sentiment"]
    print("wrote", write("serving", {"runs": [measure(n) for n in names]}))


if __name__ == "__main__":
    main()
