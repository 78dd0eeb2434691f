"""`aimserve`: serve a model, build presets, run the paper's experiments, calibrate tiers."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from service.errors import AimError


def _serve(args: argparse.Namespace) -> int:
    from service.api.app import create_app
    from service.api.builder import build_components
    from service.api.components import Components
    from service.api.demo import ensure_demo_tenants
    from service.api.server import serve
    from service.settings import Settings, parse_engine

    settings = Settings.from_env()
    if args.engine is not None:
        settings = dataclasses.replace(settings, engine=parse_engine(args.engine, "--engine"))
    tiers = Path(args.tiers)
    print(metrics_hint(settings.state_dir, args.host, args.port), file=sys.stderr)

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[Components]:
        async with build_components(settings, tiers, model=args.model, task=args.task) as c:
            if args.demo_tenants:
                route, state_dir = c.model.kind.route, settings.state_dir
                await ensure_demo_tenants(
                    c.store, c.tiers, state_dir=state_dir, route=route, host=args.host, port=args.port
                )
            yield c

    app = create_app(factory, max_body_bytes=settings.max_body_bytes)
    serve(app, host=args.host, port=args.port, log_level=args.log_level, grace_s=settings.shutdown_grace_s)
    return 0


def metrics_hint(state_dir: Path, host: str, port: int) -> str:
    """How an operator reads /metrics (never the token itself: it may end up in a shared log)."""
    from service.settings import METRICS_TOKEN_FILE

    where = (
        "$AIM_METRICS_TOKEN"
        if os.environ.get("AIM_METRICS_TOKEN")
        else f"$(cat {state_dir / METRICS_TOKEN_FILE})"
    )
    return f'aimserve: /metrics is for operators: curl -H "Authorization: Bearer {where}" http://{host}:{port}/metrics'


def _presets(args: argparse.Namespace) -> int:
    from service.presets import PRESETS, build_preset
    from service.settings import Settings

    state_dir = Settings.from_env().state_dir
    names = [args.name]
    if args.name == "all":  # every preset that can be built here and is not slow; the others are named
        reasons = {name: preset.left_out() for name, preset in PRESETS.items()}
        names = [name for name, reason in reasons.items() if reason is None]
        for name, reason in reasons.items():
            if reason is not None:
                print(f"{name}: skipped: {reason}")
    for name in names:
        path = build_preset(name, state_dir, force=args.force)
        print(f"{name}: {path}")
    return 0


def _sources(args: argparse.Namespace) -> int:
    from service.presets.source_counts import source_counts

    text = json.dumps(source_counts(), indent=2) + "\n"
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aimserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve one model over HTTP")
    serve.add_argument("--model", required=True, help="a preset name or a model directory")
    serve.add_argument("--tiers", default="tiers.yaml", help="the tiers file (reloaded live)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--task", default=None, help="override the task inferred from the model's config")
    serve.add_argument(
        "--engine", default=None, help="text generation: builtin | vllm (default: AIM_ENGINE, else builtin)"
    )
    serve.add_argument("--demo-tenants", action="store_true", help="create (once) and print demo keys")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    presets = sub.add_parser("presets", help="offline model presets")
    psub = presets.add_subparsers(dest="action", required=True)
    build = psub.add_parser("build", help="build a preset (cached, idempotent)")
    build.add_argument(
        "name", help="preset name, or 'all' (those whose packages are installed; slow ones left out)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even when cached")
    build.set_defaults(run=_presets)
    sources = psub.add_parser("sources", help="count the rows of the presets' source data (docs/presets.md)")
    sources.add_argument("--out", type=Path, default=None, help="write the JSON here (default: print it)")
    sources.set_defaults(run=_sources)

    try:
        from service.evaluation.cli import register
    except ImportError:  # the evaluation commands are optional at import time
        pass
    else:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except AimError as exc:
        print(f"aimserve: {exc.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
