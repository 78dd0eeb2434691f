"""A small closed-loop HTTP load generator: ``c`` keep-alive connections, each sending its next request as
soon as the previous answer arrived, for a fixed time.

Plain asyncio streams and pre-encoded requests, so the generator's own cost per request (a few tens of
microseconds) stays far below the servers' (it shares the CPU with them). Answers must carry a
``Content-Length`` (uvicorn's JSON responses do).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Requests answered 200 per second, latency percentiles in seconds, and non-200 answers."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_s: float
    p99_s: float

    def as_json(self) -> dict[str, float | int]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 2),
            "p50_ms": round(self.p50_s * 1000, 3),
            "p99_ms": round(self.p99_s * 1000, 3),
        }


def encode_posts(port: int, path: str, bodies: Sequence[object], token: str | None = None) -> list[bytes]:
    """One complete HTTP/1.1 POST per JSON body (keep-alive), ready to write."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    out = []
    for body in bodies:
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(data)}\r\n\r\n"
        )
        out.append(head.encode() + data)
    return out


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request, read its whole answer; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def drive(port: int, requests: Sequence[bytes], concurrency: int, seconds: float) -> LoadResult:
    """Run ``concurrency`` connections to one server for ``seconds``, cycling through ``requests``."""
    return await drive_spread([(port, requests)], concurrency, seconds)


async def drive_spread(
    targets: Sequence[tuple[int, Sequence[bytes]]], concurrency: int, seconds: float
) -> LoadResult:
    """``concurrency`` connections spread round-robin over ``targets`` (port, that server's requests), as a
    load balancer in front of replicas would; one result over all of them."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection(k: int) -> None:
        nonlocal errors
        port, requests = targets[k % len(targets)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status = await _exchange(reader, writer, requests[i % len(requests)])
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1
                i += concurrency
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return LoadResult(
        concurrency,
        len(latencies),
        errors,
        elapsed,
        len(latencies) / elapsed,
        statistics.median(ordered),
        p99,
    )
