"""Demo tenants for `make run`: one free and one premium tenant, created once, keys printed each start.

The keys are kept in ``<state_dir>/demo-keys.json`` (mode 0600) because the store itself keeps only their
hashes; if the store no longer knows them (a wiped Redis) the tenants are created again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from service.errors import Unauthorized
from service.store import TenantStore
from service.tiers import TierRegistry

DEMO = (("demo-free", "free"), ("demo-premium", "premium"))


async def ensure_demo_tenants(
    store: TenantStore, tiers: TierRegistry, *, state_dir: Path, route: str, host: str, port: int
) -> dict[str, str]:
    """The demo tenants' keys (created if the store does not know them); ``route`` is the model's."""
    path = state_dir / "demo-keys.json"
    keys: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name, tier in DEMO:
        if tier not in tiers.current.tiers:
            tier = tiers.current.default_tier
        key = keys.get(name)
        if key is not None:
            try:
                await store.resolve_key(key)
                continue
            except Unauthorized:
                pass
        _, issued = await store.create_tenant(name, tier)
        keys[name] = issued.api_key
    _write_private(path, json.dumps(keys, indent=2))
    _announce(keys, host, port, route)
    return keys


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _announce(keys: dict[str, str], host: str, port: int, route: str) -> None:
    base = f"http://{host}:{port}"
    lines = ["", "aimserve demo tenants (keys kept in the state directory):"]
    lines += [f"  {name:13s} {key}" for name, key in keys.items()]
    lines += [
        "",
        f"  curl -s {base}/v1/me -H 'Authorization: Bearer {keys['demo-free']}'",
        f"  curl -s {base}{route} -H 'Authorization: Bearer {keys['demo-premium']}' "
        '-H \'Content-Type: application/json\' -d \'{"prompt": "Tell me a joke", "max_new_tokens": 40}\'',
        "",
    ]
    print("\n".join(lines), flush=True)
