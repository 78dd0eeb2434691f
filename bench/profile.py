"""Summaries of ``py-spy record --format raw`` output: where the live service's samples go.

Each line of the raw (collapsed) format is ``frame;frame;...;frame <count>``, outermost first, one line per
distinct stack. py-spy samples threads blocked in C (a pool worker on its queue, the loop in epoll) as
active: those are counted as waiting. :func:`summarize` gives, of the other (busy) samples, the share in
each bucket (the first bucket whose pattern matches any frame of the stack wins, so order is priority) and
the heaviest leaf frames.

Run: ``python -m bench.profile <raw file> ...`` (buckets, heaviest leaves, then the request path's frames by
inclusive share).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: Leaf frames of a thread that is waiting, not working (py-spy samples threads blocked in C as active).
IDLE_LEAF = re.compile(
    r"_worker \(concurrent/futures/thread|Condition\.wait|EpollSelector\.select|Event\.wait"
)

#: (bucket, pattern on a frame) in priority order: model work first, then the layers around it.
BUCKETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("modulation", r"service/modulation/"),
        ("model forward", r"torch/nn/|transformers/models/"),
        ("preprocessing (tokenizer, image processor)", r"tokenization|image_processing|PIL/|service/models/"),
        ("serving engine (batcher, predict)", r"service/serving/"),
        ("Redis client", r"redis/"),
        ("serialisation (pydantic, json)", r"pydantic|json/|fastapi/encoders|jsonable"),
        ("FastAPI / Starlette", r"fastapi/|starlette/"),
        ("uvicorn / HTTP protocol", r"uvicorn/|h11/|httptools"),
        ("aimserve request path", r"service/"),
        ("asyncio event loop", r"asyncio/|selectors"),
    )
)


def _stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def summarize(path: Path, top: int = 8) -> dict[str, Any]:
    """``{"samples", "idle_share", "buckets": {name: share}, "top_leaves": [[frame, share], ...]}``.

    Busy samples are those whose leaf is not a wait (`IDLE_LEAF`); buckets and leaves are shares of them.
    """
    stacks = _stacks(path)
    total = sum(stacks.values()) or 1
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    idle = 0
    for frames, n in stacks.items():
        if IDLE_LEAF.search(frames[-1]):
            idle += n
            continue
        buckets[next((b for b, rx in BUCKETS if any(rx.search(f) for f in frames)), "other")] += n
        leaves[frames[-1]] += n
    busy = max(total - idle, 1)
    return {
        "samples": total,
        "idle_share": round(idle / total, 3),
        "buckets": {name: round(n / busy, 3) for name, n in buckets.most_common()},
        "top_leaves": [[frame, round(n / busy, 3)] for frame, n in leaves.most_common(top)],
    }


#: Frames of the request path named in the inclusive view (the layers between the socket and the model).
REQUEST_PATH = re.compile(r"service/|fastapi/|starlette/|redis/|uvicorn/|h11/|httptools|pydantic")


def inclusive(path: Path, top: int = 40) -> list[tuple[str, float]]:
    """Request-path frames by inclusive share of the busy samples (a frame counts once per stack)."""
    stacks = _stacks(path)
    busy = {frames: n for frames, n in stacks.items() if not IDLE_LEAF.search(frames[-1])}
    total = max(sum(busy.values()), 1)
    shares: Counter[str] = Counter()
    for frames, n in busy.items():
        for frame in set(frames):
            if REQUEST_PATH.search(frame):
                shares[frame] += n
    return [(frame, round(n / total, 3)) for frame, n in shares.most_common(top)]


def main(argv: list[str]) -> int:
    for name in argv:
        s = summarize(Path(name))
        print(f"{name}: {s['samples']} samples, {s['idle_share']:.1%} waiting; shares of the busy ones:")
        for bucket, share in s["buckets"].items():
            print(f"  {share:6.1%}  {bucket}")
        for frame, share in s["top_leaves"]:
            print(f"  leaf {share:6.1%}  {frame}")
        for frame, share in inclusive(Path(name)):
            print(f"  incl {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
