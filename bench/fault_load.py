"""The load side of bench/faults.py: classify clients, the admin writer, and how answers are counted."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from typing import Any

import httpx

ADMIN = "bench-admin-token-0123456789"
THINK_S = 0.05  # each client's pause between requests


class Tally:
    """Outcomes per phase; ``phase`` is switched by the scenario while the clients run."""

    def __init__(self) -> None:
        self.phase = "warmup"
        self.counts: dict[str, Counter[str]] = {}
        self.latency: dict[str, list[float]] = {}
        self.refusals: dict[str, Counter[str]] = {}  # "status code" of each refusal, per phase

    def add(self, outcome: str, seconds: float, response: httpx.Response | None = None) -> None:
        self.counts.setdefault(self.phase, Counter())[outcome] += 1
        if outcome.startswith("served"):
            self.latency.setdefault(self.phase, []).append(seconds)
        if outcome == "refused" and response is not None:
            self.refusals.setdefault(self.phase, Counter())[answer(response)] += 1


def answer(response: httpx.Response) -> str:
    """The status, with the error code of a 429 or 503 (e.g. ``503 dependency_unavailable``)."""
    code = str(response.status_code)
    if response.status_code in (429, 503):
        code += " " + response.json()["error"]["code"]
    return code


def outcome(response: httpx.Response | None) -> str:
    if response is None:
        return "failed"
    if response.is_success:
        return "served"
    if response.status_code in (429, 503) and "Retry-After" in response.headers:
        return "refused"
    return "failed"


async def classify_client(
    i: int,
    http: httpx.AsyncClient,
    urls: list[str],
    keys: list[str],
    tally: Tally,
    stop: asyncio.Event,
) -> None:
    n = i
    while not stop.is_set():
        n += 1
        key = keys[n % len(keys)]
        start = time.perf_counter()
        response, failover = None, False
        for attempt in (0, 1):  # a refused connection (never reached a replica) goes to the other one
            try:
                response = await http.post(
                    f"{urls[(n + attempt) % 2]}/v1/classify",
                    json={"inputs": [f"review {n % 50}: quite good"]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                break
            except httpx.ConnectError:
                failover = True
            except httpx.HTTPError:
                break  # sent, then cut or timed out: failed, not retried (it may have run)
        result = outcome(response)
        tally.add(
            result + ("_after_failover" if failover and result == "served" else ""),
            time.perf_counter() - start,
            response,
        )
        await asyncio.sleep(THINK_S)


async def admin_writer(
    http: httpx.AsyncClient, urls: list[str], writes: dict[str, Any], stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        key = str(uuid.uuid4())
        response = None
        with contextlib.suppress(httpx.HTTPError):
            response = await http.post(
                f"{urls[n % 2]}/admin/tenants",
                json={"name": f"w{n}", "tier": "premium"},
                headers={"Authorization": f"Bearer {ADMIN}", "Idempotency-Key": key},
            )
        code = "no answer" if response is None else answer(response)
        writes["answers"][code] += 1
        if response is not None and response.status_code == 201:
            writes["acknowledged"][key] = response.json()["tenant"]["id"]
        elif code != "503 dependency_unavailable":  # maybe applied: retried with the same key at the end
            writes["pending"][key] = f"w{n}"
        await asyncio.sleep(0.5)


async def settle_writes(http: httpx.AsyncClient, url: str, writes: dict[str, Any]) -> dict[str, int]:
    """Retry every ambiguous create with its own key, then check that every acknowledged one exists."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for key, name in writes["pending"].items():
        r = await http.post(
            f"{url}/admin/tenants",
            json={"name": name, "tier": "premium"},
            headers={**headers, "Idempotency-Key": key},
        )
        if r.status_code == 201:
            writes["acknowledged"][key] = r.json()["tenant"]["id"]
    tenants = (await http.get(f"{url}/admin/tenants", headers=headers)).json()["tenants"]
    present = {t["id"] for t in tenants}
    names = Counter(t["name"] for t in tenants)
    acknowledged = set(writes["acknowledged"].values())
    return {
        "attempted": sum(writes["answers"].values()),
        "acknowledged": len(acknowledged),
        "retried_with_same_key": len(writes["pending"]),
        "lost": len(acknowledged - present),
        "duplicated": sum(1 for name, n in names.items() if name.startswith("w") and n > 1),
    }
