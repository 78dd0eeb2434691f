"""``aimserve calibrate --from-traffic URL --tier T``: re-solve a served tier's σ from its recent traffic.

A thin client of ``POST /admin/tiers/{tier}/calibrate`` (docs/api.md) with the admin token from
``AIM_ADMIN_TOKEN``: the service holds the sample of served outputs, so the work happens there.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from service.errors import BadInput
from service.evaluation.spec import check_fraction


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    if not args.tier:
        raise BadInput("--from-traffic needs --tier: the served tier whose σ to re-solve")
    if args.tiers is not None or args.target_accuracy is not None:
        raise BadInput(
            "--from-traffic re-solves a fidelity target on the server; drop --tiers/--target-accuracy"
        )
    token = os.environ.get("AIM_ADMIN_TOKEN")
    if not token:
        raise BadInput("--from-traffic calls the admin API: set AIM_ADMIN_TOKEN to the service's admin token")
    body: dict[str, Any] = {"apply": args.apply}
    if args.max_tenant_share is not None:
        if not 0.0 < args.max_tenant_share <= 1.0:
            raise BadInput(f"--max-tenant-share must be in (0, 1], got {args.max_tenant_share}")
        body["max_tenant_share"] = args.max_tenant_share
    if args.target_fidelity is not None:
        check_fraction(args.target_fidelity, setting="--target-fidelity")
        body["target_fidelity"] = args.target_fidelity
    url = f"{args.from_traffic.rstrip('/')}/admin/tiers/{args.tier}/calibrate"
    return url, body, token


def from_traffic_command(args: argparse.Namespace) -> int:
    """Print what the service found (and whether it applied it); exit 2 with its message on an error."""
    url, body, token = _request(args)
    try:
        reply = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120.0)
    except httpx.HTTPError as exc:
        raise BadInput(f"--from-traffic {args.from_traffic}: {type(exc).__name__}: {exc}") from None
    if reply.status_code != 200:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:200]
        raise BadInput(f"--from-traffic: the service answered {reply.status_code}: {message}")
    r = reply.json()
    print(f"sigma: {r['sigma']:.4f}")
    print(
        f"tier {r['tier']!r}: target_fidelity {r['target_fidelity']:g}; on {r['rows']} served outputs of "
        f"{r['tenants']} tenants (each at most {r['max_share']:g} of them) fidelity was "
        f"{r['fidelity_before']:.4f} at sigma {r['sigma_before']:.4f}, is {r['fidelity_after']:.4f} at "
        f"sigma {r['sigma']:.4f} ({r.get('draws', 'independent')} draws); applied: {r['applied']}"
    )
    return 0
